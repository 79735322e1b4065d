"""caproto-monitor: print one line per update of each PV, as camonitor does.

    caproto-monitor [-m va] [-t KEY] [-n] [--maximum N | --duration S] PV...

Lines are camonitor's: name, timestamp, value, status, severity.  Channel
filters are part of the name (``'PV.{"dbnd":{"abs":2}}'``, ``PV.[0:3]``)
and are applied by the server.  The tool stops after --maximum updates in
all, after --duration seconds, or on Ctrl-C.

-t KEY chooses the time column as camonitor does: s (server stamp, the
default), c (this host's clock, in parentheses), n (none); with r (since
the program started; for server stamps, since the first update), i (since
the previous update of any PV) or I (since that PV's previous update) each
PV's first line stays absolute and later ones print signed seconds.
"""
import argparse
import sys
import time

from .._constants import EPICS_EPOCH
from .._dbr import SubscriptionType
from .._errors import CaprotoValueError
from ..sync.client import Subscription, block
from ._args import (add_common_options, add_value_format_options,
                    configure_logging, run_main, value_format)
from ._format import (format_custom, format_line, format_timestamp,
                      unix_stamp)

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


_TIME_SOURCES = {"s": "server", "c": "client", "n": "none"}
_TIME_KINDS = {"r": "relative", "i": "incremental", "I": "by channel"}


class TimeKey:
    """camonitor's -t KEY: time sources (server, client) and kind."""

    def __init__(self, server=True, client=False, kind="absolute"):
        self.server, self.client, self.kind = server, client, kind


def parse_time_key(text):
    """-t KEY: letters s, c, n choose sources; r, i or I the kind."""
    key = TimeKey(server=False)
    for letter in text:
        if letter in _TIME_KINDS:
            key.kind = _TIME_KINDS[letter]
        elif letter in _TIME_SOURCES:
            key.server |= letter == "s"
            key.client |= letter == "c"
        else:
            raise argparse.ArgumentTypeError(
                f"-t {text!r}: {letter!r} is not one of " + ", ".join(
                    f"{k} ({v})" for k, v in {**_TIME_SOURCES,
                                              **_TIME_KINDS}.items()))
    if key.kind != "absolute" and not (key.server or key.client):
        raise argparse.ArgumentTypeError(
            f"-t {text!r}: r, i and I need s (server) or c (client) to say "
            "which time to measure")
    return key


def _nanoseconds(metadata):
    """A DBR_TIME stamp as integer Unix nanoseconds."""
    return ((int(metadata.secondsSinceEpoch) + EPICS_EPOCH) * 1000000000
            + int(metadata.nanoSeconds))


class TimeColumn:
    """The time text of each camonitor line, as its -t KEY asks.

    State is camonitor's: the program's start (client reference), the
    first server stamp seen (server reference for r), the previous update
    of any channel (i) or of each channel (I), and which channels have
    printed their first, absolute, line.
    """

    def __init__(self, key, start_ns):
        self.key = key
        self.start = start_ns
        self.first_server = None
        self.previous = (None, None)          # (server, client) ns
        self.by_channel = {}                  # channel -> (server, client)
        self.printed = set()

    def text(self, channel, metadata, now_ns):
        key = self.key
        server = _nanoseconds(metadata)
        if self.first_server is None:
            self.first_server = server
        if key.kind == "absolute" or channel not in self.printed:
            parts = [format_timestamp(metadata) if key.server else "",
                     "(%s)" % format(unix_stamp(now_ns // 10 ** 9,
                                                now_ns % 10 ** 9))
                     if key.client else ""]
        else:
            reference = {"relative": (self.first_server, self.start),
                         "incremental": self.previous,
                         "by channel": self.by_channel[channel]}[key.kind]
            elapsed = ["%+12.6f" % ((new - old) / 1e9) for new, old
                       in zip((server, now_ns), reference)]
            parts = [" " * 14 + elapsed[0] if key.server else "",
                     " " * 14 + "(%s)" % elapsed[1] if key.client else ""]
        self.printed.add(channel)
        self.previous = self.by_channel[channel] = (server, now_ns)
        return "".join(parts)


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
    parser.add_argument("-t", "--time", type=parse_time_key, default=TimeKey(),
                        metavar="KEY", help="time column as camonitor -t: "
                        "s server, c client (in parentheses), n none; r "
                        "relative, i incremental, I incremental per PV "
                        "(r/i/I need s or c); e.g. -tsi.  Not used with "
                        "--format")
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
    times = TimeColumn(args.time, time.time_ns())
    seen = [0]
    stopped = []
    subscriptions = []

    def show(sub, response):
        if args.format:
            line = format_custom(args.format, sub.pv_name, response, fmt,
                                 callback_count=seen[0] + 1)
        else:
            stamp = times.text(sub, response.metadata, time.time_ns())
            line = format_line(sub.pv_name, response, fmt, "wide", stamp)
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
