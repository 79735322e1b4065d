"""Channel Access status codes (the ECA_* table of epics-base's caerr.h).

Invariants: each status is identified by its message number (``code``) and
sent on the wire as ``code_with_severity = (code << 3) | severity``, exactly
as caerr.h's DEFMSG macro builds it; the table below is the single source of
those numbers, and every lookup helper derives from it.  Descriptions are
libca's ``ca_message()`` texts, so users see the same words C tools print.
"""
import enum
from collections import namedtuple

__all__ = (
    "CASeverity", "CAStatusCode", "CAStatus", "eca_value_to_status",
    "ensure_eca_value", "ensure_status",
)


class CASeverity(enum.IntEnum):
    """Severity bits of a status value (caerr.h CA_K_*)."""
    WARNING = 0   # unsuccessful
    SUCCESS = 1   # successful
    ERROR = 2     # failed, continue
    INFO = 3      # successful
    SEVERE = 4    # failed, quit
    FATAL = 6     # ERROR | SEVERE


CAStatusCode = namedtuple(
    "CAStatusCode",
    "name code code_with_severity severity success defunct description")

WARNING, SUCCESS, ERROR, INFO, FATAL = (
    CASeverity.WARNING, CASeverity.SUCCESS, CASeverity.ERROR, CASeverity.INFO,
    CASeverity.FATAL)

# (name, message number, severity, defunct, description); the trailing
# comment is the resulting wire value, (number << 3) | severity.
_TABLE = (
    ('ECA_NORMAL', 0, SUCCESS, False, 'Normal successful completion'),  # 1
    ('ECA_MAXIOC', 1, ERROR, True, 'Maximum simultaneous IOC connections exceeded'),  # 10
    ('ECA_UKNHOST', 2, ERROR, True, 'Unknown internet host'),  # 18
    ('ECA_UKNSERV', 3, ERROR, True, 'Unknown internet service'),  # 26
    ('ECA_SOCK', 4, ERROR, True, 'Unable to allocate a new socket'),  # 34
    ('ECA_CONN', 5, WARNING, True, 'Unable to connect to internet host or service'),  # 40
    ('ECA_ALLOCMEM', 6, WARNING, False, 'Unable to allocate additional dynamic memory'),  # 48
    ('ECA_UKNCHAN', 7, WARNING, True, 'Unknown IO channel'),  # 56
    ('ECA_UKNFIELD', 8, WARNING, True, 'Record field specified inappropriate for channel specified'),  # 64
    ('ECA_TOLARGE', 9, WARNING, False, 'The requested data transfer is greater than available memory or EPICS_CA_MAX_ARRAY_BYTES'),  # 72
    ('ECA_TIMEOUT', 10, WARNING, False, 'User specified timeout on IO operation expired'),  # 80
    ('ECA_NOSUPPORT', 11, WARNING, True, 'Sorry, that feature is planned but not supported at this time'),  # 88
    ('ECA_STRTOBIG', 12, WARNING, True, 'The supplied string is unusually large'),  # 96
    ('ECA_DISCONNCHID', 13, ERROR, True, 'The request was ignored because the specified channel is disconnected'),  # 106
    ('ECA_BADTYPE', 14, ERROR, False, 'The data type specifed is invalid'),  # 114
    ('ECA_CHIDNOTFND', 15, INFO, True, 'Remote Channel not found'),  # 123
    ('ECA_CHIDRETRY', 16, INFO, True, 'Unable to locate all user specified channels'),  # 131
    ('ECA_INTERNAL', 17, FATAL, False, 'Channel Access Internal Failure'),  # 142
    ('ECA_DBLCLFAIL', 18, WARNING, True, 'The requested local DB operation failed'),  # 144
    ('ECA_GETFAIL', 19, WARNING, False, 'Channel read request failed'),  # 152
    ('ECA_PUTFAIL', 20, WARNING, False, 'Channel write request failed'),  # 160
    ('ECA_ADDFAIL', 21, WARNING, True, 'Channel subscription request failed'),  # 168
    ('ECA_BADCOUNT', 22, WARNING, False, 'Invalid element count requested'),  # 176
    ('ECA_BADSTR', 23, ERROR, False, 'Invalid string'),  # 186
    ('ECA_DISCONN', 24, WARNING, False, 'Virtual circuit disconnect'),  # 192
    ('ECA_DBLCHNL', 25, WARNING, False, 'Identical process variable names on multiple servers'),  # 200
    ('ECA_EVDISALLOW', 26, ERROR, False, 'Request inappropriate within subscription (monitor) update callback'),  # 210
    ('ECA_BUILDGET', 27, WARNING, True, 'Database value get for that channel failed during channel search'),  # 216
    ('ECA_NEEDSFP', 28, WARNING, True, 'Unable to initialize without the vxWorks VX_FP_TASK task option set'),  # 224
    ('ECA_OVEVFAIL', 29, WARNING, True, 'Event queue overflow has prevented first pass event after event add'),  # 232
    ('ECA_BADMONID', 30, ERROR, False, 'Bad event subscription (monitor) identifier'),  # 242
    ('ECA_NEWADDR', 31, WARNING, True, 'Remote channel has new network address'),  # 248
    ('ECA_NEWCONN', 32, INFO, True, 'New or resumed network connection'),  # 259
    ('ECA_NOCACTX', 33, WARNING, True, 'Specified task isnt a member of a CA context'),  # 264
    ('ECA_DEFUNCT', 34, FATAL, True, 'Attempt to use defunct CA feature failed'),  # 278
    ('ECA_EMPTYSTR', 35, WARNING, True, 'The supplied string is empty'),  # 280
    ('ECA_NOREPEATER', 36, WARNING, True, 'Unable to spawn the CA repeater thread- auto reconnect will fail'),  # 288
    ('ECA_NOCHANMSG', 37, WARNING, True, 'No channel id match for search reply- search reply ignored'),  # 296
    ('ECA_DLCKREST', 38, WARNING, True, 'Reseting dead connection- will try to reconnect'),  # 304
    ('ECA_SERVBEHIND', 39, WARNING, True, 'Server (IOC) has fallen behind or is not responding- still waiting'),  # 312
    ('ECA_NOCAST', 40, WARNING, True, 'No internet interface with broadcast available'),  # 320
    ('ECA_BADMASK', 41, ERROR, False, 'Invalid event selection mask'),  # 330
    ('ECA_IODONE', 42, INFO, False, 'IO operations have completed'),  # 339
    ('ECA_IOINPROGRESS', 43, INFO, False, 'IO operations are in progress'),  # 347
    ('ECA_BADSYNCGRP', 44, ERROR, False, 'Invalid synchronous group identifier'),  # 354
    ('ECA_PUTCBINPROG', 45, ERROR, False, 'Put callback timed out'),  # 362
    ('ECA_NORDACCESS', 46, WARNING, False, 'Read access denied'),  # 368
    ('ECA_NOWTACCESS', 47, WARNING, False, 'Write access denied'),  # 376
    ('ECA_ANACHRONISM', 48, ERROR, False, 'Requested feature is no longer supported'),  # 386
    ('ECA_NOSEARCHADDR', 49, WARNING, False, 'Empty PV search address list'),  # 392
    ('ECA_NOCONVERT', 50, WARNING, False, 'No reasonable data conversion between client and server types'),  # 400
    ('ECA_BADCHID', 51, ERROR, False, 'Invalid channel identifier'),  # 410
    ('ECA_BADFUNCPTR', 52, ERROR, False, 'Invalid function pointer'),  # 418
    ('ECA_ISATTACHED', 53, WARNING, False, 'Thread is already attached to a client context'),  # 424
    ('ECA_UNAVAILINSERV', 54, WARNING, False, 'Not supported by attached service'),  # 432
    ('ECA_CHANDESTROY', 55, WARNING, False, 'User destroyed channel'),  # 440
    ('ECA_BADPRIORITY', 56, ERROR, False, 'Invalid channel priority'),  # 450
    ('ECA_NOTTHREADED', 57, ERROR, False, 'Preemptive callback not enabled - additional threads may not join context'),  # 458
    ('ECA_16KARRAYCLIENT', 58, WARNING, False, "Client's protocol revision does not support transfers exceeding 16k bytes"),  # 464
    ('ECA_CONNSEQTMO', 59, WARNING, False, 'Virtual circuit connection sequence aborted'),  # 472
    ('ECA_UNRESPTMO', 60, WARNING, False, 'Virtual circuit unresponsive'),  # 480
)


