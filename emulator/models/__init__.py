"""Pure physics: no asyncio, no sockets, no wall clock."""
