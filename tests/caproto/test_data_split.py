"""caproto._data is one public face over _channel_data and _channel_types.

What a user would notice if the split went wrong: an import from
``caproto._data`` failing, or ``caproto.ChannelDouble`` and
``caproto._data.ChannelDouble`` being different classes (isinstance checks
across the two spellings would then fail).
"""
import pathlib

import caproto
import caproto._data as data
from caproto import _alarm, _channel_data, _channel_types

PUBLIC = ("ChannelAlarm", "ChannelData", "ChannelNumeric", "ChannelDouble",
          "ChannelFloat", "ChannelInteger", "ChannelShort", "ChannelByte",
          "ChannelChar", "ChannelEnum", "ChannelString", "SkipWrite",
          "SubscriptionSpec", "SubscriptionUpdate")


def test_every_name_is_the_same_object_everywhere():
    assert set(data.__all__) == set(PUBLIC)
    owned = [name for module in (_alarm, _channel_data, _channel_types)
             for name in module.__all__ if name in PUBLIC]
    assert sorted(owned) == sorted(PUBLIC)          # each name has exactly one owner
    for module in (_alarm, _channel_data, _channel_types):
        for name in set(module.__all__) & set(PUBLIC):
            assert getattr(data, name) is getattr(module, name), name
            assert getattr(caproto, name) is getattr(data, name), name


def test_typed_channels_share_the_base_implementation():
    for name in ("read", "write", "publish", "subscribe", "unsubscribe"):
        for cls in (data.ChannelDouble, data.ChannelEnum, data.ChannelString,
                    data.ChannelChar):
            assert getattr(cls, name) is getattr(data.ChannelData, name), (cls, name)


def test_data_modules_are_short_and_state_their_invariants():
    here = pathlib.Path(caproto.__file__).parent
    for name in ("_data.py", "_channel_data.py", "_channel_types.py"):
        text = (here / name).read_text()
        assert len(text.splitlines()) < 800, name
        docstring = text.split('"""')[1]
        assert "Invariants:" in docstring, name
