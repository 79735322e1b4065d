"""Throughput of the CA wire-format core (a benchmark, not a test).

Run: python tests/benchmarks/bench_core.py
Reports messages/s for a DOUBLE scalar ReadNotifyResponse and MB/s for a
1,000,000-element DOUBLE array, next to a plain bytes copy of the same size
measured in the same run, and a copy into a freshly allocated bytearray (what
a receive path that keeps the payload in its own buffer must pay once).
"""
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from caproto._buffer import ReceiveBuffer, payload_limit  # noqa: E402
from caproto._commands import ReadNotifyResponse, read_from_bytestream  # noqa: E402
from caproto._constants import SERVER  # noqa: E402


def best_of(function, repeat=5):
    """Fastest of `repeat` runs, in seconds (the least disturbed run)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_scalar(count=20000):
    def run():
        for ioid in range(count):
            wire = bytes(ReadNotifyResponse(3.14, None, 6, 1, 1, ioid))
            _rest, command, _needed = read_from_bytestream(wire, SERVER)
            assert command.data[0] == 3.14
    return count / best_of(run)


def bench_array(n=1_000_000, chunk=65536):
    try:
        import numpy as np
        values = np.arange(n, dtype=">f8")
    except ImportError:
        import array
        values = array.array("d", range(n))
    nbytes = 8 * n
    source = bytearray(nbytes)
    copy_s = best_of(lambda: bytes(source))

    def copy_into_fresh_bytearray():
        target = bytearray(nbytes)
        target[:] = source
    fresh_s = best_of(copy_into_fresh_bytearray)

    def encode():
        return b"".join(ReadNotifyResponse(values, None, 6, n, 1, 1).buffers)
    wire = encode()
    encode_s = best_of(encode)

    def decode_whole():
        _rest, command, _needed = read_from_bytestream(wire, SERVER)
        assert len(command.data) == n
    decode_whole_s = best_of(decode_whole)

    view = memoryview(wire)

    def decode_chunked():
        # as a circuit does: parse after every recv()
        buffer = ReceiveBuffer(SERVER, max_payload_size=payload_limit(nbytes))
        commands = []
        for offset in range(0, len(view), chunk):
            buffer.feed(view[offset:offset + chunk])
            commands.extend(buffer.drain())
        assert len(commands[0].data) == n
    decode_chunked_s = best_of(decode_chunked)

    mb = nbytes / 1e6
    rates = {
        "bytes copy (reference)": mb / copy_s,
        "copy into new bytearray (reference)": mb / fresh_s,
        "encode (buffers + join)": mb / encode_s,
        f"decode, {chunk // 1024} KiB chunks (ReceiveBuffer)": mb / decode_chunked_s,
    }
    return rates, decode_whole_s


def main():
    print(f"python {platform.python_version()} on {platform.machine()} "
          f"({platform.processor() or platform.platform()})")
    print(f"DOUBLE scalar ReadNotifyResponse encode+decode: "
          f"{bench_scalar():,.0f} messages/s")
    print("1,000,000-element DOUBLE ReadNotifyResponse:")
    rates, decode_whole_s = bench_array()
    for label, rate in rates.items():
        print(f"  {label:45s} {rate:10,.0f} MB/s")
    # A payload already in one bytes object is viewed, not copied, so this
    # time does not grow with the array; an MB/s figure would mislead.
    print(f"  {'decode, whole bytes (read_from_bytestream)':45s} "
          f"{decode_whole_s * 1e6:10,.1f} us/message (zero-copy view)")


if __name__ == "__main__":
    main()
