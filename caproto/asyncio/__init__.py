"""asyncio face of caproto: the CA server layer (``caproto.asyncio.server``)."""
