"""The contextvars context of every protocol callback, ours against asyncio's.

Each scenario runs on asyncio's SelectorEventLoop and on ours and records,
for every protocol callback, the value of a context variable (VAR, set by the
task or call that created, wrote to, paused, resumed or closed the
transport) and a trail: each callback adds its name to the TRAIL variable of
the context it runs in, so a callback also shows which callbacks ran in the
same context (or one it was copied from) before it.  The two records must be
equal.

Run as a script (python tests/test_contexts.py [asyncio|ours]) to print the
record of one loop.
"""
import asyncio
import contextvars
import os
import socket
import sys
import tempfile

import pytest

from test.test_asyncio import utils as test_utils

VAR = contextvars.ContextVar("VAR", default="-")
TRAIL = contextvars.ContextVar("TRAIL", default=())

MiB = 1024 * 1024
TIMEOUT = 30


class Log(list):
    """Distinct (who, callback, VAR, TRAIL) entries, in order of arrival."""

    def mark(self, who, cb, *detail):
        tag = f"{who}.{cb}"
        trail = TRAIL.get()
        if tag not in trail:
            # Once per context: how many chunks data arrives in is not
            # behaviour.
            trail += (tag,)
            TRAIL.set(trail)
        entry = (who, cb, *detail, VAR.get(), trail)
        if entry not in self:
            self.append(entry)


def call_in(value, func, *args):
    """func(*args) in a copy of the current context where VAR is value."""
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, value)
    return ctx.run(func, *args)


async def run_in(value, coro_func, *args, **kwargs):
    """await coro_func(*args, **kwargs) in a task of its own where VAR is
    value."""
    async def task():
        VAR.set(value)
        return await coro_func(*args, **kwargs)
    return await asyncio.get_running_loop().create_task(task())


class Recorder:
    """What the protocols below share: the log, and waiting for a callback."""

    def __init__(self, log, who, **options):
        self.log = log
        self.who = who
        self.transport = None
        self.seen = []
        self.waiter = None
        self.options = options

    def note(self, cb, *detail):
        self.log.mark(self.who, cb, *detail)
        self.seen.append(cb)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def until(self, cb, count=1):
        while self.seen.count(cb) < count:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter

    def pause_writing(self):
        self.note("pause_writing")

    def resume_writing(self):
        self.note("resume_writing")


