"""IOC health PVs under devIocStats' names, as an opt-in SubGroup.

    class MyIOC(PVGroup):
        stats = SubGroup(IocStats, prefix='stats:')    # stats:HEARTBEAT, ...

Invariants:
- Names, units and meanings follow devIocStats (iocAdminSoft.db) so
  existing displays and alarm configurations work: HEARTBEAT, UPTIME,
  STARTTOD, TOD, START_CNT, CA_CLNT_CNT, CA_CONN_CNT, IOC_CPU_LOAD,
  SYS_CPU_LOAD, CPU_CNT, MEM_USED, MEM_FREE, MEM_MAX, FD_CNT, FD_MAX,
  FD_FREE, RECORD_CNT, HOSTNAME, EPICS_VERS, KERNEL_VERS, PROCESS_ID,
  PARENT_ID, ENGINEER, LOCATION.  All are read-only to clients.
- Everything is refreshed together once per ``update_period`` seconds by
  the group's start-up task; HEARTBEAT counts those refreshes.
- Client and connection counts come from the server engine
  (``common.contexts_serving``): CA_CLNT_CNT is the number of TCP circuits
  of the servers publishing this group, CA_CONN_CNT their connected
  channels.
- Host measurements use the standard library only: /proc on Linux, with
  portable fallbacks (os.times, os.getloadavg, resource) elsewhere; a
  quantity that cannot be measured reads 0.
"""
import datetime
import os
import platform
import socket
import time

from .. import __version__
from .._constants import DEFAULT_PROTOCOL_VERSION
from .autosave import AutosaveFile
from .group import PVGroup
from .pvproperty import pvproperty

__all__ = ("IocStats", "format_uptime", "process_memory", "system_memory",
           "open_files", "SystemCpu")

_TOD_FORMAT = "%m/%d/%Y %H:%M:%S"        # devIocStats' TOD / STARTTOD


