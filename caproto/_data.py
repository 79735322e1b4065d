"""The ChannelData family under one name (``caproto._data``), as caproto code imports it.

Invariants:
- Defines nothing: every name is re-exported from the module that owns it,
  so there is one implementation of each class.  ``_alarm`` holds
  ChannelAlarm, ``_channel_data`` the
  ChannelData base (reads, writes, metadata, alarms, subscriptions and
  publishing); ``_channel_types`` the typed subclasses (numeric, enum,
  string, char).
- ``__all__`` is the public set ``caproto/__init__.py`` exports.
"""
from ._alarm import ChannelAlarm
from ._channel_data import ChannelData, SkipWrite, SubscriptionSpec, SubscriptionUpdate
from ._channel_types import (ChannelByte, ChannelChar, ChannelDouble, ChannelEnum,
                             ChannelFloat, ChannelInteger, ChannelNumeric, ChannelShort,
                             ChannelString)

__all__ = (
    "ChannelAlarm", "ChannelData", "ChannelNumeric", "ChannelDouble", "ChannelFloat",
    "ChannelInteger", "ChannelShort", "ChannelByte", "ChannelChar", "ChannelEnum",
    "ChannelString", "SkipWrite", "SubscriptionSpec", "SubscriptionUpdate",
)
