"""Options and error handling shared by the caproto-* command-line tools.

Option letters are epics-base's (caget/caput/camonitor) wherever a user of
those would reach for them; long options spell out what they do.  Errors a
user can meet end up as one line on stderr, ``<tool>: <message>``, and a
non-zero exit status.
"""
import argparse
import logging
import os
import sys

from .. import __version__
from .._dbr import ChannelType
from .._errors import CaprotoError
from ._format import ValueFormat, list_types, parse_dbr_type

__all__ = ("add_common_options", "add_value_format_options", "value_format",
           "configure_logging", "fail", "run_main", "dbr_type")


def dbr_type(text):
    """argparse type for -d: a ChannelType by name or number."""
    try:
        return parse_dbr_type(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def add_common_options(parser):
    parser.add_argument("-w", "--timeout", type=_positive, default=1.0,
                        help="seconds to wait for a server (default 1)")
    parser.add_argument("-p", "--priority", type=int, default=0,
                        choices=range(100), metavar="PRIO",
                        help="circuit priority 0..99 (default 0)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v logs every CA command sent and received; "
                        "-vvv also every internal debug message")
    parser.add_argument("--no-repeater", action="store_true",
                        help="do not register with the CA repeater")
    parser.add_argument("-V", "--version", action="version",
                        version=f"%(prog)s (caproto {__version__})")


class _ListTypes(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the DBR types -d accepts, and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(list_types())
        parser.exit()


def add_value_format_options(parser, enum_option=True):
    """caget-style number/array options (-e/-f/-g, -lx, -0x, -S, -F, -#, -n)."""
    parser.add_argument("--list-types", action=_ListTypes)
    if enum_option:
        parser.add_argument("-n", "--enum-as-number", action="store_true",
                            help="print enum values as numbers, not strings")
    parser.add_argument("-#", "--count", type=int, default=None, metavar="N",
                        help="at most N array elements")
    parser.add_argument("-S", "--char-as-string", action="store_true",
                        help="print a char array as a (long) string")
    parser.add_argument("-F", "--separator", default=" ",
                        help="output field separator (default space)")
    floats = parser.add_mutually_exclusive_group()
    for letter, word in (("e", "exponential %%e"), ("f", "fixed %%f"),
                         ("g", "general %%g")):
        floats.add_argument(f"-{letter}", type=int, metavar="DIGITS",
                            dest=f"float_{letter}",
                            help=f"print doubles in {word} with DIGITS digits")
    for letter, word in (("x", "hex"), ("o", "octal"), ("b", "binary")):
        floats.add_argument(f"-l{letter}", action="store_const", const=letter,
                            dest="round_format",
                            help=f"round doubles to integers, print in {word}")
    ints = parser.add_mutually_exclusive_group()
    for letter, word in (("x", "hex"), ("o", "octal"), ("b", "binary")):
        ints.add_argument(f"-0{letter}", action="store_const", const=letter,
                          dest="int_format", help=f"print integers in {word}")


def add_as_string_option(parser):
    """caget/camonitor -s: FLOAT/DOUBLE values read as strings."""
    parser.add_argument("-s", "--as-string", action="store_true",
                        help="read FLOAT/DOUBLE values as strings: the "
                        "server formats them with the record's precision")


def native_or_string(native, args):
    """The value type caget/camonitor ask for: an ENUM as STRING unless -n,
    a FLOAT/DOUBLE as STRING with -s, anything else as it is."""
    if native == ChannelType.ENUM and not getattr(args, "enum_as_number", False):
        return ChannelType.STRING
    if getattr(args, "as_string", False) and native in (ChannelType.FLOAT,
                                                        ChannelType.DOUBLE):
        return ChannelType.STRING
    return native


def value_format(args):
    float_format = digits = None
    for letter in "efg":
        value = getattr(args, f"float_{letter}", None)
        if value is not None:
            float_format, digits = letter, value
    return ValueFormat(float_format=float_format, digits=digits,
                       round_format=getattr(args, "round_format", None),
                       int_format=getattr(args, "int_format", None),
                       char_as_string=getattr(args, "char_as_string", False),
                       count_given=bool(getattr(args, "count", None)),
                       separator=getattr(args, "separator", " "))


def configure_logging(verbose):
    """-v: every command on the wire; -vvv: every caproto debug message."""
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s] %(message)s"))
    target = logging.getLogger("caproto" if verbose >= 3 else "caproto.sync.wire")
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)


def fail(tool, message):
    """One line on stderr, naming the tool."""
    print(f"{tool}: {message}", file=sys.stderr, flush=True)


def run_main(tool, body, argv=None):
    """Run ``body(argv) -> exit status``, turning errors into one stderr line."""
    try:
        return body(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:           # e.g. `caproto-monitor PV | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (CaprotoError, ValueError, OSError) as exc:
        fail(tool, exc)
        return 1
