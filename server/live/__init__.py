"""The live room connection: socket transport, commands, the hub and each viewer's outbox, the broker, history reads."""