def _status_code(name, code, severity, defunct, description):
    return CAStatusCode(
        name=name, code=code, code_with_severity=(code << 3) | int(severity),
        severity=severity, success=int(severity) & 1, defunct=defunct,
        description=description)


CAStatus = enum.Enum(
    "CAStatus", [(row[0], _status_code(*row)) for row in _TABLE],
    module=__name__)
CAStatus.__doc__ = "Every ECA_* status; members' values are CAStatusCode tuples."
for _member in CAStatus:
    # Make ``CAStatus.ECA_NORMAL.code_with_severity`` and friends work.
    for _field in CAStatusCode._fields[1:]:    # .name is the enum's own
        setattr(_member, _field, getattr(_member.value, _field))
del _member, _field
CAStatus.__repr__ = lambda self: f"<CAStatus.{self.name}: {self.code_with_severity}>"

#: wire value (code_with_severity) -> CAStatus member
eca_value_to_status = {member.code_with_severity: member for member in CAStatus}
_BY_NAME = {member.name: member for member in CAStatus}


def ensure_status(status):
    """Return the CAStatus member for a member, name, or wire value.

    Raises CaprotoValueError (naming the value) for anything else, so a bad
    status is reported where it enters rather than as a bogus wire value.
    """
    from ._errors import CaprotoValueError
    if isinstance(status, CAStatus):
        return status
    if isinstance(status, CAStatusCode):
        return _BY_NAME[status.name]
    if isinstance(status, str) and status in _BY_NAME:
        return _BY_NAME[status]
    if isinstance(status, int) and status in eca_value_to_status:
        return eca_value_to_status[status]
    raise CaprotoValueError(f"{status!r} is not a Channel Access status "
                            f"(an ECA_* name, CAStatus member or wire value)")


def ensure_eca_value(status):
    """The wire value (code_with_severity) of a status given in any form."""
    return ensure_status(status).code_with_severity
