# Invariants:
# - Values travel big-endian on the wire; a backend turns a big-endian buffer
#   into an array object and Python values into an array object, nothing else.
# - `backend` is one long-lived proxy: select_backend() swaps what it points
#   at, so `from caproto import backend` never goes stale.
# - numpy is optional and imported only inside the numpy backend.
"""Array backends: how numeric DBR values become Python objects.

Two backends exist:

* ``'numpy'`` (default when numpy imports): ``frombuffer`` returns a
  read-only big-endian view on the received bytes -- no copy at all.
* ``'array'``: ``frombuffer`` returns an ``array.array`` in *native* byte
  order, i.e. a byteswapped copy (``array.array`` cannot hold big-endian).

Native types are keyed by their integer ChannelType value (0..6, plus 35/36
for the PUT_ACK* shorts) so this module does not import ``_dbr``.
"""
import array
import sys

from ._errors import CaprotoKeyError, CaprotoValueError

__all__ = ("backend", "select_backend", "available_backends")

# native ChannelType value -> (struct code, numpy big-endian dtype, array typecode)
# STRING (0) is not numeric and has no entry.
VALUE_FORMATS = {
    1: ("h", ">i2", "h"),   # INT / SHORT
    2: ("f", ">f4", "f"),   # FLOAT
    3: ("H", ">u2", "H"),   # ENUM
    4: ("B", ">u1", "B"),   # CHAR (unsigned byte on the wire)
    5: ("i", ">i4", "i"),   # LONG
    6: ("d", ">f8", "d"),   # DOUBLE
    35: ("H", ">u2", "H"),  # PUT_ACKT
    36: ("H", ">u2", "H"),  # PUT_ACKS
}
assert array.array("i").itemsize == 4, "array typecode 'i' must be 32 bits"


def _formats(native_type):
    try:
        return VALUE_FORMATS[int(native_type)]
    except KeyError:
        raise CaprotoKeyError(
            f"no numeric array format for native type {native_type!r}") from None


class ArrayBackend:
    """Standard-library backend built on ``array.array`` (native byte order)."""

    name = "array"

    def frombuffer(self, native_type, buffer, count):
        code = _formats(native_type)[2]
        arr = array.array(code)
        arr.frombytes(memoryview(buffer)[:count * arr.itemsize])
        if sys.byteorder == "little":
            arr.byteswap()
        return arr

    def array(self, native_type, values):
        try:
            return array.array(_formats(native_type)[2], values)
        except (TypeError, OverflowError) as ex:
            raise CaprotoValueError(
                f"cannot store {values!r} as native type {native_type!r}: {ex}"
            ) from None

    def is_array(self, obj):
        return isinstance(obj, array.array)


class NumpyBackend:
    """numpy backend: big-endian views, zero-copy on decode."""

    name = "numpy"

    def __init__(self):
        import numpy   # noqa: F401  (fails early when numpy is missing)
        self.numpy = numpy

    def frombuffer(self, native_type, buffer, count):
        return self.numpy.frombuffer(buffer, dtype=_formats(native_type)[1],
                                     count=count)

    def array(self, native_type, values):
        try:
            return self.numpy.asarray(values, dtype=_formats(native_type)[1])
        except (TypeError, ValueError, OverflowError) as ex:
            raise CaprotoValueError(
                f"cannot store {values!r} as native type {native_type!r}: {ex}"
            ) from None

    def is_array(self, obj):
        return isinstance(obj, self.numpy.ndarray)


_FACTORIES = {"numpy": NumpyBackend, "array": ArrayBackend}


def available_backends():
    """Names of the backends that can be selected in this interpreter."""
    names = []
    for name, factory in _FACTORIES.items():
        try:
            factory()
        except ImportError:
            continue
        names.append(name)
    return names


class _ActiveBackend:
    """Proxy to the selected backend (``caproto.backend``).

    Selecting a backend copies its public attributes onto the proxy, so the
    codec's ``backend.frombuffer`` (several per message) is a plain
    attribute lookup; ``__getattr__`` only serves what was not copied."""

    _SHARED = ("name", "frombuffer", "array", "is_array", "numpy")

    def __init__(self):
        self._impl = None

    def _select(self, impl):
        for attr in self._SHARED:
            self.__dict__.pop(attr, None)
        self._impl = impl
        for attr in self._SHARED:
            if hasattr(impl, attr):
                setattr(self, attr, getattr(impl, attr))

    def __getattr__(self, attr):
        return getattr(self._impl, attr)

    def __repr__(self):
        return f"<caproto backend {self._impl.name!r}>"


backend = _ActiveBackend()


def select_backend(name):
    """Make `name` ('numpy' or 'array') the active backend; return it."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise CaprotoValueError(
            f"unknown backend {name!r}; choose one of {sorted(_FACTORIES)}") from None
    try:
        backend._select(factory())
    except ImportError as ex:
        raise CaprotoValueError(f"backend {name!r} is unavailable: {ex}") from None
    return backend


def _default_backend_name():
    try:
        import numpy  # noqa: F401
    except ImportError:
        return "array"
    return "numpy"


select_backend(_default_backend_name())
