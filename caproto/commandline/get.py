"""caproto-get: read PVs and print them as epics-base's caget does.

    caproto-get [-t | -a | -d TYPE | --format FMT] [-n] [-# N] PV [PV ...]

All PVs are searched for together; each is then read once.  A PV that does
not connect or cannot be read gets one line on stderr and the exit status
becomes 1; the others are still printed.

Like caget, a plain read asks for the channel's full element count (or
-# N of them), while -c (caget's ca_get_callback) asks for the server's
current count, so a waveform prints only its NORD elements.  Both wait
for the server's ReadNotify answer.
"""
import argparse
import sys

from .._dbr import ChannelType, promote_type
from .._errors import CaprotoError
from ..sync.client import Session, read_entry
from ._args import (add_as_string_option, add_common_options,
                    add_value_format_options, configure_logging, dbr_type,
                    fail, native_or_string, run_main, value_format)
from ._format import format_custom, format_detailed, format_line

TOOL = "caproto-get"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Read EPICS PVs over Channel Access (like caget).")
    parser.add_argument("pv_names", nargs="+", metavar="PV")
    add_common_options(parser)
    parser.add_argument("-c", "--callback", action="store_true",
                        help="asynchronous get as caget -c: ask for the "
                        "current (dynamic) element count and wait for the "
                        "answer")
    layout = parser.add_mutually_exclusive_group()
    layout.add_argument("-t", "--terse", action="store_true",
                        help="print only the value")
    layout.add_argument("-a", "--wide", action="store_true",
                        help='"name timestamp value status severity"')
    layout.add_argument("-d", "--data-type", type=dbr_type, metavar="TYPE",
                        help="read as this DBR type (name or number) and "
                        "print every field of it")
    layout.add_argument("--format", metavar="FMT",
                        help="Python format string, e.g. '{pv_name} "
                        "{value} {units}'; fields: pv_name value count "
                        "timestamp status severity units precision data_type")
    add_as_string_option(parser)
    add_value_format_options(parser)
    return parser


def request_type(entry, args):
    """The DBR type caget would ask for, given the options."""
    if args.data_type is not None:
        return args.data_type
    native = native_or_string(ChannelType(entry.native_data_type), args)
    if args.wide or args.format:
        return promote_type(native, use_time=True)
    return native


def request_count(entry, args):
    """caget's count: -# N capped at the channel's; without -# the full
    count, or with -c 0 (the server's current count)."""
    native = entry.native_data_count or 1
    if not args.count:
        return 0 if args.callback else native
    return min(args.count, native)


def render(session, name, entry, response, args, fmt):
    if args.data_type is not None:
        return format_detailed(name, entry.native_data_type, response, fmt)
    if args.format:
        control = None
        if "{units" in args.format or "{precision" in args.format:
            control = read_entry(session, entry, promote_type(
                entry.native_data_type, use_ctrl=True), 1, args.timeout)
        return format_custom(args.format, name, response, fmt, control)
    mode = "terse" if args.terse else "wide" if args.wide else "plain"
    return format_line(name, response, fmt, mode)


def main(argv=None):
    return run_main(TOOL, _main, argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    fmt = value_format(args)
    status = 0
    with Session(repeater=not args.no_repeater) as session:
        entries = session.connect_all(args.pv_names, args.priority, args.timeout)
        for name, entry in zip(args.pv_names, entries):
            if not entry.connected:
                fail(TOOL, session.core.timeout_error(entry, "connecting to",
                                                      args.timeout))
                status = 1
                continue
            try:
                data_type = request_type(entry, args)
                response = read_entry(session, entry, data_type,
                                      request_count(entry, args), args.timeout,
                                      force_int_enums=True)
                print(render(session, name, entry, response, args, fmt), flush=True)
            except (CaprotoError, ValueError) as exc:
                fail(TOOL, exc)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