class StreamRec(Recorder, asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.note("connection_made")
        if self.options.get("pause"):
            transport.pause_reading()

    def data_received(self, data):
        self.note("data_received")
        if self.options.get("fail"):
            raise RuntimeError("data_received fails")

    def eof_received(self):
        self.note("eof_received")
        return self.options.get("keep_open")

    def connection_lost(self, exc):
        self.note("connection_lost", type(exc).__name__)


class BufferedRec(StreamRec, asyncio.BufferedProtocol):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.buf = bytearray(1024)

    def get_buffer(self, sizehint):
        self.note("get_buffer")
        return self.buf

    def buffer_updated(self, nbytes):
        self.note("buffer_updated")
        if self.options.get("fail"):
            raise RuntimeError("buffer_updated fails")


class DatagramRec(Recorder, asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.note("connection_made")

    def datagram_received(self, data, addr):
        self.note("datagram_received")

    def error_received(self, exc):
        self.note("error_received", type(exc).__name__)

    def connection_lost(self, exc):
        self.note("connection_lost", type(exc).__name__)


class ProcessRec(Recorder, asyncio.SubprocessProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.note("connection_made")

    def pipe_data_received(self, fd, data):
        self.note("pipe_data_received", fd)

    def pipe_connection_lost(self, fd, exc):
        self.note("pipe_connection_lost", fd, type(exc).__name__)

    def process_exited(self):
        self.note("process_exited")

    def connection_lost(self, exc):
        self.note("connection_lost", type(exc).__name__)


# ---- streams: TCP, Unix, SSL ---------------------------------------------

STREAM_KINDS = ["tcp", "unix", "ssl"]


class StreamPair:
    """A server and one client connection of a kind, made in contexts
    "server" and "client"."""

    def __init__(self, kind, log, client_cls=StreamRec, server_opts={},
                 client_opts={}):
        self.kind = kind
        self.log = log
        self.client_cls = client_cls
        self.server_opts = server_opts
        self.client_opts = client_opts
        self.servers = []

    def _server_proto(self):
        proto = StreamRec(self.log, "server", **self.server_opts)
        self.servers.append(proto)
        return proto

    def _client_proto(self):
        return self.client_cls(self.log, "client", **self.client_opts)

    async def open(self, tmpdir):
        loop = asyncio.get_running_loop()
        ssl = self.kind == "ssl"
        server_kw = {"ssl": test_utils.simple_server_sslcontext()} if ssl \
            else {}
        client_kw = {"ssl": test_utils.simple_client_sslcontext(),
                     "server_hostname": ""} if ssl else {}
        if self.kind == "unix":
            path = os.path.join(tmpdir, "sock")
            self.server = await run_in(
                "server", loop.create_unix_server, self._server_proto, path)
            _, self.client = await run_in(
                "client", loop.create_unix_connection, self._client_proto,
                path)
        else:
            self.server = await run_in(
                "server", loop.create_server, self._server_proto,
                "127.0.0.1", 0, **server_kw)
            addr = self.server.sockets[0].getsockname()
            _, self.client = await run_in(
                "client", loop.create_connection, self._client_proto,
                *addr, **client_kw)
        while not self.servers:
            await asyncio.sleep(0)
        self.peer = self.servers[0]
        await self.peer.until("connection_made")
        return self.client, self.peer

    def end_writes(self, proto):
        """EOF from proto's side (close_notify and close for SSL, which
        has no half-close)."""
        if self.kind == "ssl":
            proto.transport.close()
        else:
            proto.transport.write_eof()

    async def close(self):
        for proto in (self.client, self.peer):
            proto.transport.close()
            await proto.until("connection_lost")
        self.server.close()
        await self.server.wait_closed()


async def stream_eof(tmpdir, kind, client_cls=StreamRec):
    """Data then EOF from the server; the client's eof_received() returns
    None, so its transport closes itself."""
    log = Log()
    pair = StreamPair(kind, log, client_cls)
    client, server = await pair.open(tmpdir)
    call_in("sender", server.transport.write, b"x" * 1000)
    call_in("sender", pair.end_writes, server)
    await client.until("connection_lost")
    await server.until("connection_lost")
    await pair.close()
    return log


async def stream_eof_keep_open(tmpdir, kind, client_cls=StreamRec):
    """EOF the client keeps open (eof_received() returns True), then
    close() from another context."""
    log = Log()
    pair = StreamPair(kind, log, client_cls, client_opts={"keep_open": True})
    client, server = await pair.open(tmpdir)
    call_in("sender", server.transport.write, b"x" * 1000)
    call_in("sender", pair.end_writes, server)
    await client.until("eof_received")
    call_in("closer", client.transport.close)
    await client.until("connection_lost")
    await server.until("connection_lost")
    await pair.close()
    return log


async def stream_pause_resume_reading(tmpdir, kind, client_cls=StreamRec):
    """Reading paused in one context and resumed in another: asyncio's
    reads after that run in the resumer's context."""
    log = Log()
    pair = StreamPair(kind, log, client_cls)
    client, server = await pair.open(tmpdir)
    call_in("pauser", client.transport.pause_reading)
    call_in("sender", server.transport.write, b"x" * 1000)
    await asyncio.sleep(0.05)
    call_in("resumer", client.transport.resume_reading)
    call_in("sender", server.transport.write, b"y" * 1000)
    call_in("sender", pair.end_writes, server)
    await client.until("connection_lost")
    await pair.close()
    return log


def write_until_paused(proto):
    """Writes until the protocol is paused (over TLS, at the earliest by
    the write after the one that paused the TCP transport: SSLProtocol
    passes a write on whole while its transport is not paused)."""
    count = proto.seen.count("pause_writing")
    while proto.seen.count("pause_writing") == count:
        proto.transport.write(b"x" * MiB)


async def flushed(transport, rfd=None):
    """Waits until transport's buffer is empty (reading the pipe rfd), so
    that the next write finds it so in both loops."""
    if rfd is not None:
        os.set_blocking(rfd, False)
    while transport.get_write_buffer_size():
        if rfd is not None:
            try:
                os.read(rfd, MiB)
                continue
            except BlockingIOError:
                pass
        await asyncio.sleep(0.001)


async def stream_write_flow(tmpdir, kind, client_cls=StreamRec):
    """pause_writing()/resume_writing() from a writer in another context,
    then a close() from another context while bytes are still buffered."""
    log = Log()
    pair = StreamPair(kind, log, client_cls, server_opts={"pause": True})
    client, server = await pair.open(tmpdir)
    tr = client.transport
    call_in("writer", tr.set_write_buffer_limits, 64 * 1024)
    call_in("writer", write_until_paused, client)
    call_in("resumer", server.transport.resume_reading)
    await client.until("resume_writing")
    await flushed(tr)
    call_in("writer2", write_until_paused, client)
    call_in("closer", tr.close)
    await client.until("connection_lost")
    await server.until("connection_lost")
    await pair.close()
    return log


async def stream_writelines(tmpdir, kind, client_cls=StreamRec):
    """writelines() from another context while bytes are buffered: from
    3.12 on asyncio's writelines() adds its writer again, in its caller's
    context (3.11's is write(b"".join(...)))."""
    log = Log()
    pair = StreamPair(kind, log, client_cls, server_opts={"pause": True})
    client, server = await pair.open(tmpdir)
    tr = client.transport
    call_in("writer", tr.set_write_buffer_limits, 64 * 1024)
    call_in("writer", write_until_paused, client)
    call_in("writer2", tr.writelines, [b"a" * 100, b"b" * 100])
    call_in("resumer", server.transport.resume_reading)
    await client.until("resume_writing")
    await flushed(tr)
    call_in("closer", tr.close)
    await client.until("connection_lost")
    await server.until("connection_lost")
    await pair.close()
    return log


async def stream_close_idle(tmpdir, kind, client_cls=StreamRec):
    """close() with nothing buffered, and abort(), from other contexts."""
    log = Log()
    pair = StreamPair(kind, log, client_cls)
    client, server = await pair.open(tmpdir)
    call_in("writer", client.transport.write, b"x" * 100)
    await server.until("data_received")
    call_in("closer", client.transport.close)
    await client.until("connection_lost")
    await server.until("connection_lost")
    await pair.close()

    pair = StreamPair(kind, log, client_cls)
    client, server = await pair.open(tmpdir)
    call_in("aborter", client.transport.abort)
    await client.until("connection_lost")
    await server.until("connection_lost")
    await pair.close()
    return log


async def stream_reset(tmpdir, kind, client_cls=StreamRec):
    """The peer resets the connection: a read error, in the reader's
    context."""
    log = Log()
    pair = StreamPair(kind, log, client_cls)
    client, server = await pair.open(tmpdir)
    sock = server.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
    call_in("aborter", server.transport.abort)
    await client.until("connection_lost")
    await pair.close()
    return log


async def stream_start_tls(tmpdir, client_cls=StreamRec):
    """A plain connection upgraded by start_tls() in another context: the
    TLS reads start with a resume_reading() it schedules there."""
    loop = asyncio.get_running_loop()
    log = Log()
    servers = []

    def server_proto():
        servers.append(StreamRec(log, "server"))
        return servers[-1]

    server = await run_in("server", loop.create_server, server_proto,
                          "127.0.0.1", 0,
                          ssl=test_utils.simple_server_sslcontext())
    addr = server.sockets[0].getsockname()
    _, client = await run_in("client", loop.create_connection,
                             lambda: client_cls(log, "client"), *addr)
    tls = await run_in("upgrader", loop.start_tls, client.transport, client,
                       test_utils.simple_client_sslcontext(),
                       server_hostname="")
    await servers[0].until("connection_made")
    call_in("sender", servers[0].transport.write, b"x" * 1000)
    await client.until("buffer_updated" if client_cls is BufferedRec
                       else "data_received")
    call_in("closer", tls.close)
    await client.until("connection_lost")
    await servers[0].until("connection_lost")
    server.close()
    await server.wait_closed()
    return log


async def stream_write_error(tmpdir, kind, client_cls=StreamRec):
    """The peer resets the connection while the client, not reading, has
    bytes buffered: a write error, in the writer's context."""
    log = Log()
    pair = StreamPair(kind, log, client_cls, server_opts={"pause": True})
    client, server = await pair.open(tmpdir)
    call_in("pauser", client.transport.pause_reading)
    call_in("writer", write_until_paused, client)
    sock = server.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
    call_in("aborter", server.transport.abort)
    await client.until("connection_lost")
    await pair.close()
    return log


async def stream_reset_while_writing(tmpdir, kind, client_cls=StreamRec):
    """The peer resets the connection while the client reads and has bytes
    buffered: asyncio's read fails first, in the reader's context."""
    log = Log()
    pair = StreamPair(kind, log, client_cls, server_opts={"pause": True})
    client, server = await pair.open(tmpdir)
    call_in("writer", write_until_paused, client)
    sock = server.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
    call_in("aborter", server.transport.abort)
    await client.until("connection_lost")
    await pair.close()
    return log


async def stream_sendfile(tmpdir, kind, client_cls=StreamRec):
    """loop.sendfile() from another context pauses reading and resumes it
    there."""
    loop = asyncio.get_running_loop()
    log = Log()
    pair = StreamPair(kind, log, client_cls)
    client, server = await pair.open(tmpdir)
    path = os.path.join(tmpdir, "file")
    with open(path, "wb") as f:
        f.write(b"x" * 100000)
    with open(path, "rb") as f:
        await run_in("sender", loop.sendfile, client.transport, f)
    call_in("replier", server.transport.write, b"y" * 100)
    await client.until("buffer_updated" if client_cls is BufferedRec
                       else "data_received")
    await pair.close()
    return log


async def stream_protocol_fails(tmpdir, kind, client_cls=StreamRec):
    """The client's data_received() (buffer_updated()) raises: the error
    is reported and the transport closed from the read's context."""
    loop = asyncio.get_running_loop()
    log = Log()

    def handler(loop, context):
        log.mark("loop", "exception_handler",
                 type(context.get("exception")).__name__)
    loop.set_exception_handler(handler)
    pair = StreamPair(kind, log, client_cls, client_opts={"fail": True})
    client, server = await pair.open(tmpdir)
    call_in("sender", server.transport.write, b"x" * 100)
    await client.until("connection_lost")
    call_in("closer", server.transport.close)
    await server.until("connection_lost")
    pair.server.close()
    await pair.server.wait_closed()
    return log


STREAM_SCENARIOS = [stream_eof, stream_eof_keep_open,
                    stream_pause_resume_reading, stream_write_flow,
                    stream_writelines, stream_close_idle, stream_reset,
                    stream_write_error, stream_reset_while_writing,
                    stream_sendfile, stream_protocol_fails]


# ---- pipes -----------------------------------------------------------------

async def read_pipe(tmpdir):
    loop = asyncio.get_running_loop()
    log = Log()
    rfd, wfd = os.pipe()
    proto = StreamRec(log, "pipe")
    await run_in("client", loop.connect_read_pipe, lambda: proto,
                 open(rfd, "rb", 0))
    os.write(wfd, b"x" * 100)
    await proto.until("data_received")
    call_in("pauser", proto.transport.pause_reading)
    os.write(wfd, b"y" * 100)
    await asyncio.sleep(0.05)
    call_in("resumer", proto.transport.resume_reading)
    await proto.until("data_received", 2)
    os.close(wfd)
    await proto.until("connection_lost")
    return log


async def read_pipe_close(tmpdir):
    loop = asyncio.get_running_loop()
    log = Log()
    rfd, wfd = os.pipe()
    proto = StreamRec(log, "pipe")
    await run_in("client", loop.connect_read_pipe, lambda: proto,
                 open(rfd, "rb", 0))
    call_in("closer", proto.transport.close)
    await proto.until("connection_lost")
    os.close(wfd)
    return log


async def drain(rfd, proto, cb, count=1):
    """Reads the pipe rfd until proto has seen cb count times."""
    os.set_blocking(rfd, False)
    while proto.seen.count(cb) < count:
        try:
            os.read(rfd, MiB)
        except BlockingIOError:
            await asyncio.sleep(0.001)


async def write_pipe_flow(tmpdir):
    loop = asyncio.get_running_loop()
    log = Log()
    rfd, wfd = os.pipe()
    proto = StreamRec(log, "pipe")
    await run_in("client", loop.connect_write_pipe, lambda: proto,
                 open(wfd, "wb", 0))
    tr = proto.transport
    call_in("writer", tr.set_write_buffer_limits, 16 * 1024)
    call_in("writer", tr.write, b"x" * MiB)
    assert proto.seen == ["connection_made", "pause_writing"]
    await drain(rfd, proto, "resume_writing")
    await flushed(tr, rfd)
    call_in("writer2", tr.write, b"y" * MiB)
    call_in("closer", tr.close)
    await drain(rfd, proto, "connection_lost")
    os.close(rfd)
    return log


async def write_pipe_close_idle(tmpdir):
    loop = asyncio.get_running_loop()
    log = Log()
    rfd, wfd = os.pipe()
    proto = StreamRec(log, "pipe")
    await run_in("client", loop.connect_write_pipe, lambda: proto,
                 open(wfd, "wb", 0))
    call_in("writer", proto.transport.write, b"x" * 100)
    call_in("closer", proto.transport.close)
    await proto.until("connection_lost")
    os.close(rfd)
    return log


async def write_pipe_peer_closed(tmpdir):
    loop = asyncio.get_running_loop()
    log = Log()
    rfd, wfd = os.pipe()
    proto = StreamRec(log, "pipe")
    await run_in("client", loop.connect_write_pipe, lambda: proto,
                 open(wfd, "wb", 0))
    call_in("writer", proto.transport.write, b"x" * 100)
    os.close(rfd)
    await proto.until("connection_lost")
    return log


PIPE_SCENARIOS = [read_pipe, read_pipe_close, write_pipe_flow,
                  write_pipe_close_idle, write_pipe_peer_closed]


# ---- datagrams -------------------------------------------------------------

def _closed_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()


async def datagram(tmpdir):
    loop = asyncio.get_running_loop()
    log = Log()
    proto = DatagramRec(log, "udp")
    await run_in("client", loop.create_datagram_endpoint, lambda: proto,
                 local_addr=("127.0.0.1", 0))
    addr = proto.transport.get_extra_info("sockname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"ping", addr)
        await proto.until("datagram_received")
    call_in("pauser", proto.transport.pause_reading)
    call_in("resumer", proto.transport.resume_reading)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"ping", addr)
        await proto.until("datagram_received", 2)
    call_in("closer", proto.transport.close)
    await proto.until("connection_lost")
    return log


async def datagram_errors(tmpdir):
    """A connected endpoint whose peer port is closed: the ICMP error comes
    to error_received() from the read side."""
    loop = asyncio.get_running_loop()
    log = Log()
    proto = DatagramRec(log, "udp")
    await run_in("client", loop.create_datagram_endpoint, lambda: proto,
                 remote_addr=_closed_udp_port())
    call_in("sender", proto.transport.sendto, b"ping")
    await proto.until("error_received")
    # A send that fails at once (EMSGSIZE) reports in the sender's context.
    call_in("sender2", proto.transport.sendto, b"x" * 70000)
    assert proto.seen.count("error_received") == 2
    call_in("closer", proto.transport.close)
    await proto.until("connection_lost")
    return log


async def datagram_abort(tmpdir):
    loop = asyncio.get_running_loop()
    log = Log()
    proto = DatagramRec(log, "udp")
    await run_in("client", loop.create_datagram_endpoint, lambda: proto,
                 local_addr=("127.0.0.1", 0))
    call_in("aborter", proto.transport.abort)
    await proto.until("connection_lost")
    return log


async def datagram_flow(tmpdir):
    """Sends queued while the peer does not read (connected Unix datagram
    sockets): pause_writing() in the sender's context, resume_writing() and
    the connection_lost() of a close() with datagrams queued in the context
    of the sendto() that started the queue."""
    loop = asyncio.get_running_loop()
    log = Log()
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.bind(os.path.join(tmpdir, "peer"))
    peer.setblocking(False)
    proto = DatagramRec(log, "udp")
    await run_in("client", loop.create_datagram_endpoint, lambda: proto,
                 family=socket.AF_UNIX,
                 local_addr=os.path.join(tmpdir, "mine"),
                 remote_addr=os.path.join(tmpdir, "peer"))
    tr = proto.transport
    count = {"sent": 0, "received": 0}

    def send_until(cond, context):
        for _ in range(100000):
            if cond():
                return
            call_in(context, tr.sendto, b"x" * 1024)
            count["sent"] += 1
        raise AssertionError("the peer's queue never filled")

    async def read_until(cond):
        while not cond():
            try:
                peer.recv(4096)
                count["received"] += 1
            except BlockingIOError:
                await asyncio.sleep(0.001)

    # Whether datagrams are queued.  Not get_write_buffer_size(): 3.13.0's
    # never returns to 0 (it adds 8 bytes per datagram and takes back none).
    def queued():
        return len(tr._buffer)

    def all_received():
        return count["received"] == count["sent"]

    call_in("writer", tr.set_write_buffer_limits, 4096)
    for _ in range(2):
        send_until(queued, "writer")
        send_until(lambda: proto.seen[-1] == "pause_writing", "writer2")
        await read_until(lambda: proto.seen[-1] == "resume_writing")
        await read_until(all_received)
    send_until(lambda: count["sent"] > count["received"] + 20, "writer3")
    call_in("closer", tr.close)
    await read_until(lambda: "connection_lost" in proto.seen)
    peer.close()
    return log


DATAGRAM_SCENARIOS = [datagram, datagram_errors, datagram_abort,
                      datagram_flow]


# ---- subprocesses ----------------------------------------------------------

CHILD = ("import os, sys; sys.stdout.write('out'); sys.stdout.flush(); "
         "os.close(1); sys.stdin.read()")
CHILD_WAITS = ("import sys; sys.stdout.write('out'); sys.stdout.flush(); "
               "sys.stdin.read()")


async def subprocess_pipes(tmpdir):
    """stdout closes first, then stdin is closed from another context and
    the child exits."""
    loop = asyncio.get_running_loop()
    log = Log()
    proto = ProcessRec(log, "proc")
    tr, _ = await run_in("client", loop.subprocess_exec, lambda: proto,
                         sys.executable, "-c", CHILD, stderr=None)
    await proto.until("pipe_connection_lost")
    call_in("writer", tr.get_pipe_transport(0).write, b"in")
    call_in("closer", tr.get_pipe_transport(0).close)
    await proto.until("connection_lost")
    tr.close()
    return log


async def subprocess_kill(tmpdir):
    """close() of the subprocess transport from another context."""
    loop = asyncio.get_running_loop()
    log = Log()
    proto = ProcessRec(log, "proc")
    tr, _ = await run_in("client", loop.subprocess_exec, lambda: proto,
                         sys.executable, "-c", CHILD_WAITS, stderr=None)
    await proto.until("pipe_data_received")
    call_in("closer", tr.close)
    await proto.until("connection_lost")
    return log


SUBPROCESS_SCENARIOS = [subprocess_pipes, subprocess_kill]


# ---- running ---------------------------------------------------------------

def record(loop, scenario, *args):
    """The log of scenario(tmpdir, *args) on loop (which it closes)."""
    try:
        with tempfile.TemporaryDirectory() as tmpdir:
            return loop.run_until_complete(
                asyncio.wait_for(scenario(tmpdir, *args), TIMEOUT))
    finally:
        loop.close()


def new_loop(which):
    if which == "asyncio":
        return asyncio.SelectorEventLoop()
    # Imported here, so that the script can print asyncio's record where
    # the package does not import.
    import py_async_lib
    return py_async_lib.new_event_loop()


def side_by_side(scenario, *args):
    theirs = record(new_loop("asyncio"), scenario, *args)
    ours = record(new_loop("ours"), scenario, *args)
    assert ours == theirs


@pytest.mark.parametrize("client_cls", [StreamRec, BufferedRec],
                         ids=["Protocol", "BufferedProtocol"])
@pytest.mark.parametrize("kind", STREAM_KINDS)
@pytest.mark.parametrize("scenario", STREAM_SCENARIOS,
                         ids=lambda f: f.__name__)
def test_stream(scenario, kind, client_cls):
    side_by_side(scenario, kind, client_cls)


@pytest.mark.parametrize("client_cls", [StreamRec, BufferedRec],
                         ids=["Protocol", "BufferedProtocol"])
def test_start_tls(client_cls):
    side_by_side(stream_start_tls, client_cls)


@pytest.mark.parametrize("scenario",
                         PIPE_SCENARIOS + DATAGRAM_SCENARIOS +
                         SUBPROCESS_SCENARIOS,
                         ids=lambda f: f.__name__)
def test_other(scenario):
    side_by_side(scenario)


def _all_cases():
    for scenario in STREAM_SCENARIOS:
        for kind in STREAM_KINDS:
            for cls in (StreamRec, BufferedRec):
                yield (f"{scenario.__name__}[{kind},{cls.__name__}]",
                       scenario, (kind, cls))
    for cls in (StreamRec, BufferedRec):
        yield f"stream_start_tls[{cls.__name__}]", stream_start_tls, (cls,)
    for scenario in PIPE_SCENARIOS + DATAGRAM_SCENARIOS + SUBPROCESS_SCENARIOS:
        yield scenario.__name__, scenario, ()


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    for name, scenario, args in _all_cases():
        try:
            log = record(new_loop(which), scenario, *args)
        except Exception as exc:
            print(f"{name}: FAILED {exc!r}")
            continue
        print(name)
        for entry in log:
            print("   ", entry)
