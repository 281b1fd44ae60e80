"""Redis for the whole server: clients, Lua scripts, batched script calls, the embedded server."""