def format_uptime(seconds):
    """devIocStats' UPTIME text: ``'1 days, 02:03:04'``."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{days} days, {hours:02d}:{minutes:02d}:{seconds:02d}"


def process_memory():
    """Resident memory of this process in bytes (0 if unknown)."""
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if platform.system() == "Darwin" else peak * 1024
    except (ImportError, OSError):
        return 0


def system_memory():
    """(available, total) bytes of the host's memory ((0, 0) if unknown)."""
    try:
        with open("/proc/meminfo") as file:
            fields = dict(line.split(":", 1) for line in file if ":" in line)
        total = int(fields["MemTotal"].split()[0]) * 1024
        available = fields.get("MemAvailable", fields.get("MemFree"))
        return int(available.split()[0]) * 1024, total
    except (OSError, KeyError, ValueError, AttributeError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page
    except (OSError, ValueError, AttributeError):
        return 0, 0


def open_files():
    """(open descriptors, the soft limit) of this process."""
    count = 0
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            count = len(os.listdir(directory))
            break
        except OSError:
            continue
    try:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit == resource.RLIM_INFINITY:
            limit = 0
    except (ImportError, OSError):
        limit = 0
    return count, limit


def _system_cpu_times():
    """(busy, total) jiffies of the whole host from /proc/stat, or None."""
    try:
        with open("/proc/stat") as file:
            numbers = [int(part) for part in file.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0)     # idle + iowait
    return sum(numbers) - idle, sum(numbers)


class SystemCpu:
    """CPU load in percent since the previous ``sample()``: (ioc, system)."""

    def __init__(self):
        self.cpus = os.cpu_count() or 1
        self._last = self._now()

    @staticmethod
    def _now():
        times = os.times()
        return time.monotonic(), times.user + times.system, _system_cpu_times()

    def sample(self):
        then, now = self._last, self._now()
        self._last = now
        wall = now[0] - then[0]
        ioc = 0.0
        if wall > 0:
            ioc = 100.0 * (now[1] - then[1]) / wall / self.cpus
        if now[2] is not None and then[2] is not None and now[2][1] > then[2][1]:
            system = 100.0 * (now[2][0] - then[2][0]) / (now[2][1] - then[2][1])
        else:
            try:
                system = 100.0 * os.getloadavg()[0] / self.cpus
            except (OSError, AttributeError):
                system = 0.0
        return min(max(ioc, 0.0), 100.0), min(max(system, 0.0), 100.0)


def _ro(value, doc, **kwargs):
    return pvproperty(value=value, read_only=True, doc=doc, **kwargs)


class IocStats(PVGroup):
    """devIocStats-named health PVs; ``SubGroup(IocStats, update_period=1.0,
    start_count_file=None)``.  With `start_count_file`, START_CNT counts the
    IOC's starts across restarts (kept with AutosaveFile)."""

    HEARTBEAT = _ro(0, "increments at each refresh")
    UPTIME = _ro("0 days, 00:00:00", "time since the IOC started", max_length=39)
    STARTTOD = _ro("", "time the IOC started", max_length=39)
    TOD = _ro("", "current time", max_length=39)
    START_CNT = _ro(1, "number of IOC starts")
    CA_CLNT_CNT = _ro(0, "number of CA clients")
    CA_CONN_CNT = _ro(0, "number of CA channels connected")
    IOC_CPU_LOAD = _ro(0.0, "CPU used by this IOC", units="%", precision=1)
    SYS_CPU_LOAD = _ro(0.0, "CPU used by the host", units="%", precision=1)
    CPU_CNT = _ro(os.cpu_count() or 1, "number of CPUs")
    MEM_USED = _ro(0.0, "memory used by this IOC", units="byte")
    MEM_FREE = _ro(0.0, "memory available on the host", units="byte")
    MEM_MAX = _ro(0.0, "memory of the host", units="byte")
    FD_CNT = _ro(0, "open file descriptors")
    FD_MAX = _ro(0, "file descriptor limit")
    FD_FREE = _ro(0, "file descriptors left")
    RECORD_CNT = _ro(0, "number of PVs served")
    HOSTNAME = _ro("", "host name", max_length=39)
    EPICS_VERS = _ro(f"caproto {__version__} CA 4.{DEFAULT_PROTOCOL_VERSION}"[:39],
                     "server software version")
    KERNEL_VERS = _ro(f"{platform.system()} {platform.release()}"[:39],
                      "operating system")
    PROCESS_ID = _ro(0, "process id")
    PARENT_ID = _ro(0, "parent process id")
    ENGINEER = _ro("", "responsible engineer (env ENGINEER)", max_length=39)
    LOCATION = _ro("", "IOC location (env LOCATION)", max_length=39)

    def __init__(self, *args, update_period=1.0, start_count_file=None, **kwargs):
        super().__init__(*args, **kwargs)
        if not update_period or update_period <= 0:
            raise ValueError(f"IocStats: update_period must be > 0 s, "
                             f"not {update_period!r}")
        self.update_period = float(update_period)
        self.start_count_file = start_count_file
        self.started = time.time()
        self._cpu = SystemCpu()

    def root_pvdb(self):
        group = self
        while group.parent is not None:
            group = group.parent
        return group.pvdb

    def client_counts(self):
        """(clients, channels) of the servers publishing this group."""
        from .common import contexts_serving
        clients = channels = 0
        for context in contexts_serving(self.HEARTBEAT):
            for handler in list(context.circuits):
                clients += 1
                channels += handler.circuit.channel_count()
        return clients, channels

    def _count_start(self):
        if self.start_count_file is None:
            return 1
        store = AutosaveFile(self.start_count_file)
        count = int(store.load().get("START_CNT", 0)) + 1
        try:
            store.save({"START_CNT": count})
        except OSError as exc:
            self.log.warning("START_CNT not saved to %s: %s", self.start_count_file, exc)
        return count

    def measurements(self):
        """{PV attribute: value} for one refresh (HEARTBEAT excluded)."""
        ioc_load, system_load = self._cpu.sample()
        available, total = system_memory()
        fd_count, fd_limit = open_files()
        clients, channels = self.client_counts()
        now = time.time()
        return {
            "UPTIME": format_uptime(now - self.started),
            "TOD": datetime.datetime.fromtimestamp(now).strftime(_TOD_FORMAT),
            "CA_CLNT_CNT": clients, "CA_CONN_CNT": channels,
            "IOC_CPU_LOAD": ioc_load, "SYS_CPU_LOAD": system_load,
            "MEM_USED": float(process_memory()), "MEM_FREE": float(available),
            "MEM_MAX": float(total), "FD_CNT": fd_count, "FD_MAX": fd_limit,
            "FD_FREE": max(fd_limit - fd_count, 0) if fd_limit else 0,
            "RECORD_CNT": len(self.root_pvdb()),
        }

    async def refresh(self):
        for attr, value in self.measurements().items():
            data = getattr(self, attr)
            if data.value != value:
                await data.write(value, verify_value=False)
        await self.HEARTBEAT.write(self.HEARTBEAT.value + 1, verify_value=False)

    async def __ainit__(self, async_lib):
        start = {"STARTTOD": datetime.datetime.fromtimestamp(
                     self.started).strftime(_TOD_FORMAT),
                 "START_CNT": self._count_start(),
                 "HOSTNAME": socket.gethostname()[:39],
                 "PROCESS_ID": os.getpid(), "PARENT_ID": os.getppid(),
                 "ENGINEER": os.environ.get("ENGINEER", "")[:39],
                 "LOCATION": os.environ.get("LOCATION", "")[:39]}
        for attr, value in start.items():
            await getattr(self, attr).write(value, verify_value=False)
        deadline = time.monotonic()
        while True:
            await self.refresh()
            deadline += self.update_period
            delay = deadline - time.monotonic()
            if delay < 0:                   # overran: restart the schedule from now
                deadline, delay = time.monotonic(), 0
            await async_lib.sleep(delay)
