"""What the client faces (threading, asyncio) share above the core.

A face's PV has ``name``, ``priority``, ``timeout``, ``context`` and
``_entry``, the core's record of its channel (None until the PV is first
connected); everything a user asks about the connection is read from it
here, once, so the faces cannot drift apart.
"""
from .._errors import CaprotoError

__all__ = ("ContextDisconnectedError", "PVConnectionState")


class ContextDisconnectedError(CaprotoError):
    """The Context was disconnected; its PVs cannot be used any more."""


class PVConnectionState:
    """Mixin: connection facts of a face's PV, from its core channel entry."""

    _entry = None

    def __repr__(self):
        state = "connected" if self.connected else "disconnected"
        return f"<PV name={self.name!r} priority={self.priority} {state}>"

    @property
    def _engine(self):
        return self.context.broadcaster

    def _timeout(self, timeout):
        """`timeout`, else the PV's own, else its context's."""
        if timeout is not None:
            return timeout
        return self.timeout if self.timeout is not None else self.context.timeout

    @property
    def connected(self):
        return self._entry is not None and self._entry.connected

    @property
    def channel(self):
        """The current ClientChannel (None while disconnected)."""
        return None if self._entry is None else self._entry.channel

    @property
    def access_rights(self):
        return None if self._entry is None else self._entry.access_rights

    @property
    def native_data_type(self):
        return None if self._entry is None else self._entry.native_data_type

    @property
    def native_data_count(self):
        return None if self._entry is None else self._entry.native_data_count

    @property
    def server_address(self):
        return None if self._entry is None else self._entry.server
