"""caproto-repeater: run a Channel Access repeater on this host.

    caproto-repeater [--host 0.0.0.0] [--port EPICS_CA_REPEATER_PORT] [-v]

Only one repeater can own the port; when another already does (caRepeater
or a second caproto-repeater), this one says so on stderr and exits 1 --
which is what clients that start a repeater "just in case" expect.
"""
import argparse
import logging
import sys

from ..repeater import run

TOOL = "caproto-repeater"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Run a Channel Access repeater: clients on "
        "this host register with it and receive every beacon it hears.")
    parser.add_argument("--host", default="0.0.0.0",
                        help="interface to bind (default all)")
    parser.add_argument("--port", type=int, default=None,
                        help="UDP port (default EPICS_CA_REPEATER_PORT or 5065)")
    parser.add_argument("--duration", type=float, default=None,
                        help="exit after this many seconds (default: run on)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: registrations; -vv: every datagram")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no start-up message")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(format="[%(asctime)s %(name)s] %(message)s")
        logging.getLogger("caproto.repeater").setLevel(
            logging.DEBUG if args.verbose >= 2 else logging.INFO)

    def ready(address):
        if not args.quiet:
            print(f"{TOOL}: listening on {address[0]}:{address[1]}", flush=True)

    try:
        run(args.host, args.port, duration=args.duration, ready=ready)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        where = f"{args.host}:{args.port or 'EPICS_CA_REPEATER_PORT'}"
        print(f"{TOOL}: cannot listen on {where}: {exc.strerror or exc} "
              "(another repeater is probably running)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
