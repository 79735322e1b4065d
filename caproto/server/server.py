"""Compatibility module: caproto code imports the IOC API from
``caproto.server.server``; the names live in pvproperty.py, group.py and
args.py."""
from .._data import SkipWrite                                # noqa: F401
from .._dbr import AlarmSeverity, AlarmStatus, ChannelType   # noqa: F401
from .args import ioc_arg_parser, template_arg_parser, run  # noqa: F401
from .group import (PVGroup, SubGroup, pvfunction,          # noqa: F401
                    get_pv_pair_wrapper, expand_macros)
from .pvproperty import *                                   # noqa: F401,F403
from .pvproperty import ScanSpec, data_class_for            # noqa: F401
from .records import RecordFields as RecordFieldGroup       # noqa: F401
from .typing import AsyncLibraryLayer                       # noqa: F401
