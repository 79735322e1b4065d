"""Record field sets: ``pvproperty(record='ai')`` serves ``PV.DESC``, ``PV.EGU``, ...

``make_record_fields(record_type, data)`` builds the RecordFields a
PvpropertyData keeps as ``data.field_inst`` (its ``fields`` mapping is what
``data.get_field(name)`` and so names.py resolve, ``NAME$`` included).  See
fields.py for how fields and the record stay in step, record_types.py for the
field sets, state_alarms.py for bi/bo/mbbi/mbbo alarms and long_string.py for
the ``FIELD$`` channels.
"""
from .fields import FieldDef, MenuChannel, RecordFields, MENUS
from .long_string import LongStringChannel
from .record_types import RECORD_TYPES

__all__ = ("RECORD_TYPES", "FieldDef", "LongStringChannel", "MenuChannel",
           "RecordFields", "MENUS", "get_record_class", "make_record_fields",
           "record_data_class", "records")

records = RECORD_TYPES      # the name caproto code looks up
_DATA_CLASSES = {}          # (mixin, data class) -> the class with the mixin


def get_record_class(record_type):
    """The RecordFields subclass for `record_type` ('ai', 'ao', ...)."""
    try:
        return RECORD_TYPES[record_type]
    except (KeyError, TypeError):
        raise ValueError(f"unknown record type {record_type!r}; known: "
                         f"{', '.join(sorted(RECORD_TYPES))}") from None


def make_record_fields(record_type, data):
    """The fields of a `record_type` record whose VAL is `data`."""
    return get_record_class(record_type)(data)


def record_data_class(record_type, cls):
    """The data class for the VAL of a `record_type` record: `cls`, or `cls`
    with the record type's ``data_mixin`` (made once per pair) when `cls`
    is the kind the mixin is for (mbbi/mbbo: a ChannelEnum)."""
    mixin = get_record_class(record_type).data_mixin
    if mixin is None or not issubclass(cls, mixin.applies_to):
        return cls
    key = (mixin, cls)
    if key not in _DATA_CLASSES:
        _DATA_CLASSES[key] = type(cls.__name__, (mixin, cls),
                                  {"__module__": cls.__module__, "__doc__": cls.__doc__})
    return _DATA_CLASSES[key]
