"""Exceptions raised by caproto.

Invariant: the sans-I/O core raises only LocalProtocolError (the caller
misused the API) or RemoteProtocolError (the peer sent bad bytes or an
illegal command) for protocol problems.  Everything derives from
CaprotoError so applications can catch the whole family at once.
"""

__all__ = (
    "CaprotoError", "ProtocolError", "LocalProtocolError", "RemoteProtocolError",
    "CaprotoKeyError", "CaprotoValueError", "CaprotoTypeError",
    "CaprotoRuntimeError", "CaprotoNotImplementedError", "CaprotoTimeoutError",
    "CaprotoAttributeError", "CaprotoConversionError",
    "ErrorResponseReceived", "SendAllRetry", "CannotExceedLimits",
    "ChannelReadError", "ChannelWriteError",
)


class CaprotoError(Exception):
    """Base of every exception caproto raises."""


class ProtocolError(CaprotoError):
    """The Channel Access protocol was violated, by us or by the peer."""


class LocalProtocolError(ProtocolError):
    """Our side tried something the protocol (or the current state) forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent malformed bytes or a command illegal in the current state."""


class CaprotoKeyError(KeyError, CaprotoError):
    pass


class CaprotoValueError(ValueError, CaprotoError):
    pass


class CaprotoTypeError(TypeError, CaprotoError):
    pass


class CaprotoRuntimeError(RuntimeError, CaprotoError):
    pass


class CaprotoNotImplementedError(NotImplementedError, CaprotoError):
    pass


class CaprotoAttributeError(AttributeError, CaprotoError):
    pass


class CaprotoTimeoutError(TimeoutError, CaprotoError):
    """A CA operation did not complete in time; the message names the PV and server."""


class CaprotoConversionError(CaprotoValueError):
    """A value cannot be converted to the requested DBR type."""


class ErrorResponseReceived(CaprotoError):
    """The server answered a request with an ErrorResponse."""


class SendAllRetry(CaprotoError):
    """A socket send must be retried (transient network condition)."""


class CannotExceedLimits(CaprotoValueError):
    """A write fell outside the channel's control limits."""


class ChannelReadError(CaprotoError):
    pass


class ChannelWriteError(CaprotoError):
    pass
