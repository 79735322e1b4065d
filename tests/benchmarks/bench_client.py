"""Threaded client vs pyepics (libca) on the same softIoc, same run.

Run: python tests/benchmarks/bench_client.py [--quick]
(a benchmark, not a test).  Starts one epics-base softIoc on loopback
serving 10,000 scalars, a 1,000,000-element DOUBLE waveform and 5,000
self-incrementing calc records, then measures for caproto.threading.client and for pyepics:

- reads/s: blocking reads of one DOUBLE scalar, one after another;
- monitor events/s from 5,000 calc records each processing 10 times a
  second (50,000 updates/s), with a second thread reading a scalar the
  whole time (reads answered and the slowest read are reported: the
  client must not wedge);
- seconds to connect 10,000 PVs (a fresh Context / fresh libca channels
  each time; best of 3 rounds, the two clients interleaved);
- MB/s reading the 1,000,000-element waveform (8 MB);
and checks that an 8 MB array write through our client succeeds.
"""
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tests.conftest  # noqa: E402,F401  (loopback env, fresh ports)

os.environ["EPICS_CA_MAX_ARRAY_BYTES"] = str(10 ** 8)

import numpy as np  # noqa: E402

import epics  # noqa: E402
from caproto.threading.client import Context  # noqa: E402
from tests.peers import SoftIoc  # noqa: E402

QUICK = "--quick" in sys.argv
NCONNECT = 2000 if QUICK else 10000
WAVE = 1_000_000
DURATION = 1.0 if QUICK else 3.0

NFLOOD = 1000 if QUICK else 5000        # calc records, 10 updates/s each
FLOOD_NAMES = ["B:f%04d" % i for i in range(NFLOOD)]


def database():
    lines = ['record(ao, "B:x%03d") { field(VAL, "%d") }' % (i, i)
             for i in range(100)]
    lines += ['record(ao, "C:%05d") { }' % i for i in range(NCONNECT)]
    lines.append('record(waveform, "B:wave") { field(FTVL, "DOUBLE") '
                 'field(NELM, "%d") }' % WAVE)
    # The flood runs only while B:gate is 1 (SDIS disables scanning), so it
    # does not load the softIoc during the other measurements.
    lines.append('record(bo, "B:gate") { field(VAL, "0") }')
    lines += ['record(calc, "%s") { field(SCAN, ".1 second") '
              'field(CALC, "A+1") field(INPA, "%s") field(SDIS, "B:gate") '
              'field(DISV, "0") }' % (name, name) for name in FLOOD_NAMES]
    return "\n".join(lines) + "\n"


