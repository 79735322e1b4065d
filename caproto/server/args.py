"""Command line of an IOC: ioc_arg_parser / template_arg_parser, and run.

``ioc_options, run_options = ioc_arg_parser(default_prefix='x:', desc='...')``
then ``run(MyIOC(**ioc_options).pvdb, **run_options)``.  ioc_options holds
``prefix`` and ``macros``; run_options holds ``module_name`` (the server
layer picked by ``--async-lib``), ``log_pv_names`` and ``interfaces``.
"""
import argparse
import importlib
import logging
import sys

from .._errors import CaprotoValueError

__all__ = ("ioc_arg_parser", "template_arg_parser", "run", "configure_logging",
           "ASYNC_LIBRARIES")

ASYNC_LIBRARIES = ("asyncio", "curio", "trio")
_HANDLER_FLAG = "_caproto_ioc_handler"


class _Formatter(logging.Formatter):
    """``[I 12:34:56.789 module:42] message``, as caproto IOCs print."""

    def format(self, record):
        stamp = self.formatTime(record, "%H:%M:%S") + f".{int(record.msecs):03d}"
        text = (f"[{record.levelname[:1]} {stamp} {record.module}:{record.lineno}] "
                f"{record.getMessage()}")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(verbosity=0, quiet=False, stream=None):
    """caproto loggers to stderr: INFO by default, WARNING with -q, DEBUG for
    the server (caproto.ctx, caproto.ioc) with -v and for everything with -vv/-vvv."""
    logger = logging.getLogger("caproto")
    if not any(getattr(handler, _HANDLER_FLAG, False) for handler in logger.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(_Formatter())
        setattr(handler, _HANDLER_FLAG, True)
        logger.addHandler(handler)
    if quiet:
        logger.setLevel(logging.WARNING)
    elif verbosity >= 2:
        logger.setLevel(logging.DEBUG)
    else:
        logger.setLevel(logging.INFO)
        for name in ("caproto.ctx", "caproto.ioc"):
            logging.getLogger(name).setLevel(logging.DEBUG if verbosity else logging.NOTSET)


def _macro_pair(text):
    """``KEY=VALUE`` (several may be joined with commas)."""
    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"--macro wants KEY=VALUE, not {item!r}")
        pairs[key.strip()] = value
    return pairs


def template_arg_parser(*, desc, default_prefix, argv=None, macros=None,
                        supported_async_libs=None):
    """An ArgumentParser with the standard IOC options, and ``split_args(args)
    -> (ioc_options, run_options)`` to apply to what it parsed."""
    macros = dict(macros or {})
    libraries = tuple(supported_async_libs or ASYNC_LIBRARIES)
    for library in libraries:
        if library not in ASYNC_LIBRARIES:
            raise CaprotoValueError(f"unknown async library {library!r}; "
                                    f"choose from {ASYNC_LIBRARIES}")
    parser = argparse.ArgumentParser(
        description=desc, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--prefix", type=str, default=default_prefix,
                        help="PV name prefix")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="log warnings and errors only")
    verbosity.add_argument("-v", "--verbose", action="count", default=0,
                           help="more logging (-v: server debug, -vvv: everything)")
    parser.add_argument("--list-pvs", action="store_true",
                        help="log the PV names at start-up")
    parser.add_argument("--async-lib", default=libraries[0], choices=libraries,
                        help="the async library to serve with")
    parser.add_argument("--interfaces", nargs="+", default=None,
                        help="interfaces to listen on (default: "
                             "EPICS_CAS_INTF_ADDR_LIST, else all)")
    parser.add_argument("--macro", action="append", type=_macro_pair, default=[],
                        metavar="KEY=VALUE", help="set a PV-name macro (repeatable)")
    parser.add_argument("--acf", default=None, metavar="FILE",
                        help="access security file (epics-base ACF format), "
                             "reloaded when it changes")
    for name, default in macros.items():
        parser.add_argument(f"--{name}", type=str, default=default,
                            help="macro substitution" + (
                                ", required" if default is None else ""),
                            required=default is None)

    def split_args(args):
        configure_logging(args.verbose, args.quiet)
        values = {name: getattr(args, name) for name in macros}
        for pairs in args.macro:
            values.update(pairs)
        ioc_options = {"prefix": args.prefix, "macros": values}
        run_options = {"module_name": f"caproto.{args.async_lib}.server",
                       "log_pv_names": args.list_pvs,
                       "interfaces": args.interfaces}
        if args.acf is not None:
            run_options["acf"] = args.acf
        return ioc_options, run_options

    return parser, split_args


def ioc_arg_parser(*, desc, default_prefix, argv=None, macros=None,
                   supported_async_libs=None):
    """Parse `argv` (default sys.argv) into ``(ioc_options, run_options)``."""
    parser, split_args = template_arg_parser(
        desc=desc, default_prefix=default_prefix, macros=macros,
        supported_async_libs=supported_async_libs)
    return split_args(parser.parse_args(argv))


def run(pvdb, *, module_name="caproto.asyncio.server", interfaces=None,
        log_pv_names=False, startup_hook=None, acf=None):
    """Serve `pvdb` with the layer in `module_name` until interrupted.

    Autosaved PVs are restored first; `acf` (a file) turns access security on.
    """
    from .autosave import restore_before_serving
    restore_before_serving(pvdb)
    if acf is not None:
        from .access import AccessSecurity
        security = AccessSecurity.from_file(acf).apply_to(pvdb)
        startup_hook = _with_hook(startup_hook, security.watch())
    module = importlib.import_module(module_name)
    return module.run(pvdb, interfaces=interfaces, log_pv_names=log_pv_names,
                      startup_hook=startup_hook)


def _with_hook(first, second):
    """One startup hook running `first` (may be None) and `second` together."""
    if first is None:
        return second

    async def both(async_lib):
        from .pvproperty import run_concurrently
        await run_concurrently(async_lib, [first(async_lib), second(async_lib)])
    return both
