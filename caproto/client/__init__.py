"""Client side of Channel Access: one core under thin faces.

``core.ClientCore`` does search, circuit, channel, request and subscription
bookkeeping without I/O (``search.py`` schedules searches and watches
beacons; ``effects.py`` holds the effects and records it exchanges with a
face).  ``caproto.threading``, ``caproto.asyncio`` and ``caproto.sync``
drive it with their own sockets, threads or event loops.
"""
