"""caproto-monitor: print one line per update of each PV, as camonitor does.

    caproto-monitor [-m va] [-t KEY] [-n] [--maximum N | --duration S] PV...

Lines are camonitor's: name, timestamp, value, status, severity.  Channel
filters are part of the name (``'PV.{"dbnd":{"abs":2}}'``, ``PV.[0:3]``)
and are applied by the server.  The tool stops after --maximum updates in
all, after --duration seconds, or on Ctrl-C.

Connections are reported as camonitor reports them: a PV no server has
answered within -w gets a ``*** Not connected (PV not found)`` line and is
still searched for; a PV whose server goes away gets a ``<local time> ***
disconnected`` line and prints its value again when the server is back.
A PV that never connected makes the exit status 1 (one line on stderr).

-t KEY chooses the time column as camonitor does: s (server stamp, the
default), c (this host's clock, in parentheses), n (none); with r (since
the program started; for server stamps, since the first update), i (since
the previous update of any PV) or I (since that PV's previous update) each
PV's first line stays absolute and later ones print signed seconds.  With
--format the same column is the {timestamp} field.
"""
import argparse
import sys
import time

from .._constants import EPICS_EPOCH
from .._dbr import ChannelType, SubscriptionType, promote_type
from .._errors import CaprotoValueError
from ..client.core import ChannelConnected, ChannelDisconnected
from ..sync.client import Session, Subscription, read_refusal
from ._args import (add_as_string_option, add_common_options,
                    add_value_format_options, configure_logging, fail,
                    native_or_string, run_main, value_format)
from ._format import (TimeText, format_custom, format_disconnected,
                      format_line, format_not_connected, format_timestamp,
                      stamp_of, unix_stamp)

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
        """The column for `channel`'s update stamped `metadata`, received
        at `now_ns` (Unix ns); a TimeText whose stamp is the absolute time
        of the first source -t chose."""
        key = self.key
        server = _nanoseconds(metadata)
        if self.first_server is None:
            self.first_server = server
        server_stamp = stamp_of(metadata)
        client_stamp = _local_stamp(now_ns)
        if key.kind == "absolute" or channel not in self.printed:
            parts = [format_timestamp(metadata) if key.server else "",
                     "(%s)" % format(client_stamp) if key.client else ""]
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
        stamp = server_stamp if key.server else (
            client_stamp if key.client else None)
        return TimeText("".join(parts), stamp)


def _local_stamp(ns):
    """This host's time `ns` (Unix nanoseconds) as a Stamp."""
    return unix_stamp(ns // 10 ** 9, ns % 10 ** 9)


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
                      help="exit after this many seconds (counted once "
                      "every PV connected or -w passed)")
    parser.add_argument("-t", "--time", type=parse_time_key, default=TimeKey(),
                        metavar="KEY", help="time column as camonitor -t: "
                        "s server, c client (in parentheses), n none; r "
                        "relative, i incremental, I incremental per PV "
                        "(r/i/I need s or c); e.g. -tsi.  With --format it "
                        "is the {timestamp} field")
    parser.add_argument("--format", metavar="FMT", default=None,
                        help="Python format string over pv_name, value, "
                        "timestamp (the -t column; a strftime spec formats "
                        "its absolute time: {timestamp:%%H:%%M:%%S}), "
                        "status, severity, count, data_type, response, "
                        "callback_count.  Connection lines keep camonitor's "
                        "layout")
    add_as_string_option(parser)
    add_value_format_options(parser)
    return parser


class _ConnectionSession(Session):
    """A sync Session that also hands channel (dis)connections to
    ``on_connection(session, effect)``; Session itself drops them."""

    def __init__(self, repeater, on_connection):
        self.on_connection = on_connection
        super().__init__(repeater)

    def apply(self, effects):
        for effect in effects:
            super().apply((effect,))
            if isinstance(effect, (ChannelConnected, ChannelDisconnected)):
                self.on_connection(self, effect)


