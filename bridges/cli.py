"""``caproto-bridge CONFIG.yaml``: check, list or serve a bridge configuration.

Exit codes: 0 ok, 1 hardware missing, 2 config errors (one line each on stderr).
"""
import argparse
import logging
import sys

from bridges.loader import InvalidConfig, load_config
from bridges.schema import ASYNC_LIBS, HEALTH_PVS
from devices.errors import DeviceDisconnected, DeviceError

PROG = "caproto-bridge"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve devices described in a YAML file as EPICS Channel Access PVs.")
    parser.add_argument("config", help="bridge configuration (YAML, 'version: 1')")
    parser.add_argument("--sim", action="store_true",
                        help="talk to each device's built-in simulator instead of hardware")
    parser.add_argument("--check", action="store_true",
                        help="validate the file, print the PVs it would serve, touch no hardware")
    parser.add_argument("--list-pvs", action="store_true", help="print every PV name, one per line")
    parser.add_argument("--prefix", help="replace ioc.prefix (the start of every PV name)")
    parser.add_argument("--async-lib", choices=ASYNC_LIBS, help="replace ioc.async_lib")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v: debug)")
    return parser


def load(args):
    """The validated config with command-line overrides applied (InvalidConfig otherwise)."""
    overrides = {}
    if args.prefix is not None:
        overrides[("ioc", "prefix")] = args.prefix
    if args.async_lib is not None:
        overrides[("ioc", "async_lib")] = args.async_lib
    return load_config(args.config, sim=args.sim, overrides=overrides)


def _scan_text(pv):
    if pv.scan is not None:
        return "scan %s" % _seconds(pv.scan)
    if pv.init_from_device:
        return "read at connect"
    return "on write"


def _seconds(value):
    return "%g ms" % (value * 1e3) if value < 1 else "%g s" % value


def describe_pvs(config):
    """Rows for --check: name, record, type, units, access, scan."""
    rows = []
    for device, pv, full in config.pv_names():
        access = "rw" if pv.readable and pv.writable else ("r" if pv.readable else "w")
        extras = [e for e in ("autosave" if pv.autosave else "",
                              "limits %g..%g %s" % (pv.drive_limits + (pv.on_drive_limit,))
                              if pv.drive_limits else "",
                              "|".join(pv.enum) if pv.type in ("enum", "bool") else "") if e]
        rows.append((full, pv.record, pv.type, pv.units or "-", access, _scan_text(pv), ", ".join(extras)))
    return rows


def print_check(config, out):
    devices = config.devices
    rows = describe_pvs(config)
    out.write("%s: OK: %d device(s), %d PV(s) plus health PVs %s per device\n" % (
        config.source, len(devices), len(rows), "/".join(HEALTH_PVS)))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [str(c).ljust(w) for c, w in zip(row, widths)] + [row[-1]]
        out.write("  " + "  ".join(cells).rstrip() + "\n")


def print_pv_list(config, out):
    for device in config.devices:
        for pv_device, _pv, full in config.pv_names():
            if pv_device is device:
                out.write(full + "\n")
        for full in config.health_pv_names(device):
            out.write(full + "\n")


def check_hardware(config, args):
    """One line per device whose hardware is absent (DeviceDisconnected on open); [] under --sim.

    Other failures (a device that is present but answers badly) are left to the
    runtime, which alarms and retries instead of refusing to start.
    """
    if args.sim:
        return []
    from devices.registry import registry
    problems = []
    for index, device in enumerate(config.devices):
        driver = registry.create(device.driver, device.settings, sim=False, path=("devices", index))
        try:
            driver.open()
        except DeviceDisconnected as exc:
            line = "%s: device %r: %s" % (PROG, device.name, " ".join(str(exc).split()))
            if "--sim" not in line:
                line += "; to run without this hardware: %s %s --sim" % (PROG, args.config)
            problems.append(line)
        except DeviceError:
            pass
        finally:
            try:
                driver.close()
            except Exception:   # closing a half-open driver must not hide the real message
                pass
    return problems


def serve(config, args):
    """Run the IOC: one runner per device, their PVs served over Channel Access,
    until SIGINT/SIGTERM; then close every device. Returns the exit code."""
    import signal

    from bridges.mapping import build_ioc
    from caproto.server import run
    from caproto.server.common import contexts_serving_now

    autosave = None
    if config.ioc.autosave is not None:
        from bridges.autosave import AutosaveStore
        autosave = AutosaveStore(config.ioc.autosave.file, period=config.ioc.autosave.period)
    ioc = build_ioc(config, sim=args.sim, autosave=autosave)

    # SIGTERM takes the same path as Ctrl-C. A KeyboardInterrupt raised at an
    # arbitrary bytecode can land in a finalizer and be printed (and lost);
    # asyncio.run (3.11+) installs a SIGINT handler that cancels the server
    # task instead, so SIGTERM calls whatever handles SIGINT at that moment.
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started with it ignored

    def stop(signum, frame):
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not signal.default_int_handler:
            handler(signal.SIGINT, frame)
            return
        # curio/trio: ask the server to finish (Context.stop is thread-safe)
        # rather than raise KeyboardInterrupt inside whichever task runs,
        # which the library then reports as a crash with a traceback.
        serving = [context for context in contexts_serving_now()
                   if callable(getattr(context, "stop", None))]
        if not serving:
            raise KeyboardInterrupt
        for context in serving:
            context.stop()
    signal.signal(signal.SIGTERM, stop)
    log = logging.getLogger("bridges")
    log.info("serving %d PVs from %s%s with %s", len(ioc.pvdb), config.source,
             " (simulated devices)" if args.sim else "", config.ioc.async_lib)
    try:
        run(ioc.pvdb, module_name="caproto.%s.server" % config.ioc.async_lib,
            interfaces=list(config.ioc.interfaces) or None, log_pv_names=args.verbose > 0)
    except KeyboardInterrupt:
        pass
    finally:
        for runner in ioc.runners:
            runner.close()
        if autosave is not None:
            autosave.flush()
        log.info("stopped; devices closed")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # A refused put is logged once, by the bridge (device, PV and reason);
        # the server's per-circuit echo of it is for -v.
        logging.getLogger("caproto.circ").setLevel(logging.WARNING)
    try:
        config = load(args)
    except InvalidConfig as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 2
    if args.check:
        print_check(config, sys.stdout)
        return 0
    if args.list_pvs:
        print_pv_list(config, sys.stdout)
        return 0
    problems = check_hardware(config, args)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return 1
    return serve(config, args)


if __name__ == "__main__":
    sys.exit(main())
