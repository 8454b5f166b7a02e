"""
ocpptw: an OCPP 1.6J gateway for EV charging networks, on Twisted and Autobahn.
"""

__version__ = "0.1.0"
