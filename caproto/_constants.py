"""Protocol constants and sentinels shared by every layer.

Values are facts of Channel Access 4.13 and of epics-base's db_access.h; the
sentinels (CLIENT, SERVER, NEED_DATA, ...) are unique objects compared with `is`.
"""

__all__ = (
    "CLIENT", "SERVER", "NEED_DATA", "DISCONNECTED", "RESPONSE", "REQUEST",
    "DEFAULT_PROTOCOL_VERSION", "DEFAULT_SERVER_PORT", "DEFAULT_REPEATER_PORT",
    "EPICS_EPOCH", "MAX_STRING_SIZE", "MAX_UNITS_SIZE", "MAX_ENUM_STRING_SIZE",
    "MAX_ENUM_STATES", "MAX_RECORD_LENGTH", "DO_REPLY", "NO_REPLY",
    "MAX_ID", "STALE_SEARCH_EXPIRATION", "SEARCH_MAX_DATAGRAM_BYTES",
    "DEFAULT_MAX_ARRAY_BYTES", "MAX_TCP_RECV_BYTES",
)


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return self._name

    def __reduce__(self):
        return self._name


CLIENT = _Sentinel("CLIENT")
SERVER = _Sentinel("SERVER")
NEED_DATA = _Sentinel("NEED_DATA")
DISCONNECTED = _Sentinel("DISCONNECTED")
REQUEST = _Sentinel("REQUEST")
RESPONSE = _Sentinel("RESPONSE")

DEFAULT_PROTOCOL_VERSION = 13          # CA 4.13
DEFAULT_SERVER_PORT = 5064
DEFAULT_REPEATER_PORT = 5065
EPICS_EPOCH = 631152000                # 1990-01-01T00:00:00Z as a Unix time

MAX_STRING_SIZE = 40                   # DBR_STRING element, incl. the NUL
MAX_UNITS_SIZE = 8                     # units field, incl. the NUL
MAX_ENUM_STRING_SIZE = 26              # one enum state string, incl. the NUL
MAX_ENUM_STATES = 16
MAX_RECORD_LENGTH = 60                 # dbCommon NAME[61]

DO_REPLY = 10                          # search: ask for a NotFound answer
NO_REPLY = 5                           # search: stay silent when not found

MAX_ID = 2 ** 32 - 1
STALE_SEARCH_EXPIRATION = 10.0         # seconds before a pending search id is dropped
SEARCH_MAX_DATAGRAM_BYTES = 1472       # one Ethernet MTU minus IP/UDP headers
DEFAULT_MAX_ARRAY_BYTES = 16384        # EPICS_CA_MAX_ARRAY_BYTES default
MAX_TCP_RECV_BYTES = 2 ** 16
