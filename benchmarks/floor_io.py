"""The Python floor of the streams and ``sock_*`` workloads: ``FloorLoop``
(benchmarks/floor.py) with the least I/O a Python-level loop needs to run
asyncio's own stream classes and the ``sock_*`` coroutines, over
libcasyncio through py_async_lib's own cffi binding.

Those rows run user code that every loop, uvloop included, runs through
asyncio's Python: ``StreamReaderProtocol``/``StreamReader``/``StreamWriter``
and a Task woken through a future per read, or a Task awaiting
``sock_recv``/``sock_sendall``.  ``FloorIOLoop`` adds to the bare ready
queue only what those need:

* an iteration is one ``pyal_run_once()`` crossing (timeout 0 while
  callbacks are ready, else until the next timer, at most 100 ms), the
  events read from the event array in place, then ``FloorLoop``'s own
  iteration (due timers, then the handles that were ready);
* the events are routed where they are read, without a handle each: the
  bytes of a LOOP_EV_DATA are copied out of the read arena into
  ``protocol.data_received()``; LOOP_EV_IO calls the fd's watcher.  asyncio
  would queue those handles behind the callbacks already ready and run them
  in this iteration, so this is its order when nothing was ready before the
  poll; otherwise the iteration's events go into the queue as one handle.
  What they schedule runs after the handles that were ready (and, with
  timers pending, in the next iteration, after the due ones), as asyncio's
  next iteration would run it; the poll in between, which would find
  nothing new for the ones that were waiting, is skipped;
* ``create_server(factory, host, port)`` (what ``asyncio.start_server``
  calls) accepts on a LOOP_EV_IO watcher of the listening socket; each
  connection is a C stream (``loop_stream_open``) and a ``FloorTransport``.
  The C loop reads small messages (many reads for one crossing); after a
  read of 16 KiB or more the transport reads for itself on
  LOOP_EV_READABLE, ``recv()`` of 127 KiB, or 256 KiB after a read that got
  127 KiB (one copy instead of two, sized as ours does), until a read under
  4 KiB.
  ``FloorTransport``'s ``write()`` is one ``loop_write()`` (the protocol is
  paused above the high-water mark and resumed on LOOP_EV_RESUME, 64/16 KiB
  like asyncio's),
  ``pause_reading``/``resume_reading`` stop and start the C reads,
  ``close()`` flushes first and then calls ``connection_lost`` soon,
  ``is_closing``/``get_extra_info`` answer what the stream classes ask;
* ``sock_recv``/``sock_sendall``/``sock_accept`` try the syscall first; when
  it would block, a future and a one-shot readiness watch
  (``loop_add_reader``/``loop_add_writer`` with no callback: LOOP_EV_IO
  events), whose callback makes the syscall, removes the watch and sets the
  result.  A socket whose ``sock_recv`` once found nothing to read is
  waited on first from then on (as uvloop always does): a would-block
  ``recv()`` raises, which costs as much as the rest of the wait's Python.
  A cancelled wait removes its watch as its coroutine unwinds (no done
  callback per wait).

Futures and Tasks are asyncio's C ones, as on every loop.  Not a usable
event loop (no Unix servers, no create_connection, no SSL, no signals, no
executor, no debug mode: AbstractEventLoop's NotImplementedError); only the
benchmarks use it (``python -m benchmarks.floor_server --api streams`` /
``--api sock``), and py_async_lib never imports it.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
from typing import Any, Callable, Dict, List, Optional, Set

from py_async_lib._casyncio import ffi, lib
from py_async_lib.transports import HEAP_READ, MAX_READ

from benchmarks.floor import FloorLoop, _Handle

EVENTS_MAX = 256
#: longest poll: a signal that lands between the stop check and the poll is
#: seen within this (an idle cost only)
POLL_MS_MAX = 100

_run_once = lib.pyal_run_once   # loop_run_once, the GIL let go only to wait
_loop_write = lib.loop_write
_EV_DATA, _EV_IO = lib.LOOP_EV_DATA, lib.LOOP_EV_IO
_EV_EOF, _EV_ERROR = lib.LOOP_EV_EOF, lib.LOOP_EV_ERROR
_EV_DRAINED, _EV_RESUME = lib.LOOP_EV_DRAINED, lib.LOOP_EV_RESUME
_EV_READABLE = lib.LOOP_EV_READABLE
_READABLE, _WRITABLE = lib.LOOP_READABLE, lib.LOOP_WRITABLE
_HIGH_WATER = 64 * 1024   # asyncio's; the C stream's default limits are 64/16 KiB
#: a C read this large makes the transport read the stream itself (one copy,
#: kernel to bytes, instead of two through the arena); one of its own reads
#: smaller than BULK_READ_LOW gives the reads back to the C loop, whose
#: batched reads are cheaper for small messages
BULK_READ, BULK_READ_LOW = 16 * 1024, 4 * 1024
#: the transport's own reads: 127 KiB, or 256 KiB (as asyncio) after a read
#: that got 127 KiB: ours' read sizes, for the heap's sake (HEAP_READ and
#: MAX_READ, imported above)


def _check(rc: int) -> int:
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))
    return rc


class FloorTransport(asyncio.Transport):
    """A connection of FloorIOLoop.create_server: a C stream of the loop.

    Owns the stream's state: its protocol, whether it is paused either
    way, whether it is closing; the loop hands it the stream's events."""

    def __init__(self, loop: "FloorIOLoop", sock: socket.socket,
                 protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self._loop = loop
        self._cloop = loop._cloop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._closing = False
        self._reading = True
        self._writing_paused = False
        self._high = _HIGH_WATER
        self._read_size = HEAP_READ

    # ---- what the protocol calls -------------------------------------------

    def write(self, data: bytes) -> None:
        # bytes only (cffi passes them to `const char *` without a copy)
        n = _loop_write(self._cloop, self._fd, data, len(data))
        if n:
            self._written(n)

    def _written(self, n: int) -> None:
        if n < 0:
            if self._fd >= 0:
                self._force_close(OSError(-n, os.strerror(-n)))
        elif n > self._high and not self._writing_paused:
            self._writing_paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: List[bytes]) -> None:
        self.write(b"".join(list_of_data))

    def get_write_buffer_size(self) -> int:
        return max(0, lib.loop_write_buffer_size(self._cloop, self._fd))

    def set_write_buffer_limits(self, high: Optional[int] = None,
                                low: Optional[int] = None) -> None:
        if high is None:
            high = _HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        _check(lib.loop_stream_set_write_limits(self._cloop, self._fd, high, low))
        self._high = high

    def pause_reading(self) -> None:
        if self._reading and not self._closing:
            self._reading = False
            lib.loop_stream_read_stop(self._cloop, self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            lib.loop_stream_read_start(self._cloop, self._fd)

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        try:
            if name == "socket":
                return self._sock
            if name == "sockname":
                return self._sock.getsockname()
            if name == "peername":
                return self._sock.getpeername()
        except OSError:
            pass
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def close(self) -> None:
        """Stop reading; once what is buffered is sent, forget the stream and
        call connection_lost(None) soon (asyncio's order)."""
        if self._closing:
            return
        self._closing = True
        self._loop._streams.pop(self._fd, None)
        lib.loop_stream_read_stop(self._cloop, self._fd)
        if lib.loop_write_buffer_size(self._cloop, self._fd) > 0:
            self._loop._draining[self._fd] = self   # LOOP_EV_DRAINED finishes
        else:
            self._finish(None)

    def abort(self) -> None:
        self._force_close(None)

    # ---- what the loop hands over ------------------------------------------

    def _read_by_caller(self, on: bool) -> None:
        """Who reads the stream: the C loop (False) or _readable (True)."""
        lib.loop_stream_read_by_caller(self._cloop, self._fd, on)

    def _readable(self) -> None:
        """LOOP_EV_READABLE: one recv of HEAP_READ, or MAX_READ after one
        that got HEAP_READ or more (as ours)."""
        try:
            data = self._sock.recv(self._read_size)
            self._read_size = MAX_READ if len(data) >= HEAP_READ else HEAP_READ
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._force_close(exc)
            return
        if not data:
            self.pause_reading()   # the C loop stops reading at its own EOF
            self._eof()
            return
        if len(data) < BULK_READ_LOW:
            self._read_by_caller(False)
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal(exc)

    def _eof(self) -> None:
        if not self._protocol.eof_received():
            self.close()

    def _stream_event(self, kind: int, a: int, b: int) -> None:
        if kind == _EV_RESUME:
            if self._writing_paused:
                self._writing_paused = False
                self._protocol.resume_writing()
        elif kind == _EV_DRAINED:
            if self._closing:
                self._finish(None)
        elif kind == _EV_EOF:
            if not self._closing:
                self._eof()
        elif kind == _EV_ERROR:
            self._force_close(OSError(a, os.strerror(a)))

    def _fatal(self, exc: BaseException) -> None:
        """protocol.data_received() raised: as asyncio's _fatal_error."""
        self._loop.call_exception_handler({
            "message": "Fatal error: protocol.data_received() call failed.",
            "exception": exc, "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._fd < 0:
            return
        self._closing = True
        self._loop._streams.pop(self._fd, None)
        self._finish(exc)

    def _finish(self, exc: Optional[BaseException]) -> None:
        fd, self._fd = self._fd, -1   # later writes get -EBADF: dropped
        if fd < 0:
            return
        self._loop._draining.pop(fd, None)
        lib.loop_stream_close(self._cloop, fd)
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, exc)


class FloorServer(asyncio.AbstractServer):
    """What create_server returns: the listening sockets and close()."""

    def __init__(self, loop: "FloorIOLoop", sockets: List[socket.socket]) -> None:
        self._loop = loop
        self.sockets = sockets

    def close(self) -> None:
        for sock in self.sockets:
            self._loop._unwatch_reader(sock.fileno())
            sock.close()
        self.sockets = []

    def is_serving(self) -> bool:
        return bool(self.sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def start_serving(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


class FloorIOLoop(FloorLoop):
    """FloorLoop polling libcasyncio; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        cloop = ffi.new("loop_t **")
        _check(lib.loop_new(cloop))
        self._cloop = cloop[0]
        self._events = ffi.new("loop_event_t[]", EVENTS_MAX)
        self._ints = memoryview(ffi.buffer(self._events)).cast("q")
        base = ffi.new("char **")
        size = ffi.new("size_t *")
        lib.loop_read_arena(self._cloop, base, size)
        self._arena = memoryview(ffi.buffer(base[0], size[0]))
        self._streams: Dict[int, FloorTransport] = {}
        self._draining: Dict[int, FloorTransport] = {}  # closed, flushing
        self._readers: Dict[int, tuple] = {}   # fd -> (callback, *args)
        self._writers: Dict[int, tuple] = {}
        self._recv_waits_first: Set[int] = set()   # see sock_recv

    # ---- the iteration ------------------------------------------------------

    def _run_once(self) -> None:
        ready = self._ready
        timers = self._timers
        if ready or self._stopping:
            timeout = 0
        elif timers:
            timeout = min(POLL_MS_MAX, max(0, math.ceil(
                (timers[0][0] - self.time()) * 1000)))
        else:
            timeout = POLL_MS_MAX
        n = _run_once(self._cloop, timeout, self._events, EVENTS_MAX)
        if n > 0:
            if ready:
                # behind the callbacks already ready (the events stay in the
                # array and the arena until the next poll)
                self.call_soon(self._route, n)
            else:
                self._route(n)
                if ready and timers:
                    # what the events scheduled runs after the due timers
                    later = list(ready)
                    ready.clear()
                    FloorLoop._run_once(self)
                    ready.extendleft(reversed(later))
                    return
        elif n < 0:
            _check(n)
        FloorLoop._run_once(self)

    def _sleep(self) -> None:
        pass   # the poll at the top of _run_once is the only wait

    def _route(self, n: int) -> None:
        ints = self._ints
        streams = self._streams
        arena = self._arena
        for i in range(0, 4 * n, 4):
            kind = ints[i]
            if kind == _EV_DATA:
                transport = streams.get(ints[i + 1])
                if transport is not None:
                    off = ints[i + 3]
                    size = ints[i + 2]
                    if size >= BULK_READ:
                        transport._read_by_caller(True)
                    try:
                        transport._protocol.data_received(
                            arena[off:off + size].tobytes())
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        transport._fatal(exc)
            elif kind == _EV_READABLE:
                transport = streams.get(ints[i + 1])
                if transport is not None:
                    transport._readable()
            elif kind == _EV_IO:
                fd = ints[i + 1]
                mask = ints[i + 2]
                if mask & _READABLE:
                    watch = self._readers.get(fd)
                    if watch is not None:
                        watch[0](*watch[1:])
                if mask & _WRITABLE:
                    watch = self._writers.get(fd)
                    if watch is not None:
                        watch[0](*watch[1:])
            else:
                fd = ints[i + 1]
                transport = streams.get(fd) or self._draining.get(fd)
                if transport is not None:
                    transport._stream_event(kind, ints[i + 2], ints[i + 3])

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any,
                             context: Any = None) -> _Handle:
        handle = self.call_soon(callback, *args, context=context)
        lib.loop_wakeup(self._cloop)
        return handle

    def close(self) -> None:
        if self._closed:
            return
        for transport in list(self._streams.values()) + list(self._draining.values()):
            transport._force_close(None)
        super().close()
        lib.loop_free(self._cloop)
        self._cloop = None

    # ---- readiness watches --------------------------------------------------

    def _watch_reader(self, fd: int, *watch: Any) -> None:
        self._readers[fd] = watch
        _check(lib.loop_add_reader(self._cloop, fd, ffi.NULL, ffi.NULL))

    def _unwatch_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            lib.loop_remove_reader(self._cloop, fd)

    def _watch_writer(self, fd: int, *watch: Any) -> None:
        self._writers[fd] = watch
        _check(lib.loop_add_writer(self._cloop, fd, ffi.NULL, ffi.NULL))

    def _unwatch_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            lib.loop_remove_writer(self._cloop, fd)

    # ---- servers ------------------------------------------------------------

    async def create_server(self, protocol_factory: Callable[[], asyncio.BaseProtocol],
                            host: Optional[str] = None, port: Optional[int] = None,
                            *, backlog: int = 100, **kwds: Any) -> FloorServer:
        if kwds:
            raise NotImplementedError(f"FloorIOLoop.create_server: {sorted(kwds)}")
        family, type_, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        lsock = socket.socket(family, type_, proto)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(address)
        lsock.listen(backlog)
        lsock.setblocking(False)
        self._watch_reader(lsock.fileno(), self._accept_ready, lsock, protocol_factory)
        return FloorServer(self, [lsock])

    def _accept_ready(self, lsock: socket.socket,
                      protocol_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # EMFILE, ECONNABORTED...: as asyncio, go on
                self.call_exception_handler({"message": "accept failed",
                                             "exception": exc})
                return
            conn.setblocking(False)
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = conn.fileno()
            _check(lib.loop_stream_open(self._cloop, fd, lib.LOOP_STREAM_SOCKET))
            protocol = protocol_factory()
            transport = FloorTransport(self, conn, protocol)
            self._streams[fd] = transport
            protocol.connection_made(transport)
            if transport._reading and not transport._closing:
                lib.loop_stream_read_start(self._cloop, fd)

    # ---- sock_* -------------------------------------------------------------

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        fd = sock.fileno()
        if fd not in self._recv_waits_first:
            try:
                return sock.recv(n)
            except (BlockingIOError, InterruptedError):
                # a would-block recv raises: 1.5 us, as much as the rest of
                # the wait's Python; this socket is waited on first from now
                self._recv_waits_first.add(fd)
        fut = self.create_future()
        self._watch_reader(fd, self._recv_ready, fd, fut, sock, n)
        try:
            return await fut
        except BaseException:   # cancelled: the watch is still there
            self._unwatch_reader(fd)
            raise

    def _recv_ready(self, fd: int, fut: "asyncio.Future[bytes]",
                    sock: socket.socket, n: int) -> None:
        try:
            data = sock.recv(n)
        except (BlockingIOError, InterruptedError):
            return   # stay watched
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._unwatch_reader(fd)
            fut.set_exception(exc)
            return
        self._unwatch_reader(fd)
        fut.set_result(data)

    async def sock_sendall(self, sock: socket.socket, data: bytes) -> None:
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(data):
            return
        fut = self.create_future()
        fd = sock.fileno()
        self._watch_writer(fd, self._send_ready, fd, fut, sock, memoryview(data), [n])
        try:
            await fut
        except BaseException:
            self._unwatch_writer(fd)
            raise

    def _send_ready(self, fd: int, fut: "asyncio.Future[None]", sock: socket.socket,
                    view: memoryview, pos: List[int]) -> None:
        try:
            pos[0] += sock.send(view[pos[0]:])
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._unwatch_writer(fd)
            fut.set_exception(exc)
            return
        if pos[0] == len(view):
            self._unwatch_writer(fd)
            fut.set_result(None)

    async def sock_accept(self, sock: socket.socket) -> tuple:
        try:
            conn, address = sock.accept()
        except (BlockingIOError, InterruptedError):
            fut = self.create_future()
            fd = sock.fileno()
            self._watch_reader(fd, self._accept_one_ready, fd, fut, sock)
            try:
                return await fut
            except BaseException:
                self._unwatch_reader(fd)
                raise
        conn.setblocking(False)
        return conn, address

    def _accept_one_ready(self, fd: int, fut: "asyncio.Future[tuple]",
                          sock: socket.socket) -> None:
        try:
            conn, address = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._unwatch_reader(fd)
            fut.set_exception(exc)
            return
        self._unwatch_reader(fd)
        conn.setblocking(False)
        fut.set_result((conn, address))
