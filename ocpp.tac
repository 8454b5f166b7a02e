# twistd -ny ocpp.tac   (foreground)      twistd -y ocpp.tac   (daemonized)
#
# The same gateway as `twistd ocpp`, configured from .env.ocpp and the
# environment only.  The package must be installed (twistd -y does not put
# this directory on sys.path).  Logs go where twistd sends them (--logfile,
# twistd.log when daemonized, standard output with -n).
from twisted.application.service import Application

from ocpptw.tap import Options, makeService

options = Options()
options.parseOptions([])
application = Application("ocpp")
makeService(options).setServiceParent(application)
