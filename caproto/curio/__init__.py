"""curio face of caproto: the CA server layer (``caproto.curio.server``)."""
