"""A recording Channel Access proxy for loopback: test tooling, not caproto.

Clients search the proxy's UDP port and connect to its TCP port; the proxy
forwards everything to a real server on 127.0.0.1 and writes every chunk of
bytes it passes on, in order, to a list of records (see tests/data/README.md).
So that the client's TCP circuit also comes through the proxy, the port in
each SearchResponse is rewritten to the proxy's own TCP port; that needs just
the 16-byte CA header, parsed here on purpose with `struct` so that the
fixtures never depend on the code they are meant to test.

Invariants: it binds and sends only on 127.0.0.1; every thread polls a stop
event with a short timeout and is joined (bounded) by `stop()`.

Use from Python (a context manager) or as a script:
    python -m tests.recording_proxy --upstream-port 5064 --port 6064 \
        --out session.jsonl --duration 60
"""
import argparse
import gzip
import json
import selectors
import socket
import struct
import threading
import time

LOOPBACK = "127.0.0.1"
HEADER = struct.Struct(">HHHHII")
SEARCH_RESPONSE = 6
POLL_SECONDS = 0.05


def _addr(address):
    return f"{address[0]}:{address[1]}"


def rewrite_search_responses(datagram, tcp_port):
    """Return `datagram` with the port of every SearchResponse set to tcp_port.

    The server address in the response (parameter1) is left alone unless it
    names a non-loopback host, in which case it is pointed at 127.0.0.1.
    """
    out = bytearray(datagram)
    offset = 0
    while offset + HEADER.size <= len(out):
        command, size, dtype, count, p1, p2 = HEADER.unpack_from(out, offset)
        if command == SEARCH_RESPONSE:
            loopback = struct.unpack(">I", socket.inet_aton(LOOPBACK))[0]
            if p1 != 0xFFFFFFFF and (p1 >> 24) != 127:
                p1 = loopback
            HEADER.pack_into(out, offset, command, size, tcp_port, count, p1, p2)
        offset += HEADER.size + size
    return bytes(out)


