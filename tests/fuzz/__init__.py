"""
Fuzzing of everything a charger or a client can send to a running gateway:
OCPP-J frames over WebSocket, command API bodies, AMQP command messages; and
the resource bounds that keep a misbehaving peer from exhausting the process.
"""
