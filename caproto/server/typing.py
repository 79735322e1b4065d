"""The async-library object handed to IOC hooks, so IOC code runs on any layer.

Invariants:
- User hooks receive an ``AsyncLibraryLayer`` instance and use only what is
  declared here (``name``, ``library``, ``sleep``, ``Event``,
  ``ThreadsafeQueue``, ``run_in_thread``); each layer (asyncio, curio, trio)
  provides one subclass and nothing else user-visible.
- ``ThreadsafeQueue`` is the bridge between plain threads and the event
  loop: ``put``/``get`` work from any thread, ``async_put``/``async_get``
  from tasks on the loop.
- ``Wakeup`` is the one primitive the server core needs from a layer: a
  level-triggered flag set by any task (``await set()``; async because
  curio's events are) and awaited (and cleared) by exactly one task.
"""
import abc

__all__ = ("AsyncLibraryLayer", "ThreadsafeQueueBase", "Wakeup")


class AsyncLibraryLayer(abc.ABC):
    """What an IOC hook may use of the async library running the server.

    ``name``: 'asyncio', 'curio' or 'trio'; ``library``: that module (for
    code that needs more, e.g. ``async_lib.library.sleep``).
    """

    name = None
    library = None
    ThreadsafeQueue = None
    Event = None

    @staticmethod
    @abc.abstractmethod
    async def sleep(seconds):
        """Sleep without blocking the server."""

    @staticmethod
    @abc.abstractmethod
    async def run_in_thread(func, *args):
        """Run a blocking `func(*args)` in a worker thread and await its result."""

    def __repr__(self):
        return f"<AsyncLibraryLayer {self.name}>"


class ThreadsafeQueueBase(abc.ABC):
    """A FIFO usable from threads (``put``/``get``) and tasks (``async_*``)."""

    @abc.abstractmethod
    def put(self, item):
        """Add `item`; callable from any thread, never blocks."""

    @abc.abstractmethod
    def get(self, timeout=None):
        """Remove and return an item, blocking the calling *thread*."""

    @abc.abstractmethod
    async def async_put(self, item):
        """Add `item` from a task on the server's loop."""

    @abc.abstractmethod
    async def async_get(self):
        """Remove and return an item from a task on the server's loop."""


class Wakeup(abc.ABC):
    """Set by tasks on the loop; one task waits and clears it."""

    @abc.abstractmethod
    async def set(self):
        """Mark work pending; cheap, idempotent, never suspends for long."""

    @abc.abstractmethod
    async def wait(self):
        """Return once set (immediately if already set), leaving it cleared."""
