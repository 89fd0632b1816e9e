"""Benchmark workloads, written against the public asyncio event loop API only.

Two layers:

* *round* primitives (``call_soon_chain_round(loop, n)`` ...) do a fixed
  amount of work on a loop that is not running and return the number of
  operations done; the pytest-benchmark suite times them directly;
* ``WORKLOADS`` maps a workload name to a ``Workload`` whose ``run(loop,
  options)`` keeps doing rounds (or drives the C load generator) for a given
  duration and returns ``{"ops": N, "seconds": T, "extra": {...}}``; this is
  what ``python -m benchmarks.throughput`` runs, one (workload, loop) per
  child process.

Every wait is bounded: each round arms a guard timer that fails it after
ROUND_TIME_LIMIT seconds, and network runs stop when the load generator
(which always exits by itself) does.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import shutil
import socket
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

#: A single round (or a whole network run) failing to finish within this many
#: seconds is reported as an error instead of hanging the benchmark.
ROUND_TIME_LIMIT = 60.0

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class BenchTimeout(Exception):
    pass


def run_delay() -> Optional[float]:
    """Seconds the calling thread has spent runnable but waiting for a CPU.

    Read from /proc/thread-self/schedstat (Linux); None when unavailable.
    Over a measurement, a growing value means other load on the machine took
    CPU time from the benchmark, so the number is not trustworthy.
    """
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def _wait_fraction(d0: Optional[float], d1: Optional[float], wall: float) -> Optional[float]:
    if d0 is None or d1 is None or wall <= 0:
        return None
    return round((d1 - d0) / wall, 3)


def _run_future(loop: asyncio.AbstractEventLoop, fut: "asyncio.Future[Any]",
                limit: float = ROUND_TIME_LIMIT) -> Any:
    """loop.run_until_complete(fut), failing fut after *limit* seconds."""

    def expire() -> None:
        if not fut.done():
            if isinstance(fut, asyncio.Task):
                fut.cancel()
            else:
                fut.set_exception(BenchTimeout(f"round did not finish in {limit} s"))

    guard = loop.call_later(limit, expire)
    try:
        return loop.run_until_complete(fut)
    except asyncio.CancelledError:
        raise BenchTimeout(f"round did not finish in {limit} s") from None
    finally:
        guard.cancel()


def _run_coro(loop: asyncio.AbstractEventLoop, coro: Any,
              limit: float = ROUND_TIME_LIMIT) -> Any:
    return _run_future(loop, loop.create_task(coro), limit)


# --------------------------------------------------------------------------
# loop-level (CPU) round primitives
# --------------------------------------------------------------------------


def call_soon_chain_round(loop: asyncio.AbstractEventLoop, n: int = 10_000) -> int:
    """One callback re-schedules itself with loop.call_soon, n times in all."""
    done = loop.create_future()
    remaining = n
    call_soon = loop.call_soon

    def step() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining:
            call_soon(step)
        else:
            done.set_result(None)

    call_soon(step)
    _run_future(loop, done)
    return n


def call_soon_burst_round(loop: asyncio.AbstractEventLoop, n: int = 10_000) -> int:
    """Schedule n callbacks at once with loop.call_soon, then run them all."""
    done = loop.create_future()
    count = 0

    def cb() -> None:
        nonlocal count
        count += 1

    call_soon = loop.call_soon
    for _ in range(n):
        call_soon(cb)
    call_soon(done.set_result, None)  # FIFO: runs after the n callbacks
    _run_future(loop, done)
    if count != n:
        raise RuntimeError(f"call_soon_burst: {count} of {n} callbacks ran")
    return n


_timer_plans: Dict[Tuple[int, float, int], Tuple[List[float], List[int]]] = {}


def _timer_plan(n: int, cancel_fraction: float, seed: int) -> Tuple[List[float], List[int]]:
    key = (n, cancel_fraction, seed)
    plan = _timer_plans.get(key)
    if plan is None:
        rng = random.Random(seed)
        delays = [rng.uniform(0.0, 0.001) for _ in range(n)]
        cancel = sorted(rng.sample(range(n), int(n * cancel_fraction)))
        plan = _timer_plans[key] = (delays, cancel)
    return plan


def call_later_timers_round(loop: asyncio.AbstractEventLoop, n: int = 10_000,
                            cancel_fraction: float = 0.1, seed: int = 1234) -> int:
    """Schedule n timers 0-1 ms ahead, cancel 10 % of them, wait for the rest.

    Returns fired + cancelled (== n).  The random delays are generated once
    per (n, seed) so that every loop gets exactly the same schedule.
    """
    delays, cancel = _timer_plan(n, cancel_fraction, seed)
    expected = n - len(cancel)
    done = loop.create_future()
    fired = 0

    def cb() -> None:
        nonlocal fired
        fired += 1
        if fired == expected:
            done.set_result(None)

    call_later = loop.call_later
    handles = [call_later(d, cb) for d in delays]
    for i in cancel:
        handles[i].cancel()
    if expected == 0:
        done.set_result(None)
    _run_future(loop, done)
    return fired + len(cancel)


async def _sleeper(nsleeps: int) -> None:
    for _ in range(nsleeps):
        await asyncio.sleep(0)


async def _gather_sleepers(ntasks: int, nsleeps: int) -> None:
    await asyncio.gather(*[_sleeper(nsleeps) for _ in range(ntasks)])


def tasks_sleep0_round(loop: asyncio.AbstractEventLoop, ntasks: int = 50_000,
                       nsleeps: int = 3) -> int:
    """ntasks tasks each doing `await asyncio.sleep(0)` nsleeps times, gathered.

    Returns the number of sleep(0) yields (ntasks * nsleeps).
    """
    _run_coro(loop, _gather_sleepers(ntasks, nsleeps))
    return ntasks * nsleeps


async def _pingpong(loop: asyncio.AbstractEventLoop, n: int) -> None:
    # turn[i] is the future player i waits on; each player replaces its own
    # future *before* waking the other one, so a wake-up is never lost.
    turn = [loop.create_future(), loop.create_future()]
    turn[0].set_result(None)

    async def player(me: int, other: int) -> None:
        for _ in range(n):
            await turn[me]
            turn[me] = loop.create_future()
            turn[other].set_result(None)

    await asyncio.gather(player(0, 1), player(1, 0))


def future_pingpong_round(loop: asyncio.AbstractEventLoop, n: int = 10_000) -> int:
    """Two tasks hand control to each other through futures; 2n hand-offs."""
    _run_coro(loop, _pingpong(loop, n))
    return 2 * n


def call_soon_threadsafe_round(loop: asyncio.AbstractEventLoop, n: int = 200_000,
                               nthreads: int = 2) -> int:
    """nthreads threads hand n callbacks in all to the running loop with
    call_soon_threadsafe (as an executor or an I/O thread does); the round
    ends when the loop has run them all."""
    done = loop.create_future()
    count = 0
    per_thread = n // nthreads
    total = per_thread * nthreads

    def cb() -> None:
        nonlocal count
        count += 1
        if count == total:
            done.set_result(None)

    def produce() -> None:
        call_soon_threadsafe = loop.call_soon_threadsafe
        for _ in range(per_thread):
            call_soon_threadsafe(cb)

    threads = [threading.Thread(target=produce, daemon=True) for _ in range(nthreads)]

    def start() -> None:
        for t in threads:
            t.start()

    loop.call_soon(start)
    try:
        _run_future(loop, done)
    finally:
        for t in threads:
            if t.is_alive() or t.ident is not None:
                t.join()
    return total


# --------------------------------------------------------------------------
# servers (run in the loop under test)
# --------------------------------------------------------------------------

READ_SIZE = 65536


class ServerHandle:
    """A running benchmark server: its address and how to shut it down.

    pid is the server's process when it is not this one (the reference
    servers); its CPU time, page faults and memory are then read from /proc.
    """

    def __init__(self, address: Any, closer: Callable[[], Any],
                 pid: Optional[int] = None) -> None:
        self.address = address  # (host, port) or a Unix path
        self._closer = closer
        self.pid = pid

    async def aclose(self) -> None:
        await self._closer()


class _TrackedProtocol(asyncio.Protocol):
    def __init__(self, registry: Set[asyncio.BaseTransport]) -> None:
        self.registry = registry
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.registry.add(transport)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.registry.discard(self.transport)
        self.transport = None


class EchoProtocol(_TrackedProtocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


HTTP_BODY = b"Hello, World!\n"
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: py_async_lib-bench\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(HTTP_BODY)).encode() + b"\r\n"
    b"\r\n" + HTTP_BODY
)
HTTP_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
HTTP_MAX_HEAD = 65536


class HttpProtocol(_TrackedProtocol):
    """Minimal HTTP/1.1 keep-alive server: parse the request line and headers
    up to the blank line, skip a Content-Length body, answer 200 OK."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > HTTP_MAX_HEAD:
                    self._fail()
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                self._fail()
                return
            version = parts[2]
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep:
                    self._fail()
                    return
                headers[name.strip().lower()] = value.strip()
            try:
                body_len = int(headers.get(b"content-length", b"0"))
            except ValueError:
                self._fail()
                return
            if len(buf) < end + 4 + body_len:
                return  # wait for the rest of the body
            del buf[: end + 4 + body_len]
            conn = headers.get(b"connection", b"").lower()
            keep_alive = conn != b"close" if version == b"HTTP/1.1" else conn == b"keep-alive"
            self.transport.write(HTTP_RESPONSE)
            if not keep_alive:
                self.transport.close()
                return

    def _fail(self) -> None:
        self.transport.write(HTTP_BAD_REQUEST)
        self.transport.close()


