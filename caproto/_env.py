"""EPICS_CA_* / EPICS_CAS_* environment variables, parsed as epics-base does.

Invariants:
- Pure parsing: every function reads a mapping (``os.environ`` unless one
  is passed) and returns values; nothing here touches the network or
  enumerates interfaces (no socket import).  Callers that know the
  interfaces' broadcast addresses pass them in as ``auto_addresses``.
- An empty value means "unset", as in epics-base (envGetConfigParamPtr),
  and the EPICS_CAS_* fallbacks to EPICS_CA_* follow rsrv.
- A malformed value raises CaprotoValueError naming the variable.
"""
import os

from ._constants import (DEFAULT_MAX_ARRAY_BYTES, DEFAULT_REPEATER_PORT,
                         DEFAULT_SERVER_PORT)
from ._errors import CaprotoValueError

__all__ = (
    "get_environment_variables", "get_address_list", "get_client_address_list",
    "get_server_address_list", "get_beacon_address_list",
    "get_name_server_list", "get_server_ignore_list", "parse_address_list",
)

#: Lowest port epics-base accepts in a *_PORT variable (IPPORT_USERRESERVED);
#: libca and rsrv replace anything outside 5000..65535 with the default.
MIN_PORT = 5000
MAX_PORT = 65535
#: libca never lets the search back-off period drop below this (seconds).
MIN_MAX_SEARCH_PERIOD = 60.0
#: What "automatic" means when the caller supplies no interface broadcasts.
LIMITED_BROADCAST = "255.255.255.255"

_FLAG_VALUES = {"yes": "YES", "no": "NO", "true": "YES", "false": "NO",
                "1": "YES", "0": "NO"}


def _port(value, name):
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise CaprotoValueError(f"{name}={value!r} is not a port number") from None
    if not MIN_PORT <= port <= MAX_PORT:
        raise CaprotoValueError(
            f"{name}={value!r} is outside {MIN_PORT}..{MAX_PORT}; epics-base "
            "clients and servers would ignore it and use their default")
    return port


def _positive_float(value, name):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CaprotoValueError(f"{name}={value!r} is not a number of seconds") from None
    if not number > 0:
        raise CaprotoValueError(f"{name}={value!r} must be greater than zero")
    return number


def _positive_int(value, name):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CaprotoValueError(f"{name}={value!r} is not an integer") from None
    if number <= 0:
        raise CaprotoValueError(f"{name}={value!r} must be greater than zero")
    return number


def _flag(value, name):
    try:
        return _FLAG_VALUES[str(value).strip().lower()]
    except KeyError:
        raise CaprotoValueError(f"{name}={value!r} must be YES or NO") from None


def _text(value, name):
    return " ".join(str(value).split())


# name -> (parser, default or the name of the variable it falls back to).
# A str default naming another EPICS_* variable means "same as that one".
_VARIABLES = {
    "EPICS_CA_ADDR_LIST": (_text, ""),
    "EPICS_CA_AUTO_ADDR_LIST": (_flag, "YES"),
    "EPICS_CA_CONN_TMO": (_positive_float, 30.0),
    "EPICS_CA_BEACON_PERIOD": (_positive_float, 15.0),
    "EPICS_CA_REPEATER_PORT": (_port, DEFAULT_REPEATER_PORT),
    "EPICS_CA_SERVER_PORT": (_port, DEFAULT_SERVER_PORT),
    "EPICS_CA_MAX_ARRAY_BYTES": (_positive_int, DEFAULT_MAX_ARRAY_BYTES),
    "EPICS_CA_AUTO_ARRAY_BYTES": (_flag, "YES"),
    "EPICS_CA_MAX_SEARCH_PERIOD": (_positive_float, 300.0),
    "EPICS_CA_NAME_SERVERS": (_text, ""),
    "EPICS_CAS_SERVER_PORT": (_port, "EPICS_CA_SERVER_PORT"),
    "EPICS_CAS_BEACON_PORT": (_port, "EPICS_CA_REPEATER_PORT"),
    "EPICS_CAS_BEACON_PERIOD": (_positive_float, "EPICS_CA_BEACON_PERIOD"),
    "EPICS_CAS_BEACON_ADDR_LIST": (_text, "EPICS_CA_ADDR_LIST"),
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": (_flag, "EPICS_CA_AUTO_ADDR_LIST"),
    "EPICS_CAS_INTF_ADDR_LIST": (_text, ""),
    "EPICS_CAS_IGNORE_ADDR_LIST": (_text, ""),
}


def get_environment_variables(env=None):
    """Every known EPICS_CA*/EPICS_CAS* setting, defaults and fallbacks applied.

    Ports and byte counts are ints, periods floats, YES/NO flags the strings
    'YES'/'NO', address lists single-space-separated strings (the types
    caproto returns).  EPICS_CA_MAX_SEARCH_PERIOD is raised to 60 s as libca
    does.
    """
    env = os.environ if env is None else env
    result = {}
    for name, (parse, default) in _VARIABLES.items():
        raw = env.get(name, "")
        if str(raw).strip():
            result[name] = parse(raw, name)
        elif isinstance(default, str) and default.startswith("EPICS_"):
            result[name] = result[default]       # fallbacks come later in order
        else:
            result[name] = default
    result["EPICS_CA_MAX_SEARCH_PERIOD"] = max(
        result["EPICS_CA_MAX_SEARCH_PERIOD"], MIN_MAX_SEARCH_PERIOD)
    return result


