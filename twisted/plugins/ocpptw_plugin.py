"""
The C{twistd ocpp} plugin.  Only wiring: the real code is imported lazily from
L{ocpptw.tap} so that C{twistd --help} imports nothing else (and no reactor).
"""

from twisted.application.service import ServiceMaker

ocpp = ServiceMaker("ocpptw", "ocpptw.tap", "OCPP 1.6J WebSocket gateway", "ocpp")
