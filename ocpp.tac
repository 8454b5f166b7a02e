# twistd -ny ocpp.tac
#
# The same gateway as `twistd -n ocpp`, configured from .env.ocpp and the
# environment only.  The package must be installed (twistd -y does not put
# this directory on sys.path).
from twisted.application.service import Application
from twisted.logger import ILogObserver

from ocpptw.observability.logs import observer_for
from ocpptw.tap import Options, makeService

options = Options()
options.parseOptions([])
application = Application("ocpp")
application.setComponent(ILogObserver, observer_for(options.config))
makeService(options).setServiceParent(application)