def parse_address_list(text, default_port, variable="address list"):
    """``'host[:port] host2 ...'`` -> ``[(host, port), ...]``, order kept.

    Duplicates are dropped.  `variable` names the source in error messages.
    """
    addresses = []
    for entry in str(text).split():
        host, sep, port_text = entry.rpartition(":")
        if not sep:
            host, port = entry, default_port
        else:
            if not host:
                raise CaprotoValueError(f"{variable}: entry {entry!r} has no host")
            port = _port(port_text, f"{variable} entry {entry!r}")
        if (host, port) not in addresses:
            addresses.append((host, port))
    return addresses


def _auto(auto_addresses):
    return [LIMITED_BROADCAST] if auto_addresses is None else list(auto_addresses)


def get_client_address_list(env=None, auto_addresses=None):
    """Where a client sends searches: ``[(host, port), ...]``.

    EPICS_CA_ADDR_LIST entries (port defaulting to EPICS_CA_SERVER_PORT),
    followed -- when EPICS_CA_AUTO_ADDR_LIST is YES -- by `auto_addresses`
    (the interfaces' broadcast addresses; 255.255.255.255 if not given).
    Like libca, the explicit list does not switch the automatic one off.
    """
    values = get_environment_variables(env)
    port = values["EPICS_CA_SERVER_PORT"]
    addresses = parse_address_list(values["EPICS_CA_ADDR_LIST"], port,
                                   "EPICS_CA_ADDR_LIST")
    if values["EPICS_CA_AUTO_ADDR_LIST"] == "YES":
        for host in _auto(auto_addresses):
            if (host, port) not in addresses:
                addresses.append((host, port))
    return addresses


def get_address_list(env=None, auto_addresses=None):
    """Search destinations as caproto spells them: ``['host', 'host:port']``."""
    port = get_environment_variables(env)["EPICS_CA_SERVER_PORT"]
    return [host if p == port else f"{host}:{p}"
            for host, p in get_client_address_list(env, auto_addresses)]


def get_server_address_list(env=None):
    """Interfaces a server binds: hosts from EPICS_CAS_INTF_ADDR_LIST.

    Default ``['0.0.0.0']`` (every interface).  A server listens on the one
    port EPICS_CAS_SERVER_PORT; a port given in an entry must agree with it.
    """
    values = get_environment_variables(env)
    port = values["EPICS_CAS_SERVER_PORT"]
    entries = parse_address_list(values["EPICS_CAS_INTF_ADDR_LIST"], port,
                                 "EPICS_CAS_INTF_ADDR_LIST")
    for host, entry_port in entries:
        if entry_port != port:
            raise CaprotoValueError(
                f"EPICS_CAS_INTF_ADDR_LIST entry {host}:{entry_port} disagrees "
                f"with the server port {port} (EPICS_CAS_SERVER_PORT)")
    return [host for host, _port_ in entries] or ["0.0.0.0"]


def get_beacon_address_list(env=None, auto_addresses=None):
    """Where a server sends beacons: ``[(host, port), ...]``.

    EPICS_CAS_BEACON_ADDR_LIST (falling back to EPICS_CA_ADDR_LIST), ports
    defaulting to EPICS_CAS_BEACON_PORT (falling back to
    EPICS_CA_REPEATER_PORT), plus `auto_addresses` when
    EPICS_CAS_AUTO_BEACON_ADDR_LIST (else EPICS_CA_AUTO_ADDR_LIST) is YES.
    """
    env = os.environ if env is None else env
    values = get_environment_variables(env)
    port = values["EPICS_CAS_BEACON_PORT"]
    source = ("EPICS_CAS_BEACON_ADDR_LIST"
              if str(env.get("EPICS_CAS_BEACON_ADDR_LIST", "")).strip()
              else "EPICS_CA_ADDR_LIST")
    addresses = parse_address_list(values["EPICS_CAS_BEACON_ADDR_LIST"], port,
                                   source)
    if values["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "YES":
        for host in _auto(auto_addresses):
            if (host, port) not in addresses:
                addresses.append((host, port))
    return addresses


def get_name_server_list(env=None):
    """EPICS_CA_NAME_SERVERS as ``[(host, port), ...]`` (TCP search targets)."""
    values = get_environment_variables(env)
    return parse_address_list(values["EPICS_CA_NAME_SERVERS"],
                              values["EPICS_CA_SERVER_PORT"],
                              "EPICS_CA_NAME_SERVERS")


def get_server_ignore_list(env=None):
    """Hosts whose searches a server ignores (EPICS_CAS_IGNORE_ADDR_LIST)."""
    values = get_environment_variables(env)
    entries = parse_address_list(values["EPICS_CAS_IGNORE_ADDR_LIST"],
                                 values["EPICS_CAS_SERVER_PORT"],
                                 "EPICS_CAS_IGNORE_ADDR_LIST")
    return [host for host, _port_ in entries]