class RecordingProxy:
    """Forward CA (TCP + UDP search + optional beacons) to 127.0.0.1:upstream_port.

    `records` is the list of dicts written so far; `save(path)` writes them as
    JSON lines (gzip when the path ends in .gz).
    """

    def __init__(self, upstream_port, port=0, beacon_port=None):
        self.upstream = (LOOPBACK, int(upstream_port))
        self.records = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._tcp_ids = 0
        self._active = 0                 # TCP connections still being pumped
        self._threads = []
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((LOOPBACK, int(port)))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((LOOPBACK, self.port))
        self.beacon = None
        if beacon_port is not None:
            self.beacon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.beacon.bind((LOOPBACK, int(beacon_port)))
            self.beacon_port = self.beacon.getsockname()[1]

    # -- recording ---------------------------------------------------------
    def _record(self, transport, stream, sender, src, dst, data, original=None):
        with self._lock:
            rec = {"seq": len(self.records), "t": round(time.monotonic() - self._t0, 4),
                   "transport": transport, "stream": stream, "sender": sender,
                   "src": _addr(src), "dst": _addr(dst), "hex": bytes(data).hex()}
            if original is not None and original != data:
                rec["original_hex"] = bytes(original).hex()
            self.records.append(rec)

    def save(self, path):
        path = str(path)
        opener = gzip.open if path.endswith(".gz") else open
        with self._lock, opener(path, "wt", encoding="ascii") as f:
            for rec in self.records:
                f.write(json.dumps(rec, sort_keys=True) + "\n")

    # -- lifetime ----------------------------------------------------------
    def start(self):
        self.tcp.listen(16)
        self.tcp.settimeout(POLL_SECONDS)
        for target in (self._accept_loop, self._udp_loop):
            self._spawn(target)
        if self.beacon is not None:
            self._spawn(self._beacon_loop)
        return self

    def _spawn(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout=5.0):
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        for sock in (self.tcp, self.udp, self.beacon):
            if sock is not None:
                sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- TCP ---------------------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                client, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self._tcp_ids += 1
                self._active += 1
                stream = f"tcp-{self._tcp_ids}"
            self._spawn(self._pump, client, server, stream)

    def _pump(self, client, server, stream):
        """Copy bytes both ways until both sides have closed (or stop())."""
        peer = {client: server, server: client}
        sender = {client: "client", server: "server"}
        open_ = {client, server}
        # Addresses as the client sees them: it talks to the proxy's port.
        client_end, proxy_end = client.getpeername(), client.getsockname()
        ends = {"client": (client_end, proxy_end), "server": (proxy_end, client_end)}
        sel = selectors.DefaultSelector()
        for sock in open_:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        try:
            while open_ and not self._stop.is_set():
                for key, _ in sel.select(POLL_SECONDS):
                    sock = key.fileobj
                    try:
                        data = sock.recv(1 << 16)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(sock)
                        open_.discard(sock)
                        try:
                            peer[sock].shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    src, dst = ends[sender[sock]]
                    self._record("tcp", stream, sender[sock], src, dst, data)
                    self._send_all(peer[sock], data)
        finally:
            sel.close()
            client.close()
            server.close()
            with self._lock:
                self._active -= 1

    def wait_idle(self, timeout=10.0):
        """Wait (bounded) until every proxied TCP connection has closed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._active == 0:
                    return True
            time.sleep(POLL_SECONDS)
        return False

    def mark(self):
        """The number of records so far: slice `records[mark:]` for one session."""
        with self._lock:
            return len(self.records)

    def _send_all(self, sock, data):
        view = memoryview(data)
        deadline = time.monotonic() + 10
        while view and time.monotonic() < deadline:
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                return

    # -- UDP ---------------------------------------------------------------
    def _udp_loop(self):
        """Searches in from clients, answers back; one upstream socket per client."""
        sel = selectors.DefaultSelector()
        sel.register(self.udp, selectors.EVENT_READ, None)
        upstream_for = {}
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(POLL_SECONDS):
                    sock, client = key.fileobj, key.data
                    try:
                        data, src = sock.recvfrom(1 << 16)
                    except OSError:
                        continue
                    if client is None:          # a client -> server datagram
                        up = upstream_for.get(src)
                        if up is None:
                            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                            up.bind((LOOPBACK, 0))
                            upstream_for[src] = up
                            sel.register(up, selectors.EVENT_READ, src)
                        self._record("udp", "udp", "client", src, self.udp.getsockname(), data)
                        up.sendto(data, self.upstream)
                    else:                       # a server reply for `client`
                        out = rewrite_search_responses(data, self.port)
                        self._record("udp", "udp", "server", self.udp.getsockname(),
                                     client, out, original=data)
                        self.udp.sendto(out, client)
        finally:
            for up in upstream_for.values():
                up.close()
            sel.close()

    def _beacon_loop(self):
        """Beacons (server -> repeater port) are recorded, not forwarded."""
        self.beacon.settimeout(POLL_SECONDS)
        while not self._stop.is_set():
            try:
                data, src = self.beacon.recvfrom(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                return
            self._record("udp", "beacon", "server", src, self.beacon.getsockname(), data)


def load_records(path):
    """Read a capture written by `save()`; each record gains `data` (bytes)."""
    path = str(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="ascii") as f:
        records = [json.loads(line) for line in f if line.strip()]
    for rec in records:
        rec["data"] = bytes.fromhex(rec["hex"])
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--beacon-port", type=int, default=None)
    parser.add_argument("--out", required=True, help="JSON lines (.gz to compress)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds to run before saving and exiting")
    args = parser.parse_args(argv)
    with RecordingProxy(args.upstream_port, args.port, args.beacon_port) as proxy:
        print(f"proxy on {LOOPBACK}:{proxy.port} -> {_addr(proxy.upstream)}", flush=True)
        try:
            time.sleep(args.duration)
        except KeyboardInterrupt:
            pass
    proxy.save(args.out)


if __name__ == "__main__":
    main()
