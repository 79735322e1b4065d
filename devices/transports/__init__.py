"""Message transports, chosen by ``transport: {kind: ...}`` in a device config.

Concrete modules import their third-party library lazily, so a missing optional
dependency (pyvisa, pyserial) only fails the devices that use it, with a
ConfigError that says which package to install.
"""
import importlib

from devices.errors import ConfigError, expect_mapping

# kind -> "module:Class"; each class has from_config(config, *, timeouts, terminators, path).
MESSAGE_TRANSPORTS = {
    "serial": "devices.transports.serial:SerialTransport",
    "visa": "devices.transports.visa:VisaTransport",
}


def transport_class(kind, path=()):
    """The Transport subclass for ``kind``; ConfigError naming ``path`` if unknown."""
    if kind not in MESSAGE_TRANSPORTS:
        raise ConfigError(tuple(path) + ("kind",), "unknown transport kind %r" % (kind,),
                          "use one of: %s" % ", ".join(sorted(MESSAGE_TRANSPORTS)))
    module_name, _, cls_name = MESSAGE_TRANSPORTS[kind].partition(":")
    return getattr(importlib.import_module(module_name), cls_name)


def transport_from_config(config, *, timeouts, terminators, path=()):
    """Validate ``config`` (a mapping with ``kind``) and build the transport. No I/O."""
    expect_mapping(config, path, "a transport mapping like {kind: serial, port: ...}")
    if "kind" not in config:
        raise ConfigError(path, "transport needs a 'kind'",
                          "one of: %s" % ", ".join(sorted(MESSAGE_TRANSPORTS)))
    cls = transport_class(config["kind"], path)
    return cls.from_config(config, timeouts=timeouts, terminators=terminators, path=path)
