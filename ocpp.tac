# twistd -ny ocpp.tac   (foreground)      twistd -y ocpp.tac   (daemonized)
#
# The same gateway as `twistd ocpp`, configured from .env.ocpp and the
# environment only.  The package must be installed (twistd -y does not put
# this directory on sys.path).  Logs go where twistd would write them
# (--logfile, twistd.log when daemonized, standard output with -n), in
# ocpptw's format: charger text escaped, secrets masked, LOG_LEVEL honoured.
from twisted.application.service import Application
from twisted.logger import ILogObserver

from ocpptw.tap import Options, makeService, tac_log_observer

options = Options()
options.parseOptions([])
application = Application("ocpp")
application.setComponent(ILogObserver, tac_log_observer(options.config))
makeService(options).setServiceParent(application)
