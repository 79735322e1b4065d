"""``PV.FIELD$``: a string field served as a CHAR array, as epics-base does.

Invariants:
- The channel holds no state of its own that can drift: its text is its
  source's (a field's ChannelString, or the record itself for ``VAL$`` of
  stringin/stringout), copied in whenever the source publishes, with the
  source's timestamp; reads report the source's alarm and timestamp (the
  record's, for a field or VAL).  Writes go to the source, so the record's rules
  (length, read-only, putter, processing) apply and the source's publish
  is what updates the ``$`` channel's subscribers -- once.
- Native type DBF_CHAR, element count = the epics-base field size (text
  bytes + NUL: DESC 41, NAME 61, EGU 16, links 1024).  A read of the
  native count gives the NUL-padded buffer; a count-0 (dynamic) DBR_CHAR
  read gives the text and its NUL, as dbGet does for long strings.
- Other DBR types convert the whole buffer element by element (DBR_STRING
  gives "72" "105" ... "0"), as for any epics-base CHAR array.
- A write of n elements overwrites the first n bytes: without a NUL among
  them the rest of the old text stays (dbPut copies n elements into the
  field's buffer).
"""
from ..._convert import TO_WIRE, string_to_char_array
from ..._data import ChannelChar
from ..._dbr import ChannelType, channel_type, native_type

__all__ = ("LongStringChannel",)


class LongStringChannel(ChannelChar):
    """The ``$`` channel of `source` (a scalar ChannelString), `size` bytes."""

    def __init__(self, source, size):
        self.source = source
        super().__init__(value=self._text_of(source, size), max_length=size,
                         timestamp=source.timestamp, read_only=source.read_only,
                         string_encoding=source.string_encoding,
                         reported_record_type=source.reported_record_type)

    def __repr__(self):
        return f"<{type(self).__name__} of {self.source!r} size={self.max_length}>"

    @staticmethod
    def _text_of(source, size):
        raw = source.value.encode(source.string_encoding)[:size - 1]
        return raw.decode(source.string_encoding, "ignore")

    # Access rights, access security, alarm and timestamp are the source's.
    def check_access(self, hostname, username):
        return self.source.check_access(hostname, username)

    def alarm_source(self):
        return self.source.alarm_source()

    access_security = property(lambda self: getattr(self.source, "access_security", None))
    record_fields = property(lambda self: getattr(self.source, "record_fields", None))
    asg = property(lambda self: getattr(self.source, "asg", None))
    asl = property(lambda self: getattr(self.source, "asl", None))

    async def follow(self):
        """Copy the source's text in (the source published); post as a write would."""
        text = self._text_of(self.source, self.max_length)
        if text != self.value:
            await ChannelChar.write(self, text, verify_value=False,
                                    timestamp=self.source.timestamp)

    async def write(self, value, **kwargs):
        """Writing the ``$`` channel writes its source."""
        return await self.source.write(self.preprocess_value(value), **kwargs)

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        data_type = channel_type(data_type)
        if data_type in (ChannelType.PUT_ACKT, ChannelType.PUT_ACKS):
            return await super().write_from_dbr(data, data_type, metadata, flags=flags)
        native = native_type(data_type)
        if native != ChannelType.CHAR:
            data = self._convert(data, native, ChannelType.CHAR)
        raw = bytes(bytearray(int(v) & 0xFF for v in data)) if not isinstance(
            data, (bytes, bytearray)) else bytes(data)
        if b"\0" not in raw:
            old = self.value.encode(self.string_encoding)
            raw = raw + old[len(raw):]
        return await self.write(raw, flags=flags)

    def _read_values(self, native):
        raw = string_to_char_array(self.value, self.string_encoding)[:self.max_length]
        if native == ChannelType.CHAR:
            return self._convert(bytearray(raw), ChannelType.CHAR, ChannelType.CHAR)
        raw = raw.ljust(self.max_length, b"\0")       # other types: the whole buffer
        return self._convert(list(raw), ChannelType.CHAR, native, TO_WIRE)
