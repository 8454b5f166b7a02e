# -*- test-case-name: tests.adapters.test_backend_http -*-
"""
Test doubles that ship with the gateway, for its own tests, for C{bench/}
and for anyone who integrates with it: see L{ocpptw.testing.backend}.
"""
