"""trio face of caproto: the CA server layer (``caproto.trio.server``)."""
