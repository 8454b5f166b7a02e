"""
Tests for the pure OCPP-J core, L{ocpptw.ocpp}.
"""
