"""Regenerate tests/data/: real libca sessions against a real softIoc, recorded.

    python -m tests.capture_sessions            # rewrites tests/data/*

One softIoc (epicscorelibs) serves the records in RECORDS; one RecordingProxy
sits in front of it; each session is a pyepics (C libca) client run in its
own subprocess (`--client NAME`) whose only address is the proxy.  The client
prints what it did and what libca handed back as JSON; that becomes the
session's entry in manifest.json, and the proxy's records for the session's
time span become `<session>.jsonl` (format: tests/data/README.md).

Everything binds to 127.0.0.1; every wait is bounded; the processes started
here are killed by their own PID.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
MAX_ARRAY_BYTES = 2_000_000
BIG_COUNT = 100_000
SESSIONS = ("a_caget", "b_caput", "c_camonitor", "d_large_waveform", "e_dbr_matrix")

# name -> (record type, fields).  The tests build ChannelData from these too.
RECORDS = {
    "TST:ai": ("ai", {"VAL": "3.14159", "EGU": "mm", "PREC": "3", "HOPR": "10",
                      "LOPR": "-10", "HIHI": "9", "HIGH": "8", "LOW": "-8", "LOLO": "-9",
                      "HHSV": "MAJOR", "HSV": "MINOR", "LSV": "MINOR", "LLSV": "MAJOR",
                      "PINI": "YES"}),
    "TST:longin": ("longin", {"VAL": "42", "EGU": "cts", "HOPR": "100", "LOPR": "0",
                              "HIHI": "90", "HIGH": "40", "LOW": "10", "LOLO": "5",
                              "HHSV": "MAJOR", "HSV": "MINOR", "LSV": "MINOR",
                              "LLSV": "MAJOR", "PINI": "YES"}),
    "TST:mbbi": ("mbbi", {"ZRST": "Zero", "ONST": "One", "TWST": "Two", "THST": "Three",
                          "VAL": "2", "PINI": "YES"}),
    "TST:bo": ("bo", {"ZNAM": "Off", "ONAM": "On", "VAL": "1", "PINI": "YES"}),
    "TST:stringin": ("stringin", {"VAL": "hello world", "PINI": "YES"}),
    "TST:wf_double": ("waveform", {"FTVL": "DOUBLE", "NELM": "1000", "EGU": "V",
                                   "PREC": "4", "HOPR": "1000", "LOPR": "0"}),
    "TST:wf_char": ("waveform", {"FTVL": "CHAR", "NELM": "64", "EGU": "chr"}),
    "TST:wf_short": ("waveform", {"FTVL": "SHORT", "NELM": "1", "EGU": "A",
                                  "HOPR": "500", "LOPR": "-500"}),
    "TST:wf_float": ("waveform", {"FTVL": "FLOAT", "NELM": "1", "EGU": "degC",
                                  "PREC": "2", "HOPR": "100", "LOPR": "-100"}),
    "TST:wf_big": ("waveform", {"FTVL": "DOUBLE", "NELM": str(BIG_COUNT)}),
    "TST:ao": ("ao", {"VAL": "0", "EGU": "mA", "PREC": "2", "DRVH": "50", "DRVL": "-50",
                      "HOPR": "60", "LOPR": "-60", "PINI": "YES"}),
    "TST:longout": ("longout", {"VAL": "0", "PINI": "YES"}),
    "TST:mbbo": ("mbbo", {"ZRST": "Zero", "ONST": "One", "TWST": "Two", "VAL": "0",
                          "PINI": "YES"}),
    "TST:stringout": ("stringout", {"VAL": "initial", "PINI": "YES"}),
    "TST:wf_put": ("waveform", {"FTVL": "LONG", "NELM": "10"}),
    "TST:counter": ("calc", {"SCAN": ".1 second", "INPA": "TST:counter NPP",
                             "CALC": "(A+1)%100000"}),
}

# Values the (unrecorded) setup client writes before any session runs.
SETUP_VALUES = {
    "TST:wf_double": [round(i * 0.5 - 100.0, 1) for i in range(1000)],
    "TST:wf_char": list(b"hello waveform\x00"),
    "TST:wf_short": [-1234],
    "TST:wf_float": [21.5],
}
# The one native record per native type, for the DBR matrix session.
NATIVE_RECORDS = {"STRING": "TST:stringin", "SHORT": "TST:wf_short",
                  "FLOAT": "TST:wf_float", "ENUM": "TST:mbbi", "CHAR": "TST:wf_char",
                  "LONG": "TST:longin", "DOUBLE": "TST:ai"}
FORM_OFFSETS = {"plain": 0, "STS": 7, "TIME": 14, "GR": 21, "CTRL": 28}


def db_text():
    lines = []
    for name, (rtype, fields) in RECORDS.items():
        lines.append(f'record({rtype}, "{name}") {{')
        lines += [f'    field({key}, "{value}")' for key, value in fields.items()]
        lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Client side: runs in a subprocess, talks only to EPICS_CA_ADDR_LIST.
# --------------------------------------------------------------------------
def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _connect(names):
    from epics import ca
    chids = {name: ca.create_channel(name, connect=False, auto_cb=False) for name in names}
    for name, chid in chids.items():
        if not ca.connect_channel(chid, timeout=10):
            raise RuntimeError(f"{name} did not connect")
    return chids


def _get(chid, ftype, **extra):
    from epics import ca
    result = ca.get_with_metadata(chid, ftype=ftype, timeout=10, **extra)
    if result is None:
        raise RuntimeError(f"read of {ca.name(chid)} as type {ftype} timed out")
    return {key: _jsonable(value) for key, value in result.items()}


def client_a_caget():
    from epics import ca
    names = ["TST:ai", "TST:longin", "TST:mbbi", "TST:stringin", "TST:wf_double",
             "TST:wf_char", "TST:bo"]
    chids = _connect(names)
    reads = []
    for name in names:
        native = ca.field_type(chids[name])
        for form in ("plain", "TIME", "CTRL"):
            ftype = native + FORM_OFFSETS[form]
            reads.append({"pv": name, "form": form, "ftype": ftype,
                          "native_count": ca.element_count(chids[name]),
                          **_get(chids[name], ftype)})
    return {"pvs": names, "reads": reads}


PUTS = [  # (pv, value, wait, ftype name or None for native)
    ("TST:ao", 12.5, True, None),
    ("TST:ao", 7.25, False, None),
    ("TST:longout", 1234, True, None),
    ("TST:mbbo", "Two", True, "STRING"),       # enum by string: the IOC converts
    ("TST:mbbo", 1, True, None),
    ("TST:stringout", "put string", True, None),
    ("TST:wf_put", [10, 20, 30, -40, 50, 60], True, None),
    ("TST:bo", 0, True, None),
]


def client_b_caput():
    from epics import ca, dbr
    names = sorted({pv for pv, *_ in PUTS})
    chids = _connect(names)
    puts = []
    for pv, value, wait, ftype_name in PUTS:
        ftype = getattr(dbr, ftype_name) if ftype_name else ca.field_type(chids[pv])
        status = ca.put(chids[pv], value, wait=wait, ftype=ftype, timeout=10)
        if not wait:
            ca.poll(0.2)
        readback = _get(chids[pv], ca.field_type(chids[pv]))["value"]
        puts.append({"pv": pv, "value": value, "wait": wait, "ftype": ftype,
                     "status": status, "readback": readback})
    return {"pvs": names, "puts": puts}


def client_putter():
    """The second client of the monitor session: three puts to TST:ao."""
    from epics import ca
    chid = _connect(["TST:ao"])["TST:ao"]
    values = [1.5, 2.5, 3.5]
    for value in values:
        ca.put(chid, value, wait=True, timeout=10)
    return {"pv": "TST:ao", "values": values}


def _monitor(chid, n_updates, use_time=False, use_ctrl=False, during=None):
    from epics import ca
    values = []

    def callback(value=None, **kw):
        values.append(_jsonable(value))

    event_id = ca.create_subscription(chid, use_time=use_time, use_ctrl=use_ctrl,
                                      callback=callback)[2]
    deadline = time.monotonic() + 15
    while not values and time.monotonic() < deadline:
        ca.poll(0.05)
    extra = during() if during else None
    while len(values) < n_updates and time.monotonic() < deadline:
        ca.poll(0.05)
    got = list(values)
    ca.clear_subscription(event_id)
    ca.poll(0.3)            # let the EventCancelResponse arrive
    return got, extra


def client_c_camonitor():
    from epics import dbr
    chids = _connect(["TST:counter", "TST:ao"])
    counter_values, _ = _monitor(chids["TST:counter"], 6, use_time=True)

    def run_putter():
        out = subprocess.run([sys.executable, "-m", "tests.capture_sessions",
                              "--client", "putter"], capture_output=True, timeout=60,
                             check=True, cwd=Path(__file__).parent.parent)
        return json.loads(out.stdout.decode().strip().splitlines()[-1])

    ao_values, putter = _monitor(chids["TST:ao"], 4, use_ctrl=True, during=run_putter)
    return {"monitors": [
        {"pv": "TST:counter", "ftype": dbr.TIME_DOUBLE, "values": counter_values},
        {"pv": "TST:ao", "ftype": dbr.CTRL_DOUBLE, "values": ao_values}],
        "putter": putter}


def big_values():
    return [i * 0.25 for i in range(BIG_COUNT)]


def client_d_large_waveform():
    from epics import ca
    chid = _connect(["TST:wf_big"])["TST:wf_big"]
    values = big_values()
    ca.put(chid, values, wait=True, timeout=20)
    got = ca.get(chid, timeout=20)
    return {"pv": "TST:wf_big", "count": int(len(got)), "first": got[:3].tolist(),
            "last": got[-3:].tolist(), "sum": float(got.sum()),
            "matches_put": bool((got == values).all())}


def client_e_dbr_matrix():
    from epics import ca
    chids = _connect(NATIVE_RECORDS.values())
    reads = []
    for type_name, name in NATIVE_RECORDS.items():
        native = ca.field_type(chids[name])
        for form, offset in FORM_OFFSETS.items():
            read = {"pv": name, "native": type_name, "form": form, "ftype": native + offset}
            try:
                read["value"] = _jsonable(ca.get(chids[name], ftype=native + offset,
                                                 timeout=10))
            except ca.ChannelAccessGetFailure as exc:
                # pyepics cannot unpack STS/GR replies; the bytes are still on the wire.
                read["pyepics_error"] = str(exc)
            reads.append(read)
    return {"records": NATIVE_RECORDS, "reads": reads}


def client_setup():
    from epics import ca
    chids = _connect(SETUP_VALUES)
    for name, values in SETUP_VALUES.items():
        value = values[0] if len(values) == 1 else values    # NELM 1: a scalar
        ca.put(chids[name], value, wait=True, timeout=10)
    return {"ok": True}


CLIENTS = {name[len("client_"):]: func for name, func in globals().items()
           if name.startswith("client_")}


# --------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------
def run_client(name, address_port, timeout=90):
    """Run one client subprocess against 127.0.0.1:address_port; its JSON result.

    Output goes through files, not pipes: were libca ever to spawn a
    caRepeater it would inherit a pipe and keep it open forever.
    """
    env = dict(os.environ, EPICS_CA_AUTO_ADDR_LIST="NO",
               EPICS_CA_ADDR_LIST=f"127.0.0.1:{address_port}",
               EPICS_CA_MAX_ARRAY_BYTES=str(MAX_ARRAY_BYTES))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.capture_sessions", "--client", name],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout, env=env,
            cwd=Path(__file__).parent.parent)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"client {name} failed:\n{err.read().decode()}")
        return json.loads(out.read().decode().strip().splitlines()[-1])


def _save(records, path):
    import gzip
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="ascii") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True) + "\n")


def record_session(ioc_port, session):
    """Run one client session through a fresh proxy to a running softIoc.

    For tests that capture live: returns (records, client result); records
    carry `data` (bytes) like tests.recording_proxy.load_records gives.
    The softIoc must already hold SETUP_VALUES (run_client("setup", port)).
    """
    from tests.conftest import _free_port
    from tests.recording_proxy import RecordingProxy

    with RecordingProxy(ioc_port, port=_free_port()) as proxy:
        result = run_client(session, proxy.port)
        proxy.wait_idle()
    for rec in proxy.records:
        rec["data"] = bytes.fromhex(rec["hex"])
    return proxy.records, result


def capture(out_dir=DATA_DIR, sessions=SESSIONS):
    from tests.conftest import _free_port   # also pins this process to loopback
    from tests.peers import Repeater, SoftIoc
    from tests.recording_proxy import RecordingProxy

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "softioc.db").write_text(db_text())
    ioc_port, beacon_port = _free_port(), _free_port()
    manifest = {"format": 1, "max_array_bytes": MAX_ARRAY_BYTES, "sessions": {}}
    repeater = Repeater()
    proxy = RecordingProxy(ioc_port, port=_free_port(), beacon_port=beacon_port).start()
    saved_env = dict(os.environ)
    os.environ.update(EPICS_CA_MAX_ARRAY_BYTES=str(MAX_ARRAY_BYTES),
                      EPICS_CAS_BEACON_ADDR_LIST="127.0.0.1",
                      EPICS_CAS_BEACON_PORT=str(beacon_port))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ioc = SoftIoc(out_dir / "softioc.db", ioc_port, Path(tmp) / "ioc.log")
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
        try:
            run_client("setup", ioc_port)       # straight to the IOC: not recorded
            for session in sessions:
                start = proxy.mark()
                result = run_client(session, proxy.port)
                proxy.wait_idle()
                records = [r for r in proxy.records[start:proxy.mark()]
                           if r["stream"] != "beacon"]
                name = session + (".jsonl.gz" if session.startswith("d_") else ".jsonl")
                _save(records, out_dir / name)
                manifest["sessions"][session] = {"file": name, "client": result}
                print(f"{session}: {len(records)} records -> {name}")
        finally:
            ioc.stop()
            proxy.stop()
            repeater.stop()
    beacons = [r for r in proxy.records if r["stream"] == "beacon"][:5]
    _save(beacons, out_dir / "beacons.jsonl")
    manifest["sessions"]["beacons"] = {"file": "beacons.jsonl", "client": {}}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--client", choices=sorted(CLIENTS),
                        help="(internal) run one client session and print JSON")
    parser.add_argument("--out", default=str(DATA_DIR))
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(CLIENTS[args.client]()))
        sys.stdout.flush()
        return
    capture(args.out)


if __name__ == "__main__":
    main()