async def _close_transports(registry: Set[asyncio.BaseTransport]) -> None:
    for tr in list(registry):
        tr.close()
    await asyncio.sleep(0)


def _server_closer(server: asyncio.AbstractServer,
                   registry: Set[asyncio.BaseTransport]) -> Callable[[], Any]:
    async def close() -> None:
        server.close()
        await _close_transports(registry)
        await asyncio.wait_for(server.wait_closed(), 5)
    return close


#: listen() backlog of the Protocol servers: asyncio's default (100) makes the
#: kernel drop SYNs while 10k connections open at once, and each drop costs
#: the client a 1 s retransmit
BACKLOG = 4096


async def start_protocol_server(protocol: type, unix_path: Optional[str] = None) -> ServerHandle:
    loop = asyncio.get_running_loop()
    registry: Set[asyncio.BaseTransport] = set()

    def factory() -> asyncio.Protocol:
        return protocol(registry)

    if unix_path is not None:
        server = await loop.create_unix_server(factory, unix_path, backlog=BACKLOG)
        address: Any = unix_path
    else:
        server = await loop.create_server(factory, "127.0.0.1", 0, backlog=BACKLOG)
        address = server.sockets[0].getsockname()[:2]
    return ServerHandle(address, _server_closer(server, registry))


async def start_protocol_echo(unix_path: Optional[str] = None) -> ServerHandle:
    return await start_protocol_server(EchoProtocol, unix_path)


