"""caproto: a pure-Python implementation of EPICS Channel Access.

The sans-I/O core below imports only the standard library (numpy optional);
servers and clients live in subpackages that import it.  See README.md in
this directory for how the modules fit together.
"""
from ._constants import *      # noqa: F401,F403
from ._errors import *         # noqa: F401,F403
from ._status import *         # noqa: F401,F403
from ._dbr import *            # noqa: F401,F403
from ._backend import *        # noqa: F401,F403
from ._convert import *        # noqa: F401,F403
from ._commands import *       # noqa: F401,F403
from ._state import *          # noqa: F401,F403
from ._circuit import *        # noqa: F401,F403
from ._broadcaster import *    # noqa: F401,F403
from ._data import *           # noqa: F401,F403
from ._env import *            # noqa: F401,F403

__version__ = "0.1.0"
