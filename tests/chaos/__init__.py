"""
Whole-gateway durability under faults: the backend and broker acceptance
scenarios, each checked against the ledger (L{tests.chaos.ledger}).
"""
