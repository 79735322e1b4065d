"""Resolve a channel name a client asked for to the ChannelData that serves it.

Invariants:
- Resolution never changes the pvdb: ``resolve`` only looks things up.
- An exact pvdb key always wins, so a PV whose name contains a dot is found
  before any "PV.FIELD" interpretation.
- ``PV.FIELD`` goes through ``pvdb[PV].get_field(FIELD)`` (the record layer
  provides it); ``PV.VAL`` is the PV itself when it has no VAL field.
  epics-base's long-string form ``PV.FIELD$`` is handed over the same way,
  ``$`` included: the record layer decides what it serves.
- Channel-filter text (``PV.{json}``, ``PV.[a:b:c]``, ``PV.FIELD{json}``) is
  handed to the parser installed with ``set_filter_parser``; with none
  installed (or when it refuses), the name does not resolve.
"""
from collections import namedtuple

__all__ = ("ResolvedName", "split_name", "resolve", "set_filter_parser",
           "get_filter_parser")

ResolvedName = namedtuple("ResolvedName", "data pvname field channel_filter")
ResolvedName.__doc__ = """What a client's channel name refers to.

``data``: the ChannelData serving reads/writes/subscriptions (a field's own
ChannelData for ``PV.FIELD``); ``pvname``: the pvdb key; ``field``: the
field name (case as epics-base: exact) or None; ``channel_filter``: the object the filter
parser returned, or None."""

_filter_parser = None


def set_filter_parser(parser):
    """Install ``parser(text, data) -> filter object`` (or None to remove).

    `text` is everything from the filter's opening ``{`` or ``[`` on.  The
    parser raises ValueError (or a subclass) for text it refuses; the name
    then does not resolve, as epics-base answers nothing for a bad filter.
    """
    global _filter_parser
    _filter_parser = parser


def get_filter_parser():
    return _filter_parser


def split_name(name):
    """``'PV.FIELD{json}'`` -> ``('PV', 'FIELD', '{json}')``; absent parts are ''.

    The record part ends at the last '.' before any filter text; the field
    part is what lies between that dot and the filter.  ``'PV.{json}'`` and
    ``'PV.[1:2]'`` have an empty field.
    """
    cut = len(name)
    for opener in (".{", ".[", "{", "["):
        index = name.find(opener)
        if index > 0:
            cut = min(cut, index)
    head, filter_text = name[:cut], name[cut:]
    if filter_text.startswith("."):
        filter_text = filter_text[1:]
    record, dot, field = head.rpartition(".")
    if not dot:
        return head, "", filter_text
    return record, field, filter_text


def _field_of(data, field):
    getter = getattr(data, "get_field", None)
    if getter is not None:
        try:
            found = getter(field)
        except (KeyError, AttributeError, ValueError):
            found = None
        if found is not None:
            return found
    if field == "VAL":
        return data
    return None


def resolve(pvdb, name):
    """The ResolvedName for `name`, or None when this server does not have it."""
    data = pvdb.get(name)
    if data is not None:
        return ResolvedName(data, name, None, None)
    record, field, filter_text = split_name(name)
    if field and not (field[:-1] if field.endswith("$") else field).isidentifier():
        return None
    data = pvdb.get(record)
    if data is None:
        return None
    if field:
        data = _field_of(data, field)
        if data is None:
            return None
    channel_filter = None
    if filter_text:
        if _filter_parser is None:
            return None
        try:
            channel_filter = _filter_parser(filter_text, data)
        except ValueError:
            return None
        # A filter that changes what is served (ts with num/str: the
        # timestamp as the value) hands over the data that serves it.
        served = getattr(channel_filter, "served_data", None)
        if served is not None:
            data = served
    return ResolvedName(data, record, field or None, channel_filter)
