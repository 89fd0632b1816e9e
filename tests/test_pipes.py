"""Pipe transports: connect_read_pipe() / connect_write_pipe() on pipes,
FIFOs, ptys and sockets, with asyncio's semantics (checks, extra info,
eof/connection_lost order, flow control, peer close, abort, warnings)."""
import asyncio
import gc
import os
import socket
import tty
import warnings

import pytest

MiB = 1024 * 1024


def run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def run_all(loop, *aws, timeout=30):
    async def main():
        return await asyncio.gather(*aws)
    return run(loop, main(), timeout)


def run_until(loop, pred, timeout=10):
    async def wait():
        while not pred():
            await asyncio.sleep(0.005)
    run(loop, wait(), timeout)


class ReadProto(asyncio.Protocol):
    def __init__(self, loop):
        self.events = []
        self.data = bytearray()
        self.done = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.done.set_result(exc)


class WriteProto(asyncio.BaseProtocol):
    def __init__(self, loop):
        self.events = []
        self.done = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc) if exc else None))
        self.done.set_result(exc)


def read_all(fd, pred):
    data = bytearray()
    while not pred(data):
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


# ---- read pipes ---------------------------------------------------------

def test_read_pipe_data_then_eof_then_lost(any_loop):
    loop = any_loop
    r, w = os.pipe()
    pipe = open(r, "rb", buffering=0)
    proto = ReadProto(loop)
    transport, p = run(loop, loop.connect_read_pipe(lambda: proto, pipe))
    assert p is proto and proto.transport is transport
    assert transport.get_extra_info("pipe") is pipe
    assert transport.is_reading() and not transport.is_closing()
    os.write(w, b"hello ")
    os.write(w, b"world")
    run_until(loop, lambda: len(proto.data) == 11)
    os.close(w)
    assert run(loop, proto.done) is None
    assert bytes(proto.data) == b"hello world"
    assert proto.events == ["made", "data", "eof", ("lost", None)]
    assert pipe.closed
    assert transport.is_closing()


def test_read_pipe_large_data(loop):
    r, w = os.pipe()
    proto = ReadProto(loop)
    transport, _ = run(loop, loop.connect_read_pipe(
        lambda: proto, open(r, "rb", buffering=0)))
    data = os.urandom(4 * MiB)

    async def writer():
        wt, wp = await loop.connect_write_pipe(
            lambda: WriteProto(loop), open(w, "wb", buffering=0))
        wt.write(data)
        wt.close()
        await wp.done

    run_all(loop, writer(), proto.done)
    assert proto.data == data


def test_read_pipe_pause_and_resume(loop):
    r, w = os.pipe()
    proto = ReadProto(loop)
    transport, _ = run(loop, loop.connect_read_pipe(
        lambda: proto, open(r, "rb", buffering=0)))
    transport.pause_reading()
    assert not transport.is_reading()
    os.write(w, b"held")
    run(loop, asyncio.sleep(0.05))
    assert proto.data == b""
    transport.resume_reading()
    assert transport.is_reading()
    run_until(loop, lambda: proto.data == b"held")
    transport.close()
    assert run(loop, proto.done) is None
    assert proto.events == ["made", "data", ("lost", None)]
    os.close(w)


def test_read_pipe_close_before_eof(loop):
    r, w = os.pipe()
    proto = ReadProto(loop)
    transport, _ = run(loop, loop.connect_read_pipe(
        lambda: proto, open(r, "rb", buffering=0)))
    transport.close()
    assert transport.is_closing()
    transport.close()   # idempotent
    run(loop, proto.done)
    assert proto.events == ["made", ("lost", None)]
    os.close(w)


def test_read_pipe_with_stream_reader(loop):
    r, w = os.pipe()

    async def main():
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader),
            open(r, "rb", buffering=0))
        os.write(w, b"line 1\nline 2\n")
        os.close(w)
        lines = [await reader.readline(), await reader.readline(),
                 await reader.readline()]
        transport.close()
        return lines

    assert run(loop, main()) == [b"line 1\n", b"line 2\n", b""]


@pytest.mark.parametrize("kind", ["read", "write"])
def test_regular_file_refused_like_asyncio(any_loop, tmp_path, kind):
    path = tmp_path / "regular"
    path.write_bytes(b"x")
    with open(path, "rb" if kind == "read" else "wb") as f:
        connect = (any_loop.connect_read_pipe if kind == "read"
                   else any_loop.connect_write_pipe)
        with pytest.raises(ValueError) as info:
            run(any_loop, connect(asyncio.Protocol, f))
        assert not f.closed
    expected = ("Pipe transport is for pipes/sockets only." if kind == "read"
                else "Pipe transport is only for pipes, sockets and "
                     "character devices")
    assert str(info.value) == expected


