"""The CA server: one library-agnostic core plus the IOC API (see README.md)."""
from .typing import AsyncLibraryLayer                       # noqa: F401
from .names import ResolvedName, resolve, set_filter_parser  # noqa: F401
from .common import Context, CircuitHandler, Subscription   # noqa: F401
from .filters import parse_filter as _parse_filter
set_filter_parser(_parse_filter)          # PV.{"ts":{}}, PV.[1:5], ... (filters.py)
# -- the IOC API (pvproperty.py, group.py, args.py, records/) --
from .pvproperty import *                                   # noqa: F401,F403
from .group import (PVGroup, SubGroup, pvfunction,          # noqa: F401
                    get_pv_pair_wrapper, expand_macros)
from .args import ioc_arg_parser, template_arg_parser, run  # noqa: F401
from . import records                                       # noqa: F401