class Monitor:
    """camonitor's life cycle for the PVs of one command line.

    Each PV is subscribed once, on its first connection; the client core
    re-subscribes after every reconnect.  `counts` remembers each PV's
    last element count, which decides whether camonitor pads its name.
    """

    def __init__(self, args, fmt):
        self.args, self.fmt = args, fmt
        self.times = TimeColumn(args.time, time.time_ns())
        self.updates = 0
        self.stopped = None           # why the loop must end, once it must
        self.counts = {}              # Subscription -> last element count
        self.subscribed = set()       # Subscriptions that ever connected
        self.refused = []             # why some could not be monitored
        self.subscriptions = []
        for name in args.pv_names:
            sub = Subscription(name, priority=args.priority, data_type="time",
                               mask=args.mask, data_count=args.count)
            sub.add_callback(self.show)
            self.subscriptions.append(sub)

    def emit(self, line):
        try:
            print(line, flush=True)
        except BrokenPipeError:       # the reader went away (| head -1)
            self.stopped = "broken pipe"

    def show(self, sub, response):
        """One value update: camonitor's line, or the --format one."""
        now = time.time_ns()
        stamp = self.times.text(sub, response.metadata, now)
        self.counts[sub] = len(response.data)
        if self.args.format:
            line = format_custom(self.args.format, sub.pv_name, response,
                                 self.fmt, timestamp=stamp,
                                 callback_count=self.updates + 1)
        else:
            line = format_line(sub.pv_name, response, self.fmt, "wide", stamp)
        self.emit(line)
        self.updates += 1
        if self.args.maximum is not None and self.updates >= self.args.maximum:
            self.stopped = self.stopped or "maximum"

    def connection(self, session, effect):
        sub, entry = effect.entry.owner, effect.entry
        if isinstance(effect, ChannelDisconnected):
            stamp = _local_stamp(time.time_ns())
            count = self.counts.get(sub, entry.native_data_count or 1)
            self.emit(format_disconnected(sub.pv_name, count, self.fmt, stamp))
        elif sub not in self.subscribed:
            self.subscribed.add(sub)
            refusal = read_refusal(entry)
            if refusal is not None:        # say so, keep monitoring the others
                print(f"{TOOL}: {refusal}", file=sys.stderr, flush=True)
                self.refused.append(refusal)
                return
            data_type = promote_type(native_or_string(
                ChannelType(entry.native_data_type), self.args), use_time=True)
            _entry, effects = session.core.subscribe(
                entry, sub, data_type=data_type, data_count=sub.data_count,
                mask=sub.mask)
            session.apply(effects)

    def run(self):
        """Monitor until stopped; the exit status (1: a PV never connected
        or could not be read)."""
        args = self.args
        with _ConnectionSession(not args.no_repeater,
                                self.connection) as session:
            session.on_server_error = lambda effect: fail(TOOL, effect.error)
            entries = []
            for sub in self.subscriptions:
                entry, effects = session.core.add_channel(
                    sub.pv_name, sub.priority, sub, time.monotonic())
                session.apply(effects)
                entries.append(entry)
            try:
                session.run_until(lambda: self.stopped or all(
                    sub in self.subscribed for sub in self.subscriptions),
                    time.monotonic() + args.timeout)
                for sub in self.subscriptions:
                    if sub not in self.subscribed and not self.stopped:
                        self.emit(format_not_connected(sub.pv_name, self.fmt))
                end = (None if args.duration is None
                       else time.monotonic() + args.duration)
                session.run_until(lambda: self.stopped, end)
            except KeyboardInterrupt:
                pass
            if self.stopped == "broken pipe":
                raise BrokenPipeError(self.stopped)
            missing = [entry for sub, entry in zip(self.subscriptions, entries)
                       if sub not in self.subscribed]
            if missing:
                error = str(session.core.timeout_error(
                    missing[0], "connecting to", args.timeout))
                if len(missing) > 1:
                    error += f"; {len(missing) - 1} more PV(s) never connected"
                fail(TOOL, error)
                return 1
        return 1 if self.refused else 0


def main(argv=None):
    return run_main(TOOL, _main, argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.maximum is not None and args.maximum < 1:
        raise CaprotoValueError(f"--maximum {args.maximum}: must be at least 1")
    return Monitor(args, value_format(args)).run()


if __name__ == "__main__":
    sys.exit(main())