async def start_http(unix_path: Optional[str] = None) -> ServerHandle:
    return await start_protocol_server(HttpProtocol, unix_path)


async def start_streams_echo(unix_path: Optional[str] = None) -> ServerHandle:
    writers: Set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writers.discard(writer)
            writer.close()

    if unix_path is not None:
        server = await asyncio.start_unix_server(handle, unix_path)
        address: Any = unix_path
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        address = server.sockets[0].getsockname()[:2]

    async def close() -> None:
        server.close()
        for w in list(writers):
            w.close()
        await asyncio.sleep(0)
        await asyncio.wait_for(server.wait_closed(), 5)

    return ServerHandle(address, close)


async def start_sock_echo(unix_path: Optional[str] = None) -> ServerHandle:
    loop = asyncio.get_running_loop()
    if unix_path is not None:
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(unix_path)
        address: Any = unix_path
    else:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", 0))
        address = lsock.getsockname()[:2]
    lsock.listen(128)
    lsock.setblocking(False)
    tasks: Set["asyncio.Task[None]"] = set()

    async def serve(conn: socket.socket) -> None:
        try:
            while True:
                data = await loop.sock_recv(conn, READ_SIZE)
                if not data:
                    break
                await loop.sock_sendall(conn, data)
        except ConnectionError:
            pass
        finally:
            conn.close()

    async def accept_forever() -> None:
        while True:
            conn, _ = await loop.sock_accept(lsock)
            conn.setblocking(False)
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(serve(conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    acceptor = loop.create_task(accept_forever())

    async def close() -> None:
        acceptor.cancel()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(acceptor, *tasks, return_exceptions=True)
        lsock.close()

    return ServerHandle(address, close)


async def start_external(argv: Sequence[str], unix_path: Optional[str] = None) -> ServerHandle:
    """Start a server process that prints "listening 127.0.0.1 PORT" or
    "listening unix PATH" when ready (the reference servers) and stops on
    SIGTERM."""
    cmd = list(argv) + (["-U", unix_path] if unix_path else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline().decode(errors="replace").split() if proc.stdout else []
    if len(line) != 3 or line[0] != "listening":
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"{cmd[0]} did not start: {err.decode(errors='replace').strip()}")
    address: Any = line[2] if line[1] == "unix" else (line[1], int(line[2]))

    async def close() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        else:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
        if proc.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}")

    return ServerHandle(address, close, pid=proc.pid)


def serve_until_signalled(loop: asyncio.AbstractEventLoop,
                          start: Callable[..., Any]) -> None:
    """The other side of start_external: run start()'s TCP server on *loop*,
    print "listening HOST PORT", and close it on SIGTERM or SIGINT."""
    stopped = loop.create_future()

    def stop(*_: object) -> None:
        if not stopped.done():
            stopped.set_result(None)

    def stop_from_handler(signum: int, frame: object) -> None:
        # A Python-level handler runs in the loop's thread between two
        # bytecodes (a poll blocked in C returns on EINTR first).
        loop.call_soon_threadsafe(stop)

    async def main() -> None:
        handle = await start()
        host, port = handle.address
        print(f"listening {host} {port}", flush=True)
        await stopped
        await handle.aclose()

    try:
        # The loop's own handlers wake its poll through a wakeup fd, so no
        # signal is lost.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
    except (NotImplementedError, AttributeError):
        # The floor's loop: a signal that lands between the handler check
        # and a blocking poll waits for the next event (a timer to bound
        # that wait would change the floor's iterations: +12k instructions
        # per streams round trip).
        signal.signal(signal.SIGTERM, stop_from_handler)
        signal.signal(signal.SIGINT, stop_from_handler)
    loop.run_until_complete(main())


# --------------------------------------------------------------------------
# server-side counters
# --------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def server_counters(pid: Optional[int]) -> Tuple[float, int]:
    """(CPU seconds, minor page faults) of process pid, or of this process.

    For another process the CPU time is /proc/PID/schedstat's run time (ns,
    all threads of a single-threaded server) or else utime+stime from
    /proc/PID/stat (clock ticks); minflt is field 10 of /proc/PID/stat.
    """
    if pid is None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return time.process_time(), ru.ru_minflt
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        minflt = int(fields[7])
        cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return 0.0, 0
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            cpu = int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    return cpu, minflt


def server_rss(pid: Optional[int]) -> Optional[int]:
    """Resident set size in bytes of process pid (or this one)."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------
# the C load generator
# --------------------------------------------------------------------------

BENCH_DIR = Path(__file__).resolve().parent
LOADGEN_SRC = BENCH_DIR / "loadgen.c"
LOADGEN_ENV = "PY_ASYNC_LIB_LOADGEN"


def _loadgen_targets() -> List[Path]:
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [BENCH_DIR.parent / "build" / "loadgen", cache_home / "py_async_lib" / "loadgen"]


def _fresh(binary: Path) -> bool:
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return False
    try:
        return binary.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime
    except OSError:  # no source next to us: any binary will do
        return True


def ensure_loadgen(log: Optional[Callable[[str], None]] = None) -> str:
    """Path of the load generator binary, compiling it with cc if needed.

    Order: $PY_ASYNC_LIB_LOADGEN; build/loadgen next to the benchmarks package
    (what `make loadgen` produces) if up to date; the user cache copy;
    otherwise compile benchmarks/loadgen.c into the first writable of those
    two places.  Raises RuntimeError if no binary can be had.
    """
    override = os.environ.get(LOADGEN_ENV)
    if override:
        if not os.access(override, os.X_OK):
            raise RuntimeError(f"${LOADGEN_ENV}={override} is not an executable")
        return override
    targets = _loadgen_targets()
    for t in targets:
        if _fresh(t):
            return str(t)
    if not LOADGEN_SRC.is_file():
        raise RuntimeError(f"no load generator binary and no source at {LOADGEN_SRC}")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc) to build the load generator; run `make loadgen`")
    errors = []
    for t in targets:
        try:
            t.parent.mkdir(parents=True, exist_ok=True)
            tmp = t.with_name(f".{t.name}.{os.getpid()}.tmp")
            cmd = [cc, "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(LOADGEN_SRC), "-pthread"]
            if log:
                log(f"building load generator: {' '.join(cmd)}")
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                errors.append(f"{' '.join(cmd)}:\n{proc.stderr.strip()}")
                tmp.unlink(missing_ok=True)
                continue
            os.replace(tmp, t)  # atomic: concurrent runs never see half a binary
            return str(t)
        except OSError as exc:
            errors.append(f"{t}: {exc}")
    raise RuntimeError("could not build the load generator:\n" + "\n".join(errors))


# --------------------------------------------------------------------------
# timed runs
# --------------------------------------------------------------------------


#: idle connections of the scale workload; capped by RLIMIT_NOFILE (both the
#: server and the load generator need one fd per connection)
SCALE_CONNECTIONS = 10_000
QUICK_SCALE_CONNECTIONS = 2_000


@dataclass
class RunOptions:
    duration: float = 1.5
    warmup: float = 0.25
    connections: int = 16
    loadgen: Optional[str] = None
    loadgen_cpus: Optional[Sequence[int]] = None  # CPUs to pin the load generator to
    scale_connections: int = SCALE_CONNECTIONS
    #: > 0: network rows run the load generator open-loop at this many
    #: requests per second in all (loadgen --rate), latency from the
    #: scheduled send times
    rate: float = 0.0


def run_rounds(round_fn: Callable[[], int], options: RunOptions) -> Dict[str, Any]:
    """Repeat round_fn until options.duration has passed (at least once)."""
    if options.warmup > 0:
        end = time.perf_counter() + options.warmup
        while time.perf_counter() < end:
            round_fn()
    gc.collect()
    ops = rounds = 0
    d0 = run_delay()
    t0 = time.perf_counter()
    deadline = t0 + options.duration
    while True:
        ops += round_fn()
        rounds += 1
        t = time.perf_counter()
        if t >= deadline:
            break
    wait = _wait_fraction(d0, run_delay(), t - t0)
    return {"ops": ops, "seconds": t - t0, "extra": {"rounds": rounds, "cpu_wait": wait}}


@dataclass
class NetSpec:
    start: Callable[..., Any]  # async (unix_path=None) -> ServerHandle
    size: int = 1024
    unix: bool = False
    http: bool = False
    #: > 0: hold this many idle connections (loadgen --scale) and report
    #: memory per connection and the time to serve one message on each
    scale: int = 0
    #: keep the load generator's CPU busy with a spinning process meanwhile
    busy: bool = False
    #: Python-level protocol of the server ("echo", "http"); the reference
    #: servers serve the same
    protocol: str = "echo"
    #: the asyncio API the server's user code is written against
    #: ("protocol", "streams", "sock"): the floor column serves each with
    #: its own floor (benchmarks/floor_server.py --api)
    api: str = "protocol"




def scale_connections(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted + 100 and soft != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, wanted + 200), hard))
        except (ValueError, OSError):
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return min(wanted, soft - 100) if soft != resource.RLIM_INFINITY else wanted


def start_spinner(cpus: Optional[Sequence[int]]) -> subprocess.Popen:
    """A process spinning on cpus (the load generator's): the "other core is
    busy" case of the contention workload."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    if cpus:
        try:
            os.sched_setaffinity(proc.pid, cpus)
        except OSError:
            pass
    return proc


def run_network(loop: asyncio.AbstractEventLoop, spec: NetSpec,
                options: RunOptions) -> Dict[str, Any]:
    """Serve with spec.start in *loop* while the C load generator hits it.

    The server's CPU time and minor page faults are counted from just before
    the load generator starts until it has exited, and divided by every
    request it made in that time (its all_requests), so per-message figures
    cover the warm-up as well as the measured window.  Scale runs count
    them over the timed sweeps only (not while the connections open).
    """
    loadgen = options.loadgen or ensure_loadgen()
    tmpdir = None
    if spec.unix:
        tmpdir = tempfile.mkdtemp(prefix="pyal-bench-")
        if len(tmpdir) > 90 and os.path.isdir("/tmp"):  # sun_path is ~107 bytes
            shutil.rmtree(tmpdir, ignore_errors=True)
            tmpdir = tempfile.mkdtemp(prefix="pyal-bench-", dir="/tmp")
    nscale = scale_connections(options.scale_connections) if spec.scale else 0

    async def main() -> Dict[str, Any]:
        unix_path = os.path.join(tmpdir, "echo.sock") if tmpdir else None
        handle = await spec.start(unix_path=unix_path)
        if spec.scale:
            argv = [loadgen, "--scale", "-c", str(nscale), "-s", str(spec.size),
                    "-d", repr(float(options.duration))]
        else:
            argv = [loadgen, "-c", str(options.connections),
                    "-d", repr(float(options.duration)), "-w", repr(float(options.warmup))]
            argv += ["--http"] if spec.http else ["-s", str(spec.size)]
            if options.rate > 0:
                argv += ["--rate", repr(float(options.rate))]
        if unix_path:
            argv += ["-U", unix_path]
        else:
            host, port = handle.address
            argv += ["-H", host, "-p", str(port)]
        spinner = start_spinner(options.loadgen_cpus) if spec.busy else None
        gc.collect()
        rss0 = server_rss(handle.pid)
        rss_ready: Optional[int] = None
        out = b""
        cpu0, flt0 = server_counters(handle.pid)
        wall0, delay0 = time.perf_counter(), run_delay()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.PIPE if spec.scale else subprocess.DEVNULL)
        try:
            if options.loadgen_cpus:
                try:
                    os.sched_setaffinity(proc.pid, options.loadgen_cpus)
                except OSError:
                    pass
            if spec.scale:
                os.set_blocking(proc.stdout.fileno(), False)
            limit = time.monotonic() + options.warmup + options.duration + 30 + (
                120 if spec.scale else 0)
            while proc.poll() is None:
                if time.monotonic() > limit:
                    raise BenchTimeout("load generator did not finish")
                if spec.scale and rss_ready is None:
                    try:
                        out += os.read(proc.stdout.fileno(), 65536)
                    except BlockingIOError:
                        pass
                    if b"ready" in out:
                        # every connection is open and has served a message;
                        # the CPU per message counts the sweeps from here on
                        rss_ready = server_rss(handle.pid)
                        cpu0, flt0 = server_counters(handle.pid)
                        wall0 = time.perf_counter()
                        proc.stdin.write(b"go\n")
                        proc.stdin.close()
                await asyncio.sleep(0.01 if spec.scale else 0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            wall = max(time.perf_counter() - wall0, 1e-9)
            cpu1, flt1 = server_counters(handle.pid)
            server_wait = _wait_fraction(delay0, run_delay(), wall)
            if spinner is not None:
                spinner.kill()
                spinner.wait()
            await handle.aclose()
        if proc.stdout:
            if spec.scale:
                os.set_blocking(proc.stdout.fileno(), True)
            out += proc.stdout.read()
            proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        try:
            report = json.loads(out.decode(errors="replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(
                f"load generator exited {proc.returncode} without a report; stderr: {err.strip()}"
            ) from None
        if proc.returncode != 0 or report.get("errors") or not report.get("requests"):
            raise RuntimeError(
                f"load generator exited {proc.returncode}: {report}; stderr: {err.strip()}"
            )
        served = report.get("all_requests") or report["requests"]
        extra: Dict[str, Any] = {
            "bytes": report["bytes"],
            "connections": report["connections"],
            "message_size": report["size"] if not spec.http else len(HTTP_RESPONSE),
            "loadgen_cpu": report["cpu"],
            "server_cpu": round((cpu1 - cpu0) / wall, 3),
            "server_cpu_us_per_msg": round((cpu1 - cpu0) / served * 1e6, 3),
            "server_minflt_per_msg": round((flt1 - flt0) / served, 4),
            "loadgen_wait": report.get("wait") if report.get("wait", -1) >= 0 else None,
            "server_wait": server_wait,
            "external_server": handle.pid is not None,
        }
        if spec.busy:
            extra["busy"] = True
        for key in ("p50_us", "p99_us", "p999_us"):
            if report.get(key, -1) >= 0:
                extra[key] = report[key]
        if options.rate > 0:
            extra["rate"] = report["rate"]
            extra["achieved_rate"] = report["achieved_rate"]
            extra["send_lag_p99_us"] = report["send_lag_p99_us"]
        if spec.scale:
            extra.update({k: report[k] for k in ("sweeps", "sweep_ms_best",
                                                  "sweep_ms_median", "connect_seconds")})
            if rss0 is not None and rss_ready is not None:
                extra["mem_per_conn_kb"] = round((rss_ready - rss0) / nscale / 1024, 3)
        return {"ops": report["requests"], "seconds": report["seconds"], "extra": extra}

    try:
        return _run_coro(loop, main(), limit=options.warmup + options.duration + 60 + (
            150 if spec.scale else 0))
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    kind: str  # "loop" or "net"
    unit: str  # what one operation is
    description: str
    run: Callable[[asyncio.AbstractEventLoop, RunOptions], Dict[str, Any]] = field(repr=False)
    #: network workloads: what the server does, for the reference servers
    spec: Optional[NetSpec] = field(default=None, repr=False)


def _rounds(fn: Callable[..., int], **kwargs: Any) -> Callable[[asyncio.AbstractEventLoop, RunOptions], Dict[str, Any]]:
    def run(loop: asyncio.AbstractEventLoop, options: RunOptions) -> Dict[str, Any]:
        return run_rounds(lambda: fn(loop, **kwargs), options)
    return run


def _net(spec: NetSpec) -> Tuple[Callable[[asyncio.AbstractEventLoop, RunOptions],
                                          Dict[str, Any]], NetSpec]:
    """(run, spec) of a network Workload."""
    def run(loop: asyncio.AbstractEventLoop, options: RunOptions) -> Dict[str, Any]:
        return run_network(loop, spec, options)
    return run, spec


_ECHO_DESC = ("{api} echo server on {where}; C load generator, request/response "
              "of {size} on each connection")

WORKLOADS: Dict[str, Workload] = {w.name: w for w in [
    Workload("call_soon_chain", "loop", "callbacks",
             "one callback re-scheduling itself with call_soon (chains of 10k)",
             _rounds(call_soon_chain_round, n=10_000)),
    Workload("call_soon_burst", "loop", "callbacks",
             "10k call_soon callbacks scheduled at once, then run; repeated",
             _rounds(call_soon_burst_round, n=10_000)),
    Workload("call_later_timers", "loop", "timers",
             "10k call_later timers 0-1 ms ahead, 10% cancelled; fired+cancelled",
             _rounds(call_later_timers_round, n=10_000)),
    Workload("tasks_sleep0", "loop", "sleep(0)s",
             "50k tasks x 3 `await asyncio.sleep(0)`, gathered; counts yields",
             _rounds(tasks_sleep0_round, ntasks=50_000, nsleeps=3)),
    Workload("future_pingpong", "loop", "hand-offs",
             "two tasks waking each other through futures",
             _rounds(future_pingpong_round, n=10_000)),
    Workload("call_soon_threadsafe", "loop", "callbacks",
             "2 threads handing 200k callbacks to the running loop with "
             "call_soon_threadsafe",
             _rounds(call_soon_threadsafe_round, n=200_000, nthreads=2)),
    Workload("echo_protocol_1k", "net", "requests",
             _ECHO_DESC.format(api="asyncio.Protocol", where="TCP", size="1 KiB"),
             *_net(NetSpec(start_protocol_echo, size=1024))),
    Workload("echo_protocol_64k", "net", "requests",
             _ECHO_DESC.format(api="asyncio.Protocol", where="TCP", size="64 KiB"),
             *_net(NetSpec(start_protocol_echo, size=65536))),
    Workload("echo_streams_1k", "net", "requests",
             _ECHO_DESC.format(api="start_server streams", where="TCP", size="1 KiB"),
             *_net(NetSpec(start_streams_echo, size=1024, api="streams"))),
    Workload("echo_streams_64k", "net", "requests",
             _ECHO_DESC.format(api="start_server streams", where="TCP", size="64 KiB"),
             *_net(NetSpec(start_streams_echo, size=65536, api="streams"))),
    Workload("echo_sock_1k", "net", "requests",
             _ECHO_DESC.format(api="sock_accept/sock_recv/sock_sendall", where="TCP",
                               size="1 KiB"),
             *_net(NetSpec(start_sock_echo, size=1024, api="sock"))),
    Workload("echo_sock_64k", "net", "requests",
             _ECHO_DESC.format(api="sock_accept/sock_recv/sock_sendall", where="TCP",
                               size="64 KiB"),
             *_net(NetSpec(start_sock_echo, size=65536, api="sock"))),
    Workload("echo_unix_1k", "net", "requests",
             _ECHO_DESC.format(api="asyncio.Protocol", where="a Unix socket",
                               size="1 KiB"),
             *_net(NetSpec(start_protocol_echo, size=1024, unix=True))),
    Workload("http_keepalive", "net", "requests",
             "minimal HTTP/1.1 keep-alive server (asyncio.Protocol); C load generator, "
             "one GET at a time on each connection",
             *_net(NetSpec(start_http, http=True, protocol="http"))),
    Workload("echo_protocol_64k_busy", "net", "requests",
             _ECHO_DESC.format(api="asyncio.Protocol", where="TCP", size="64 KiB")
             + ", while a spinning process keeps the load generator's CPU busy",
             *_net(NetSpec(start_protocol_echo, size=65536, busy=True))),
    Workload("echo_streams_64k_busy", "net", "requests",
             _ECHO_DESC.format(api="start_server streams", where="TCP", size="64 KiB")
             + ", while a spinning process keeps the load generator's CPU busy",
             *_net(NetSpec(start_streams_echo, size=65536, api="streams", busy=True))),
    Workload("idle_10k", "net", "messages",
             "10k idle TCP connections to an asyncio.Protocol echo server; one 1 KiB "
             "message on every connection per sweep; memory per connection",
             *_net(NetSpec(start_protocol_echo, size=1024, scale=SCALE_CONNECTIONS))),
]}


# --------------------------------------------------------------------------
# in-process echo round trips (for the pytest-benchmark suite)
# --------------------------------------------------------------------------


class _PingClient(asyncio.Protocol):
    """Sends a message, waits for it to come back whole, repeats n times."""

    def __init__(self, loop: asyncio.AbstractEventLoop, message: bytes) -> None:
        self.loop = loop
        self.message = message
        self.transport: Any = None
        self.received = 0
        self.remaining = 0
        self.done: Optional[asyncio.Future[int]] = None
        self.lost = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def start(self, n: int) -> "asyncio.Future[int]":
        self.done = self.loop.create_future()
        self.remaining = n
        self.received = 0
        self.transport.write(self.message)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= len(self.message):
            if self.received != len(self.message):
                self.done.set_exception(RuntimeError("echo returned too much data"))
                return
            self.received = 0
            self.remaining -= 1
            if self.remaining:
                self.transport.write(self.message)
            else:
                self.done.set_result(None)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("echo connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)


class InProcessEcho:
    """A Protocol echo server and one client connection, both in *loop*."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int = 1024) -> None:
        self.loop = loop
        self.message = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        self.server: Optional[ServerHandle] = None
        self.client: Optional[_PingClient] = None

    def open(self) -> "InProcessEcho":
        async def setup() -> None:
            self.server = await start_protocol_echo()
            host, port = self.server.address
            _, self.client = await self.loop.create_connection(
                lambda: _PingClient(self.loop, self.message), host, port)
        _run_coro(self.loop, setup(), limit=10)
        return self

    def round_trips(self, n: int) -> int:
        _run_future(self.loop, self.client.start(n))
        return n

    def close(self) -> None:
        async def teardown() -> None:
            if self.client is not None and self.client.transport is not None:
                self.client.transport.close()
                await asyncio.wait_for(self.client.lost, 5)
            if self.server is not None:
                await self.server.aclose()
        if not self.loop.is_closed():
            _run_coro(self.loop, teardown(), limit=10)
