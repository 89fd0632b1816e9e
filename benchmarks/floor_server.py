"""The Python floor of the network workloads: the least Python per message
that a server on libcasyncio needs, through py_async_lib's own cffi binding.

    python -m benchmarks.floor_server [--http] [-U PATH]
    python -m benchmarks.floor_server --api streams|sock

The Protocol floor (the default; the protocol, Unix, HTTP and idle rows).
No asyncio, no handles, no ready queue: one ``loop_run_once()`` crossing per
iteration, and for each LOOP_EV_DATA event the bytes are copied out of the
read arena and handed to the benchmark's own Protocol (``EchoProtocol`` or,
with --http, ``HttpProtocol`` from benchmarks/workloads.py), whose
``transport.write()`` is one ``loop_write()``.  Connections are accepted by
Python's socket.accept() on a LOOP_EV_IO event of the listening socket.
Writes are not flow-controlled (request/response load never needs it).

``--api streams`` / ``--api sock``: the floor of the streams and ``sock_*``
rows, whose user code every loop runs through asyncio's Python (stream
classes, a Task woken through a future per read).  The very servers of
benchmarks/workloads.py (``start_streams_echo``, ``start_sock_echo``) run on
``FloorIOLoop`` (benchmarks/floor_io.py): FloorLoop's bare ready queue with
the least I/O over libcasyncio those need.

Prints "listening 127.0.0.1 PORT" (or "listening unix PATH") when ready;
SIGTERM/SIGINT stop it.  Used by benchmarks/references.py as the ``floor``
column of the network rows; never imported by py_async_lib.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from typing import Dict, Optional, Set

from py_async_lib._casyncio import ffi, lib

from benchmarks.workloads import EchoProtocol, HttpProtocol

EVENTS_MAX = 256
_loop_write = lib.loop_write


class FloorTransport:
    """What the Protocols call: write() is one loop_write(), close() ends
    the connection."""

    __slots__ = ("_cloop", "_fd", "_server")

    def __init__(self, cloop: object, fd: int, server: "FloorServer") -> None:
        self._cloop = cloop
        self._fd = fd
        self._server = server

    def write(self, data: bytes) -> None:
        if _loop_write(self._cloop, self._fd, data, len(data)) < 0:
            self._server.drop(self._fd)

    def close(self) -> None:
        self._server.drop(self._fd)


class FloorServer:
    def __init__(self, protocol: type, unix_path: Optional[str]) -> None:
        cloop = ffi.new("loop_t **")
        rc = lib.loop_new(cloop)
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        self.cloop = cloop[0]
        self.protocol = protocol
        self.registry: Set[object] = set()
        self.conns: Dict[int, tuple] = {}  # fd -> (socket, protocol)
        self.events = ffi.new("loop_event_t[]", EVENTS_MAX)
        self.ints = memoryview(ffi.buffer(self.events)).cast("q")
        base = ffi.new("char **")
        size = ffi.new("size_t *")
        lib.loop_read_arena(self.cloop, base, size)
        self.arena = memoryview(ffi.buffer(base[0], size[0]))
        if unix_path:
            if os.path.exists(unix_path):
                os.unlink(unix_path)
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(unix_path)
            self.where = f"unix {unix_path}"
        else:
            self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind(("127.0.0.1", 0))
            self.where = "127.0.0.1 %d" % self.lsock.getsockname()[1]
        self.lsock.listen(4096)
        self.lsock.setblocking(False)
        self.lfd = self.lsock.fileno()
        self.tcp = not unix_path
        lib.loop_add_reader(self.cloop, self.lfd, ffi.NULL, ffi.NULL)
        self.running = True

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            if self.tcp:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = conn.fileno()
            lib.loop_stream_open(self.cloop, fd, lib.LOOP_STREAM_SOCKET)
            lib.loop_stream_read_start(self.cloop, fd)
            proto = self.protocol(self.registry)
            self.conns[fd] = (conn, proto)
            proto.connection_made(FloorTransport(self.cloop, fd, self))

    def drop(self, fd: int) -> None:
        entry = self.conns.pop(fd, None)
        if entry is None:
            return
        lib.loop_stream_close(self.cloop, fd)
        entry[0].close()
        entry[1].connection_lost(None)

    def serve(self) -> None:
        run_once = lib.pyal_run_once   # loop_run_once, the GIL let go only to wait
        cloop, events, ints, arena, conns = (self.cloop, self.events, self.ints,
                                             self.arena, self.conns)
        DATA, IO = lib.LOOP_EV_DATA, lib.LOOP_EV_IO
        EOF, ERROR = lib.LOOP_EV_EOF, lib.LOOP_EV_ERROR
        while self.running:
            n = run_once(cloop, 100, events, EVENTS_MAX)
            for i in range(0, 4 * n, 4):
                kind = ints[i]
                if kind == DATA:
                    off = ints[i + 3]
                    conns[ints[i + 1]][1].data_received(arena[off:off + ints[i + 2]].tobytes())
                elif kind == IO:
                    self.accept()
                elif kind == EOF or kind == ERROR:
                    self.drop(ints[i + 1])

    def close(self) -> None:
        for fd in list(self.conns):
            self.drop(fd)
        lib.loop_free(self.cloop)   # drops the listener's watcher too
        self.lsock.close()


def serve_api(api: str) -> int:
    """Run workloads.py's *api* echo server on FloorIOLoop until SIGTERM."""
    from benchmarks.floor_io import FloorIOLoop
    from benchmarks.workloads import (serve_until_signalled, start_sock_echo,
                                      start_streams_echo)

    loop = FloorIOLoop()
    try:
        serve_until_signalled(loop, {"streams": start_streams_echo,
                                     "sock": start_sock_echo}[api])
    finally:
        loop.close()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.floor_server")
    p.add_argument("--http", action="store_true")
    p.add_argument("--api", choices=("protocol", "streams", "sock"), default="protocol")
    p.add_argument("-U", dest="unix_path")
    args = p.parse_args()
    if args.api != "protocol":
        if args.http or args.unix_path:
            p.error("--api streams/sock serve TCP echo only")
        return serve_api(args.api)
    server = FloorServer(HttpProtocol if args.http else EchoProtocol, args.unix_path)

    def stop(signum: int, frame: object) -> None:
        server.running = False

    # A signal interrupts epoll_wait: loop_run_once returns, the handler runs
    # and the loop sees running == False (the 100 ms poll timeout covers a
    # signal that lands between the check and the call).
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening {server.where}", flush=True)
    server.serve()
    server.close()
    if args.unix_path and os.path.exists(args.unix_path):
        os.unlink(args.unix_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