def rate(function, duration=DURATION):
    """Calls of `function` per second over `duration` seconds."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration:
        for _ in range(50):
            function()
        count += 50
    return count / (time.perf_counter() - start)


def best_time(function, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


class Ours:
    name = "caproto.threading"

    def __init__(self):
        self.context = Context(timeout=30)
        self.scalar, self.wave = self.context.get_pvs("B:x001", "B:wave")
        for pv in (self.scalar, self.wave):
            pv.wait_for_connection()

    def read_scalar(self):
        return self.scalar.read().data[0]

    def read_wave(self):
        data = self.wave.read().data
        assert len(data) == WAVE
        return data

    def subscribe(self, counter):
        pvs = self.context.get_pvs(*FLOOD_NAMES)
        subs = []
        for pv in pvs:
            pv.wait_for_connection()
            subs.append(pv.subscribe())
            subs[-1].add_callback(lambda sub, response: counter.append(None))

        def clear():
            for sub in subs:
                sub.clear()
        return clear

    def connect_many(self, names):
        context = Context(timeout=60)
        pvs = context.get_pvs(*names)
        for pv in pvs:
            pv.wait_for_connection()
        context.disconnect()

    def reader_thread_setup(self):
        pass

    def close(self):
        self.context.disconnect()


class Libca:
    name = "pyepics (libca)"

    def __init__(self):
        self.scalar = epics.PV("B:x001", auto_monitor=False)
        self.wave = epics.PV("B:wave", auto_monitor=False)
        for pv in (self.scalar, self.wave):
            assert pv.wait_for_connection(30)

    def read_scalar(self):
        return self.scalar.get(use_monitor=False)

    def read_wave(self):
        data = self.wave.get(use_monitor=False, timeout=30)
        assert len(data) == WAVE
        return data

    def subscribe(self, counter):
        def callback(**kw):
            counter.append(None)
        chids = [epics.ca.create_channel(n, connect=False, auto_cb=False)
                 for n in FLOOD_NAMES]
        keep = []
        for chid in chids:
            assert epics.ca.connect_channel(chid, timeout=30)
            keep.append(epics.ca.create_subscription(chid, callback=callback))

        def clear():
            for item in keep:
                epics.ca.clear_subscription(item[2])
        return clear

    def connect_many(self, names):
        chids = [epics.ca.create_channel(n, connect=False, auto_cb=False)
                 for n in names]
        for chid in chids:
            assert epics.ca.connect_channel(chid, timeout=60)
        for chid in chids:
            epics.ca.clear_channel(chid)

    def reader_thread_setup(self):
        epics.ca.use_initial_context()

    def close(self):
        pass


def flood(client, duration=DURATION):
    """(events/s, reads answered, slowest read in s) under an event flood."""
    events, stop, latencies = [], threading.Event(), []

    def reader():
        client.reader_thread_setup()
        while not stop.is_set():
            start = time.perf_counter()
            client.read_scalar()
            latencies.append(time.perf_counter() - start)
            time.sleep(0.001)
    unsubscribe = client.subscribe(events)
    epics.caput("B:gate", 1, wait=True)
    time.sleep(1.0)
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    before, start = len(events), time.perf_counter()
    time.sleep(duration)
    received, elapsed = len(events) - before, time.perf_counter() - start
    stop.set()
    thread.join(30)
    epics.caput("B:gate", 0, wait=True)
    unsubscribe()
    return (received / elapsed, len(latencies),
            max(latencies) if latencies else float("nan"))


def progress(text):
    print(f"... {text}", file=sys.stderr, flush=True)


def main():
    where = Path(tempfile.mkdtemp(prefix="bench-client-"))
    (where / "bench.db").write_text(database())
    ioc = SoftIoc(where / "bench.db", int(os.environ["EPICS_CA_SERVER_PORT"]),
                  where / "ioc.log")
    results = {}
    try:
        progress("connecting")
        ours, libca = Ours(), Libca()
        progress("8 MB write")
        payload = np.arange(WAVE, dtype=float)
        ours.wave.write(payload, wait=True, timeout=60)      # 8 MB write
        assert np.array_equal(libca.read_wave(), payload), "8 MB write failed"
        results["8 MB write (ours)"] = ("ok", "ok")
        progress("reads")
        for client in (ours, libca):
            row = results.setdefault("reads/s", [None, None])
            row[client is libca] = rate(client.read_scalar)
        names = ["C:%05d" % i for i in range(NCONNECT)]
        progress("connecting many")
        row = results.setdefault(f"connect {NCONNECT} PVs (s)", [None, None])
        for _round in range(3):              # interleaved; best of 3 each
            for client in (ours, libca):
                seconds = best_time(lambda: client.connect_many(names), 1)
                row[client is libca] = min(seconds, row[client is libca]
                                           or seconds)
        progress("big reads")
        for client in (ours, libca):
            seconds = best_time(client.read_wave)
            row = results.setdefault("1M-double read MB/s", [None, None])
            row[client is libca] = 8 * WAVE / 1e6 / seconds
        for client in (ours, libca):
            progress(f"flood {client.name}")
            got = flood(client)
            for label, value in zip(("flood: monitor events/s",
                                     "flood: reads answered meanwhile",
                                     "flood: slowest read (s)"), got):
                results.setdefault(label, [None, None])[client is libca] = value
        ours.close()
        libca.close()
    finally:
        ioc.stop()
    print(f"{platform.machine()} {platform.processor() or ''} "
          f"CPython {platform.python_version()}, pyepics {epics.__version__}")
    print(f"{'measurement':<34} {'ours':>12} {'libca':>12} {'ratio':>7}")
    for label, (mine, theirs) in results.items():
        if isinstance(mine, str):
            print(f"{label:<34} {mine:>12} {'':>12}")
            continue
        # For times, a ratio above 1 means we are faster too.
        ratio = theirs / mine if "(s)" in label else mine / theirs
        print(f"{label:<34} {mine:>12.4g} {theirs:>12.4g} {ratio:>7.2f}")


if __name__ == "__main__":
    main()
