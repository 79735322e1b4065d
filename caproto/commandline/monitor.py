"""caproto-monitor: print one line per update of each PV, as camonitor does.

    caproto-monitor [-m va] [-n] [--maximum N | --duration S] PV [PV ...]

Lines are camonitor's: name, timestamp, value, status, severity.  Channel
filters are part of the name (``'PV.{"dbnd":{"abs":2}}'``, ``PV.[0:3]``)
and are applied by the server.  The tool stops after --maximum updates in
all, after --duration seconds, or on Ctrl-C.
"""
import argparse
import sys

from .._dbr import SubscriptionType
from .._errors import CaprotoValueError
from ..sync.client import Subscription, block
from ._args import (add_common_options, add_value_format_options,
                    configure_logging, run_main, value_format)
from ._format import format_custom, format_line

TOOL = "caproto-monitor"
_MASK_LETTERS = {"v": SubscriptionType.DBE_VALUE, "a": SubscriptionType.DBE_ALARM,
                 "l": SubscriptionType.DBE_LOG, "p": SubscriptionType.DBE_PROPERTY}


def parse_mask(text):
    """camonitor's -m: letters v (value), a (alarm), l (log), p (property)."""
    mask = SubscriptionType(0)
    for letter in text:
        try:
            mask |= _MASK_LETTERS[letter]
        except KeyError:
            raise argparse.ArgumentTypeError(
                f"-m {text!r}: {letter!r} is not one of v (value), a (alarm), "
                "l (log), p (property)") from None
    if not mask:
        raise argparse.ArgumentTypeError("-m needs at least one of v, a, l, p")
    return mask


def build_parser():
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Monitor EPICS PVs over Channel Access "
        "(like camonitor).")
    parser.add_argument("pv_names", nargs="+", metavar="PV")
    add_common_options(parser)
    parser.add_argument("-m", "--mask", type=parse_mask, default=parse_mask("va"),
                        help="events to ask for: letters v a l p (default va)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--maximum", "-N", type=int, metavar="N", default=None,
                      help="exit after N updates (all PVs together)")
    stop.add_argument("--duration", type=float, metavar="SECONDS", default=None,
                      help="exit after this many seconds")
    parser.add_argument("--format", metavar="FMT", default=None,
                        help="Python format string over pv_name, value, "
                        "timestamp (a datetime: {timestamp:%%H:%%M:%%S}), "
                        "status, severity, count, data_type, response, "
                        "callback_count")
    add_value_format_options(parser)
    return parser


def main(argv=None):
    return run_main(TOOL, _main, argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.maximum is not None and args.maximum < 1:
        raise CaprotoValueError(f"--maximum {args.maximum}: must be at least 1")
    fmt = value_format(args)
    seen = [0]
    stopped = []
    subscriptions = []

    def show(sub, response):
        if args.format:
            line = format_custom(args.format, sub.pv_name, response, fmt,
                                 callback_count=seen[0] + 1)
        else:
            line = format_line(sub.pv_name, response, fmt, "wide")
        try:
            print(line, flush=True)
        except BrokenPipeError:       # the reader went away (| head -1)
            stopped.append("broken pipe")
        seen[0] += 1
        if stopped or (args.maximum is not None and seen[0] >= args.maximum):
            for other in subscriptions:
                other.interrupt()

    for name in args.pv_names:
        sub = Subscription(name, priority=args.priority,
                           data_type="time", mask=args.mask,
                           data_count=args.count)
        sub.add_callback(show)
        subscriptions.append(sub)
    block(*subscriptions, duration=args.duration, timeout=args.timeout,
          force_int_enums=args.enum_as_number,
          repeater=not args.no_repeater)
    if stopped:
        raise BrokenPipeError(stopped[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