# ---- write pipes ----------------------------------------------------------

def test_write_pipe_write_and_close(any_loop):
    loop = any_loop
    r, w = os.pipe()
    pipe = open(w, "wb", buffering=0)
    proto = WriteProto(loop)
    transport, _ = run(loop, loop.connect_write_pipe(lambda: proto, pipe))
    assert transport.get_extra_info("pipe") is pipe
    assert transport.can_write_eof()
    transport.write(b"abc")
    transport.write(bytearray(b"def"))
    transport.write(memoryview(b"ghi"))
    transport.writelines([b"jk", bytearray(b"l")])
    assert read_all(r, lambda d: len(d) >= 12) == b"abcdefghijkl"
    transport.close()
    assert transport.is_closing()
    run(loop, proto.done)
    assert proto.events == ["made", ("lost", None)]
    assert pipe.closed
    assert os.read(r, 10) == b""   # the write end is closed
    os.close(r)


def test_write_pipe_flow_control_and_write_eof_after_drain(loop):
    r, w = os.pipe()
    proto = WriteProto(loop)
    transport, _ = run(loop, loop.connect_write_pipe(
        lambda: proto, open(w, "wb", buffering=0)))
    transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
    data = os.urandom(MiB)
    transport.write(data)
    # The kernel took at most its pipe buffer; the rest waits in C.
    assert transport.get_write_buffer_size() > 64 * 1024
    assert proto.events == ["made", "pause"]
    transport.write_eof()
    assert transport.is_closing()
    transport.write(b"dropped")   # after the end: ignored, like asyncio

    got = bytearray()
    os.set_blocking(r, False)

    async def reader():
        while True:
            try:
                chunk = os.read(r, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                continue
            if not chunk:
                return
            got.extend(chunk)

    run_all(loop, reader(), proto.done)
    assert bytes(got) == data
    assert proto.events == ["made", "pause", "resume", ("lost", None)]
    os.close(r)


def test_write_pipe_notices_reader_closing(any_loop):
    loop = any_loop
    r, w = os.pipe()
    proto = WriteProto(loop)
    transport, _ = run(loop, loop.connect_write_pipe(
        lambda: proto, open(w, "wb", buffering=0)))
    transport.write(b"x")
    os.close(r)
    # Nothing is buffered: a clean end.
    assert run(loop, proto.done) is None
    assert proto.events == ["made", ("lost", None)]


def test_write_pipe_reader_closing_with_buffered_data(any_loop):
    loop = any_loop
    r, w = os.pipe()
    proto = WriteProto(loop)
    transport, _ = run(loop, loop.connect_write_pipe(
        lambda: proto, open(w, "wb", buffering=0)))
    transport.write(b"x" * MiB)
    assert transport.get_write_buffer_size() > 0
    os.close(r)
    exc = run(loop, proto.done)
    assert isinstance(exc, BrokenPipeError)
    assert transport.get_write_buffer_size() == 0
    # Writes after the end are dropped silently.
    transport.write(b"more")


def test_write_pipe_abort_drops_buffer(any_loop):
    loop = any_loop
    r, w = os.pipe()
    pipe = open(w, "wb", buffering=0)
    proto = WriteProto(loop)
    transport, _ = run(loop, loop.connect_write_pipe(lambda: proto, pipe))
    transport.write(b"y" * MiB)
    transport.abort()
    assert transport.is_closing()
    assert run(loop, proto.done) is None
    assert transport.get_write_buffer_size() == 0
    assert pipe.closed
    assert len(read_all(r, lambda d: False)) < MiB
    os.close(r)


def test_write_pipe_type_error(loop):
    r, w = os.pipe()
    proto = WriteProto(loop)
    transport, _ = run(loop, loop.connect_write_pipe(
        lambda: proto, open(w, "wb", buffering=0)))
    with pytest.raises(TypeError):
        transport.write("text")
    transport.close()
    run(loop, proto.done)
    os.close(r)


# ---- FIFOs, ptys, sockets --------------------------------------------------

def test_fifo_both_ways(loop, tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    rproto, wproto = ReadProto(loop), WriteProto(loop)

    async def main():
        await loop.connect_read_pipe(lambda: rproto, open(rfd, "rb", 0))
        wt, _ = await loop.connect_write_pipe(lambda: wproto,
                                              open(wfd, "wb", 0))
        wt.write(b"through the fifo")
        wt.close()
        await wproto.done
        await rproto.done

    run(loop, main())
    assert rproto.data == b"through the fifo"
    assert rproto.events == ["made", "data", "eof", ("lost", None)]


def test_pty_read_and_write(loop):
    master, slave = os.openpty()
    tty.setraw(slave)
    write_slave = os.dup(slave)
    rproto, wproto = ReadProto(loop), WriteProto(loop)
    rt, _ = run(loop, loop.connect_read_pipe(lambda: rproto,
                                             open(slave, "rb", 0)))
    wt, _ = run(loop, loop.connect_write_pipe(lambda: wproto,
                                              open(write_slave, "wb", 0)))
    wt.write(b"to master")
    assert read_all(master, lambda d: len(d) >= 9) == b"to master"
    os.write(master, b"from master")
    run_until(loop, lambda: rproto.data == b"from master")
    rt.close()
    wt.close()
    run_all(loop, rproto.done, wproto.done)
    os.close(master)


def test_pty_master_read_gives_eio_quietly(loop):
    # The master sees EIO once the slave side is closed: the transport ends
    # with that error, without calling the exception handler.
    master, slave = os.openpty()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    proto = ReadProto(loop)
    run(loop, loop.connect_read_pipe(lambda: proto, open(master, "rb", 0)))
    os.write(slave, b"bye")
    run_until(loop, lambda: len(proto.data) >= 3)
    os.close(slave)
    exc = run(loop, proto.done)
    assert isinstance(exc, OSError) and exc.errno == 5   # EIO
    assert errors == []


def test_sockets_passed_as_pipes(loop):
    a, b = socket.socketpair()
    rproto, wproto = ReadProto(loop), WriteProto(loop)
    rt, _ = run(loop, loop.connect_read_pipe(lambda: rproto,
                                             open(a.detach(), "rb", 0)))
    wt, _ = run(loop, loop.connect_write_pipe(lambda: wproto,
                                              open(b.detach(), "wb", 0)))
    # A socket is its own peer here: what the write pipe writes, the read
    # pipe reads.
    wt.write(b"loop")
    run_until(loop, lambda: rproto.data == b"loop")
    rt.close()
    # The write pipe sees its peer go away.
    assert run(loop, wproto.done) is None
    run(loop, rproto.done)


def test_write_pipe_socket_peer_close_matches_asyncio(any_loop):
    loop = any_loop
    rsock, wsock = socket.socketpair()
    proto = WriteProto(loop)
    transport, _ = run(loop, loop.connect_write_pipe(
        lambda: proto, open(wsock.detach(), "wb", 0)))
    transport.write(b"1")
    assert rsock.recv(10) == b"1"
    rsock.close()
    assert run(loop, proto.done) is None
    assert proto.events == ["made", ("lost", None)]


# ---- leftovers --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["read", "write"])
def test_unclosed_pipe_transport_warns(loop, kind):
    r, w = os.pipe()
    keep = w if kind == "read" else r
    pipe = open(r if kind == "read" else w, "rb" if kind == "read" else "wb",
                buffering=0)
    connect = (loop.connect_read_pipe if kind == "read"
               else loop.connect_write_pipe)
    transport, _ = run(loop, connect(asyncio.Protocol, pipe))
    assert "fd=" in repr(transport)
    # While the loop lives it holds the transport (as asyncio's selector
    # does); once it is closed, dropping the transport warns and closes
    # the pipe.
    loop.close()
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del transport
        gc.collect()
    assert pipe.closed
    os.close(keep)


def test_repr_after_loop_close_says_open(loop):
    r, w = os.pipe()
    rpipe, wpipe = open(r, "rb", 0), open(w, "wb", 0)
    rt, _ = run(loop, loop.connect_read_pipe(asyncio.Protocol, rpipe))
    wt, _ = run(loop, loop.connect_write_pipe(asyncio.BaseProtocol, wpipe))
    assert "polling" in repr(rt)
    assert "idle" in repr(wt) and "bufsize=0" in repr(wt)
    loop.close()
    assert "open" in repr(rt)
    assert "open" in repr(wt)
    rpipe.close()
    wpipe.close()
    rt._pipe = None
    wt._pipe = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del rt, wt
        gc.collect()
