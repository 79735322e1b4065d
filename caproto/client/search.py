"""Search scheduling and beacon watching for the client core, sans I/O.

Invariants:
- Every entry being searched for has exactly one live search id (cid);
  answers carrying any other id are stale and ignored.  A new id is issued
  each time an entry starts searching again, so a late answer from a
  previous round can never connect it to the wrong server.
- Retries of one name are spaced by an interval that starts at
  SEARCH_FIRST_RETRY and doubles up to EPICS_CA_MAX_SEARCH_PERIOD; it is
  reset only when the name starts searching afresh (added, or its server
  went away) or a beacon anomaly says a server (re)appeared.
- A name is searched for only in rounds (``due``): each round sends it
  once to every destination.  Its heap item is live only while its time
  equals ``entry.next_search``, so moving a search (``bring_forward``)
  never makes it go out twice.
- Nothing here touches sockets or clocks: times come in as ``now``.
"""
import heapq
import itertools

from .._commands import SearchRequest, VersionRequest
from .._constants import (DEFAULT_PROTOCOL_VERSION, MAX_ID, NO_REPLY,
                          SEARCH_MAX_DATAGRAM_BYTES)
from .effects import SEARCHING

__all__ = ("SearchScheduler", "BeaconWatcher", "SEARCH_FIRST_RETRY")

#: First retry after this long; each retry doubles it up to the max period.
SEARCH_FIRST_RETRY = 0.05
#: Searches due within this window of each other are packed together.
SEARCH_BATCH_WINDOW = 0.01
#: At most this many names per call of ``due`` (pacing: neither the
#: server's nor our UDP receive buffer should overflow).
SEARCH_NAMES_PER_ROUND = 2000


class SearchScheduler:
    """Which names to search for, when, and which answer belongs to whom."""

    def __init__(self, broadcaster, max_search_period):
        self.broadcaster = broadcaster
        self.max_search_period = max_search_period
        self.searching = {}           # live search cid -> entry
        self._heap = []               # (next_search, seq, entry, cid)
        self._seq = itertools.count()
        self._cids = itertools.count(1)
        self.backlog = False          # names were due but left for later

    def schedule(self, entry, now, reset):
        """(Re)start searching for `entry`; `reset` restarts the back-off."""
        self.stop(entry)
        entry.state = SEARCHING
        entry.search_cid = next(self._cids) % (MAX_ID + 1)
        if reset:
            entry.search_interval = 0.0
            entry.search_attempts = 0
        entry.next_search = now + entry.search_interval
        self.searching[entry.search_cid] = entry
        heapq.heappush(self._heap, (entry.next_search, next(self._seq), entry,
                                    entry.search_cid))

    def stop(self, entry):
        if entry.search_cid is not None:
            self.searching.pop(entry.search_cid, None)
            entry.search_cid = None

    def answered(self, cid):
        """The entry a search answer with `cid` is for (None if stale)."""
        entry = self.searching.get(cid)
        if entry is not None:
            self.stop(entry)
        return entry

    def reset_backoff(self, now):
        """Search again now for every name not found."""
        for entry in list(self.searching.values()):
            self.schedule(entry, now, reset=True)

    def bring_forward(self, now):
        """Make the next round of every name not found due now (a name
        server connected); ids and back-off intervals stay as they are."""
        for entry in self.searching.values():
            if entry.next_search > now:
                entry.next_search = now
                heapq.heappush(self._heap, (now, next(self._seq), entry,
                                            entry.search_cid))

    @staticmethod
    def _stale(item):
        when, _seq, entry, cid = item
        return (entry.search_cid != cid or entry.state is not SEARCHING
                or when != entry.next_search)

    def due(self, now):
        """SearchRequests due by `now`; their next retries are scheduled."""
        heap, requests = self._heap, []
        while heap and heap[0][0] <= now + SEARCH_BATCH_WINDOW \
                and len(requests) < SEARCH_NAMES_PER_ROUND:
            item = heapq.heappop(heap)
            if self._stale(item):
                continue
            entry, cid = item[2], item[3]
            requests.append(self.request(entry))
            entry.search_attempts += 1
            entry.search_interval = min(
                max(entry.search_interval * 2, SEARCH_FIRST_RETRY),
                self.max_search_period)
            entry.next_search = now + entry.search_interval
            heapq.heappush(heap, (entry.next_search, next(self._seq), entry,
                                  cid))
        self.backlog = bool(heap) and heap[0][0] <= now
        return requests

    @staticmethod
    def request(entry):
        """The entry's SearchRequest, built once per search cid."""
        request = entry.search_request
        if request is None or request.cid != entry.search_cid:
            request = entry.search_request = SearchRequest(
                entry.name, entry.search_cid, DEFAULT_PROTOCOL_VERSION, NO_REPLY)
        return request

    def datagrams(self, requests):
        """Pack requests into as few datagrams as fit the MTU (bytes each)."""
        version = VersionRequest(0, DEFAULT_PROTOCOL_VERSION)
        room = SEARCH_MAX_DATAGRAM_BYTES - len(version)
        batch, used = [], 0
        for request in requests:
            if batch and used + len(request) > room:
                yield self.broadcaster.send(version, *batch)
                batch, used = [], 0
            batch.append(request)
            used += len(request)
        if batch:
            yield self.broadcaster.send(version, *batch)

    def next_deadline(self):
        heap = self._heap
        while heap and self._stale(heap[0]):
            heapq.heappop(heap)
        if self.backlog:
            return 0.0
        return heap[0][0] if heap else None

    def clear(self):
        self.searching.clear()
        self._heap.clear()
        self.backlog = False


class BeaconWatcher:
    """Spot beacon anomalies: a server new to us, restarted, or back.

    A server's beacon ids count up by one; a gap or restart breaks the
    sequence, and a freshly started server beacons much faster than its
    steady period.  Either means names nobody answered may now be found.
    """

    def __init__(self):
        self._beacons = {}            # server address -> (id, time, period)

    def beacon(self, command, sender, now):
        """-> (server address, anomaly?) for one RsrvIsUpResponse."""
        host = command.address
        if host in ("0.0.0.0", "255.255.255.255"):
            host = sender[0]
        server = (host, command.server_port)
        previous = self._beacons.get(server)
        period, anomaly = None, previous is None
        if previous is not None:
            last_id, last_time, last_period = previous
            period = now - last_time
            if command.beacon_id != (last_id + 1) % (MAX_ID + 1):
                anomaly = True
            elif last_period is not None and period < last_period / 3:
                anomaly = True
        self._beacons[server] = (command.beacon_id, now, period)
        return server, anomaly
