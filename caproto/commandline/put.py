"""caproto-put: write a PV and report old and new values, as caput does.

    caproto-put [-c] [-t | -l] [-n | -s] PV VALUE...
    caproto-put -a PV COUNT V1 V2 ...       (an array)
    caproto-put -S PV "some long text"      (a string into a char array)

As with caput, a put is a plain write (WriteRequest) unless -c asks for
the server's completion notice (WriteNotify, waited for up to -w).  A
refused put is reported either way: the server answers a refused plain
write with an ErrorResponse, which arrives before the answer to the read
that prints "New :".  Output follows caput: "Old :" is printed before the
put; a put refused without -c still prints "New :" (the unchanged value).
The refusal (caput's ECA message, e.g. "Channel write request failed")
is one line on stderr, and the exit status is 1.
Values are converted to the PV's native type here, with epics-base's rules
(caproto._convert), so "abc" for a double fails before anything is sent.
An enum takes one of its state names or, failing that, an index.
"""
import argparse
import sys

from .._convert import convert_values, string_to_char_array
from .._dbr import AccessRights, ChannelType, native_type, promote_type
from .._errors import CaprotoConversionError, CaprotoError, CaprotoValueError
from ..sync.client import Session, read_entry, write_entry
from ._args import add_common_options, configure_logging, run_main, value_format
from ._format import format_line

TOOL = "caproto-put"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Write an EPICS PV over Channel Access (like caput).")
    parser.add_argument("pv_name", metavar="PV")
    parser.add_argument("values", nargs="+", metavar="VALUE")
    add_common_options(parser)
    parser.add_argument("-c", "--callback", action="store_true",
                        help="wait until the server reports the put complete")
    layout = parser.add_mutually_exclusive_group()
    layout.add_argument("-t", "--terse", action="store_true",
                        help="print only the new value")
    layout.add_argument("-l", "--wide", action="store_true",
                        help='"name timestamp value status severity"')
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("-n", "--enum-as-number", action="store_true",
                      help="an enum value is an index, never a state name")
    kind.add_argument("-s", "--enum-as-string", action="store_true",
                      help="an enum value is a state name, never an index")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("-a", "--array", action="store_true",
                       help="VALUE... is a count followed by that many values")
    shape.add_argument("-S", "--char-as-string", action="store_true",
                       help="write the text into a char array (long string)")
    parser.add_argument("-F", "--separator", default=" ",
                        help="output field separator (default space)")
    return parser


def _array_values(values):
    try:
        count = int(values[0])
    except ValueError:
        raise CaprotoValueError(
            f"-a expects the element count first, not {values[0]!r}") from None
    items = values[1:]
    if count != len(items):
        raise CaprotoValueError(f"-a: count {count} but {len(items)} value(s) given")
    return items


def _enum_index(text, strings, args, name):
    """An enum state given by name (unless -n) or index (unless -s)."""
    if not args.enum_as_number and text in strings:
        return strings.index(text)
    if not args.enum_as_string:
        try:
            index = int(text, 0)
        except ValueError:
            index = None
        if index is not None and 0 <= index < max(len(strings), 1):
            return index
    choices = ", ".join(repr(s) for s in strings)
    raise CaprotoValueError(f"{text!r} is not a state of {name!r} (states: {choices})")


def prepare(session, entry, args):
    """(data, data_type) to write, converted and checked here."""
    native = ChannelType(native_type(entry.native_data_type))
    texts = _array_values(args.values) if args.array else [" ".join(args.values)]
    if args.char_as_string:
        if native != ChannelType.CHAR:
            raise CaprotoValueError(f"-S needs a char array; {entry.name!r} is "
                                    f"{native.name}")
        data = string_to_char_array(texts[0])[:entry.native_data_count]
        return data, ChannelType.CHAR
    if native == ChannelType.ENUM:
        control = read_entry(session, entry, ChannelType.CTRL_ENUM, 1,
                             args.timeout, force_int_enums=True)
        strings = [s.decode("latin-1") for s in control.metadata.enum_strings]
        return [_enum_index(t, strings, args, entry.name) for t in texts], native
    if len(texts) > (entry.native_data_count or 1):
        raise CaprotoValueError(f"{len(texts)} values given; {entry.name!r} "
                                f"holds at most {entry.native_data_count}")
    try:
        data = convert_values(texts, ChannelType.STRING, native)
    except CaprotoConversionError as exc:
        raise CaprotoValueError(f"cannot write {' '.join(texts)!r} to "
                                f"{entry.name!r} ({native.name}): {exc}") from None
    return data, native


def _read_for_display(session, entry, args):
    native = ChannelType(native_type(entry.native_data_type))
    if native == ChannelType.ENUM and not args.enum_as_number:
        native = ChannelType.STRING
    data_type = promote_type(native, use_time=True) if args.wide else native
    return read_entry(session, entry, data_type, entry.native_data_count,
                      args.timeout, force_int_enums=True)


def _check_write_access(entry):
    """caput's client-side refusal (ca_array_put: ECA_NOWTACCESS)."""
    if entry.access_rights is not None and \
            not entry.access_rights & AccessRights.WRITE:
        raise CaprotoError(
            f"write to {entry.name!r} on {entry.server[0]}:{entry.server[1]} "
            "refused: Write access denied (ECA_NOWTACCESS: the server grants "
            "this client read access only)")


def _print(line):
    print(line, flush=True)


def main(argv=None):
    return run_main(TOOL, _main, argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    fmt = value_format(args)
    mode = "wide" if args.wide else "plain"
    with Session(repeater=not args.no_repeater) as session:
        [entry] = session.connect_all([args.pv_name], args.priority, args.timeout)
        if not entry.connected:
            raise session.core.timeout_error(entry, "connecting to", args.timeout)
        data, data_type = prepare(session, entry, args)
        if not args.terse:
            old = _read_for_display(session, entry, args)
            _print("Old : " + format_line(args.pv_name, old, fmt, mode))
        _check_write_access(entry)
        write_entry(session, entry, data, notify=args.callback,
                    data_type=data_type, timeout=args.timeout)
        # Read back on the same circuit: a refusal of the plain write
        # arrives before this answer.
        new = _read_for_display(session, entry, args)
        refused = session.take_server_errors(entry)
    if args.terse:
        _print(format_line(args.pv_name, new, fmt, "terse"))
    else:
        _print("New : " + format_line(args.pv_name, new, fmt, mode))
    if refused:
        raise refused[0].error
    return 0


if __name__ == "__main__":
    sys.exit(main())
