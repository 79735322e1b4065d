"""Receive buffer for one TCP byte stream (a virtual circuit).

Invariants:
- Any chunking of the same stream yields the same commands, in order.
- Memory is bounded: a header announcing a payload above `max_payload_size`
  is refused with RemoteProtocolError before any of that payload is stored.
- Each received byte is copied a bounded number of times (counted in
  ``bytes_moved``): small messages pass through a compacting bytearray whose
  consumed prefix is dropped only once it is at least half the buffer;
  a large payload is received straight into its own bytearray, which the
  decoded command then views without copying (numpy data points into it).
- After a RemoteProtocolError the stream is out of sync; every later call
  raises the same error.
Parsing itself is _commands.parse_header/build_command, shared with
read_from_bytestream and read_datagram.
"""
from ._commands import build_command, parse_header
from ._constants import CLIENT, DEFAULT_MAX_ARRAY_BYTES, NEED_DATA, SERVER
from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = ("ReceiveBuffer", "payload_limit")

#: Room above EPICS_CA_MAX_ARRAY_BYTES for DBR metadata (at most 422 bytes,
#: GR/CTRL_ENUM) plus padding: the limit applies to the array itself.
METADATA_ALLOWANCE = 512
#: Payloads at least this big get their own buffer instead of the shared one.
LARGE_PAYLOAD = 1 << 16


def payload_limit(max_array_bytes=DEFAULT_MAX_ARRAY_BYTES):
    """Largest payload accepted for a given EPICS_CA_MAX_ARRAY_BYTES."""
    return int(max_array_bytes) + METADATA_ALLOWANCE


class _LargePayload:
    """A command whose header is parsed and whose payload is still arriving."""
    __slots__ = ("cls", "header", "header_bytes", "payload", "filled")

    def __init__(self, cls, header, header_bytes, size):
        self.cls, self.header, self.header_bytes = cls, header, header_bytes
        self.payload = bytearray(size)
        self.filled = 0


class ReceiveBuffer:
    """Turn stream chunks sent by a peer in `role` into commands.

    ``feed(chunk)`` stores bytes; ``next_command()`` returns a command or
    NEED_DATA; ``bytes_needed`` says how many more bytes would complete the
    next command (a good recv size).
    """

    def __init__(self, role, max_payload_size=None,
                 large_payload=LARGE_PAYLOAD):
        if role is not CLIENT and role is not SERVER:
            raise LocalProtocolError(
                f"role must be CLIENT or SERVER (the sender's), not {role!r}")
        if max_payload_size is None:
            max_payload_size = payload_limit()
        if max_payload_size < 0 or large_payload < 1:
            raise LocalProtocolError(
                f"bad ReceiveBuffer limits: max_payload_size={max_payload_size}"
                f", large_payload={large_payload}")
        self.role = role
        self.max_payload_size = max_payload_size
        self.large_payload = large_payload
        self.bytes_moved = 0          # bytes copied into or within our storage
        self._data = bytearray()
        self._start = 0               # consumed prefix of _data
        self._large = None
        self._error = None
        self._needed = 16

    def __len__(self):
        """Bytes received but not yet returned as commands."""
        pending = len(self._data) - self._start
        if self._large is not None:
            pending += len(self._large.header_bytes) + self._large.filled
        return pending

    @property
    def bytes_needed(self):
        """Bytes still missing from the next command, as of the last
        next_command() that returned NEED_DATA."""
        return self._needed

    def feed(self, data):
        """Store a chunk of the stream (any bytes-like object)."""
        self._raise_if_broken()
        view = memoryview(data).cast("B")
        large = self._large
        if large is not None:
            room = len(large.payload) - large.filled
            taken = view[:room]
            large.payload[large.filled:large.filled + len(taken)] = taken
            large.filled += len(taken)
            self.bytes_moved += len(taken)
            view = view[len(taken):]
        if len(view):
            self._data += view
            self.bytes_moved += len(view)

    def next_command(self):
        """The next complete command, or NEED_DATA."""
        self._raise_if_broken()
        try:
            return self._next_command()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def drain(self):
        """Every complete command now buffered, in order."""
        commands = []
        while True:
            command = self.next_command()
            if command is NEED_DATA:
                return commands
            commands.append(command)

    def pending_small(self):
        """``(storage, start, end)``: the buffered bytes of small commands, for a
        caller that parses a run of simple commands itself (see
        serve_create_requests), or None while a large payload
        is arriving or the stream is broken.  Hand back what it used with
        ``skip_to``."""
        if self._large is not None or self._error is not None:
            return None
        return self._data, self._start, len(self._data)

    def skip_to(self, offset, payload_bytes=0):
        """Mark everything before `offset` (from ``pending_small``) consumed;
        `payload_bytes` is what the caller copied out of it."""
        if not self._start <= offset <= len(self._data):
            raise LocalProtocolError(
                f"skip_to({offset}) outside the pending bytes "
                f"{self._start}..{len(self._data)}")
        self.bytes_moved += payload_bytes
        if offset != self._start:
            self._consume(offset)

    def _raise_if_broken(self):
        if self._error is not None:
            raise RemoteProtocolError(
                f"stream already failed to parse: {self._error}")

    def _next_command(self):
        large = self._large
        if large is not None:
            missing = len(large.payload) - large.filled
            if missing:
                self._needed = missing
                return NEED_DATA
            self._large = None
            return build_command(large.cls, large.header, large.header_bytes,
                                 memoryview(large.payload))
        data, start = self._data, self._start
        cls, header, header_size = parse_header(
            data, start, self.role, self.max_payload_size)
        if header is None:
            self._needed = header_size
            return NEED_DATA
        end = start + header_size + header.payload_size
        if end <= len(data):
            with memoryview(data) as view:       # released before any resize
                header_bytes = bytes(view[start:start + header_size])
                payload = bytes(view[start + header_size:end])
            self.bytes_moved += len(payload)
            command = build_command(cls, header, header_bytes,
                                    memoryview(payload))
            self._consume(end)
            return command
        if header.payload_size < self.large_payload:
            self._needed = end - len(data)
            return NEED_DATA
        # Move the payload received so far into its own buffer; the rest of
        # it will be fed straight there.
        large = _LargePayload(cls, header,
                              bytes(data[start:start + header_size]),
                              header.payload_size)
        received = data[start + header_size:]
        large.payload[:len(received)] = received
        large.filled = len(received)
        self.bytes_moved += len(received)
        self._data = bytearray()
        self._start = 0
        self._large = large
        self._needed = header.payload_size - large.filled
        return NEED_DATA

    def _consume(self, end):
        """Mark data[:end] used; compact once the used prefix dominates."""
        self._start = end
        remaining = len(self._data) - end
        if end >= remaining:
            self.bytes_moved += remaining
            del self._data[:end]
            self._start = 0
