"""TCP and Unix stream transports, servers, streams and sock_*() methods."""
import asyncio
import errno
import gc
import os
import resource
import socket
import subprocess
import sys

import pytest

from py_async_lib.transports import SocketTransport

from test.test_asyncio import utils as test_utils


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Collect(asyncio.Protocol):
    def __init__(self, loop):
        self.data = bytearray()
        self.done = loop.create_future()
        self.events = []

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        if not self.done.done():
            self.done.set_result(exc)


async def echo_server(loop, **kw):
    server = await loop.create_server(Echo, "127.0.0.1", 0, **kw)
    return server, server.sockets[0].getsockname()


async def connect_to_raw_peer(loop, protocol_factory):
    """One of our transports connected to a plain blocking socket, the peer:
    (transport, protocol, peer)."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        tr, pr = await loop.create_connection(protocol_factory,
                                              *lsock.getsockname())
        peer, _ = lsock.accept()
    return tr, pr, peer


def reset(sock):
    """Closes sock with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def test_tcp_echo_protocol(loop):
    async def main():
        server, addr = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Collect(loop), *addr)
        assert isinstance(tr, SocketTransport)
        payload = os.urandom(300_000)
        tr.write(payload[:1000])
        tr.writelines([payload[1000:5000], bytearray(payload[5000:100_000]),
                       memoryview(payload)[100_000:]])
        while len(pr.data) < len(payload):
            await asyncio.sleep(0.005)
        assert bytes(pr.data) == payload
        assert pr.events[0] == "made"
        tr.close()
        assert tr.is_closing()
        tr.close()  # harmless twice
        assert await pr.done is None
        server.close()
        await server.wait_closed()

    loop.run_until_complete(asyncio.wait_for(main(), 30))


def test_get_extra_info_keys(loop):
    async def main():
        server, addr = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Collect(loop), *addr)
        sock = tr.get_extra_info("socket")
        assert sock.fileno() >= 0
        assert tr.get_extra_info("peername") == addr
        assert tr.get_extra_info("sockname") == sock.getsockname()
        assert tr.get_extra_info("nonexistent", "dflt") == "dflt"
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        tr.close()
        await pr.done
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_streams_echo(loop):
    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(*addr)
        payload = os.urandom(1 << 20)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        assert writer.can_write_eof()
        got = await reader.read()
        assert got == payload
        writer.close()
        await writer.wait_closed()
        async with server:
            pass
        await server.wait_closed()
        assert not server.is_serving()

    loop.run_until_complete(asyncio.wait_for(main(), 30))


def test_unix_streams(loop, tmp_path):
    path = str(tmp_path / "sock")

    async def handle(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_unix_server(handle, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"hello\n")
        assert await reader.readline() == b"HELLO\n"
        assert writer.get_extra_info("peername") == path
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_sock_methods_echo(loop):
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        lsock.setblocking(False)
        csock = socket.socket()
        csock.setblocking(False)
        conn_task = asyncio.ensure_future(loop.sock_accept(lsock))
        await loop.sock_connect(csock, lsock.getsockname())
        conn, _ = await conn_task
        conn.setblocking(False)
        await loop.sock_sendall(csock, b"x" * 200_000)
        got = bytearray()
        buf = bytearray(4096)
        while len(got) < 200_000:
            n = await loop.sock_recv_into(conn, buf)
            got += buf[:n]
        await loop.sock_sendall(conn, b"pong")
        assert await loop.sock_recv(csock, 10) == b"pong"
        for s in (csock, conn, lsock):
            s.close()

    loop.run_until_complete(asyncio.wait_for(main(), 30))


def test_pause_and_resume_reading(loop):
    async def main():
        server, addr = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Collect(loop), *addr)
        assert tr.is_reading()
        tr.pause_reading()
        tr.pause_reading()
        assert not tr.is_reading()
        tr.write(b"ping")
        await asyncio.sleep(0.05)
        assert pr.data == b""
        tr.resume_reading()
        assert tr.is_reading()
        while pr.data != b"ping":
            await asyncio.sleep(0.005)
        tr.close()
        await pr.done
        server.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_write_eof_reaches_peer(loop):
    async def main():
        got = loop.create_future()

        peers = []

        class Peer(Collect):
            def connection_made(self, transport):
                super().connection_made(transport)
                peers.append(self)

            def eof_received(self):
                got.set_result(bytes(self.data))
                return True

        server = await loop.create_server(lambda: Peer(loop), "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        tr, pr = await loop.create_connection(lambda: Collect(loop), *addr)
        assert tr.can_write_eof()
        tr.write(b"last words")
        tr.write_eof()
        tr.write_eof()
        with pytest.raises(RuntimeError):
            tr.write(b"after eof")
        assert await got == b"last words"
        tr.close()
        await pr.done
        # The peer kept its end open after EOF (eof_received() said True).
        peers[0].transport.close()
        await peers[0].done
        server.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_buffered_protocol(loop):
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(1000)
            self.got = bytearray()
            self.done = loop.create_future()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.got += self.buf[:nbytes]

        def eof_received(self):
            self.done.set_result(bytes(self.got))

    async def main():
        async def handle(reader, writer):
            writer.write(b"y" * 100_000)
            writer.write_eof()
            await writer.drain()
            # Python 3.12's wait_closed() below waits for this connection.
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        tr, pr = await loop.create_connection(Buffered, *addr)
        assert await pr.done == b"y" * 100_000
        tr.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_write_buffer_limits_and_backpressure_peer_never_reads(loop):
    """Writing 1 GiB to a peer that never reads, honouring pause_writing:
    what is buffered stays near the high-water mark, memory does not grow."""
    chunk = b"z" * (256 * 1024)
    total = 1 << 30

    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        peer = None

        class Writer(Collect):
            def __init__(self):
                super().__init__(loop)
                self.can_write = asyncio.Event()
                self.can_write.set()

            def pause_writing(self):
                super().pause_writing()
                self.can_write.clear()

            def resume_writing(self):
                super().resume_writing()
                self.can_write.set()

        tr, pr = await loop.create_connection(Writer, *lsock.getsockname())
        peer, _ = lsock.accept()  # accepted, never read from
        tr.set_write_buffer_limits(high=128 * 1024, low=32 * 1024)
        assert tr.get_write_buffer_limits() == (32 * 1024, 128 * 1024)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        written = 0
        max_buffered = 0

        async def produce():
            nonlocal written, max_buffered
            while written < total:
                await pr.can_write.wait()
                tr.write(chunk)
                written += len(chunk)
                max_buffered = max(max_buffered, tr.get_write_buffer_size())

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(produce(), 1.0)
        assert "pause" in pr.events
        assert written < total
        # One chunk may land on top of a buffer just under the mark.
        assert max_buffered <= 128 * 1024 + len(chunk)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert (rss1 - rss0) * 1024 < 64 * 1024 * 1024
        # Once the peer reads, writing resumes.
        peer.setblocking(False)
        drained = 0
        while "resume" not in pr.events:
            try:
                drained += len(peer.recv(1 << 20))
            except BlockingIOError:
                await asyncio.sleep(0.001)
        tr.abort()
        await pr.done
        peer.close()
        lsock.close()

    loop.run_until_complete(asyncio.wait_for(main(), 30))


def test_empty_writes_change_nothing(any_loop):
    """write(b"") sends nothing and never pauses or resumes the protocol:
    with nothing buffered, with a buffer over the high-water mark (the
    protocol paused already) and under it, as asyncio's."""
    loop = any_loop

    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        tr, pr = await loop.create_connection(lambda: Collect(loop),
                                              *lsock.getsockname())
        peer, _ = lsock.accept()   # not read until the protocol is paused
        tr.write(b"")
        assert tr.get_write_buffer_size() == 0
        tr.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        while "pause" not in pr.events:
            tr.write(b"q" * 65536)
        buffered = tr.get_write_buffer_size()
        tr.write(b"")
        tr.write(bytearray())
        assert tr.get_write_buffer_size() == buffered
        assert pr.events == ["made", "pause"]
        # Once the peer reads the protocol resumes; an empty write then
        # does not pause it again.
        peer.setblocking(False)
        while "resume" not in pr.events:
            try:
                peer.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.001)
        buffered = tr.get_write_buffer_size()
        tr.write(b"")
        assert tr.get_write_buffer_size() == buffered
        assert pr.events == ["made", "pause", "resume"]
        tr.abort()
        await pr.done
        peer.close()
        lsock.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_write_type_errors_and_write_after_close(loop, caplog):
    async def main():
        server, addr = await echo_server(loop)
        tr, pr = await loop.create_connection(lambda: Collect(loop), *addr)
        with pytest.raises(TypeError):
            tr.write("str")
        with pytest.raises(TypeError):
            tr.write(12)
        with pytest.raises(TypeError):
            tr.writelines([b"ok", "str"])
        tr.close()
        await pr.done
        for _ in range(10):
            tr.write(b"after close")  # asyncio: counted, then a warning
        tr.close()
        tr.abort()
        server.close()

    loop.run_until_complete(main())
    assert "socket.send() raised exception." in caplog.text


def test_connect_refused(any_loop):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionRefusedError):
        any_loop.run_until_complete(
            any_loop.create_connection(asyncio.Protocol, "127.0.0.1", port))


def test_peer_reset_reaches_connection_lost(loop):
    async def main():
        tr, pr, peer = await connect_to_raw_peer(
            loop, lambda: Collect(loop))
        reset(peer)
        exc = await pr.done
        assert isinstance(exc, (ConnectionResetError, type(None)))
        if exc is None:
            assert "eof" in pr.events

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_write_to_reset_peer_reports_error(loop):
    async def main():
        tr, pr, peer = await connect_to_raw_peer(
            loop, lambda: Collect(loop))
        tr.pause_reading()
        reset(peer)
        await asyncio.sleep(0.05)
        for _ in range(50):
            if tr.is_closing():
                break
            tr.write(b"x" * 65536)
            await asyncio.sleep(0.01)
        exc = await pr.done
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_server_api(loop):
    async def main():
        server = await loop.create_server(Echo, ["127.0.0.1", "localhost"], 0,
                                          start_serving=False,
                                          reuse_address=True, backlog=10)
        assert server.get_loop() is loop
        assert not server.is_serving()
        await server.start_serving()
        assert server.is_serving()
        assert len(server.sockets) >= 1
        server.close()
        await server.wait_closed()
        assert not server.is_serving()

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = await loop.create_server(Echo, sock=sock)
        assert server.sockets[0].getsockname() == sock.getsockname()
        serve = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.01)
        serve.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serve
        assert not server.is_serving()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_connect_accepted_socket(loop):
    async def main():
        a, b = socket.socketpair()
        tr, pr = await loop.connect_accepted_socket(lambda: Collect(loop), a)
        b.sendall(b"hello")
        while pr.data != b"hello":
            await asyncio.sleep(0.005)
        tr.close()
        await pr.done
        b.close()

    loop.run_until_complete(main())


def test_loop_sendfile_zero_copy(loop, tmp_path):
    path = tmp_path / "data"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(payload)

    async def main():
        done = loop.create_future()

        class Sink(Collect):
            def eof_received(self):
                done.set_result(bytes(self.data))

        server = await loop.create_server(lambda: Sink(loop), "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        tr, pr = await loop.create_connection(lambda: Collect(loop), *addr)
        tr.write(b"head:")
        with open(path, "rb") as f:
            sent = await loop.sendfile(tr, f)
        assert sent == len(payload)
        tr.write(b":tail")
        tr.write_eof()
        assert await done == b"head:" + payload + b":tail"
        tr.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(asyncio.wait_for(main(), 30))


def test_tls_echo_and_start_tls(loop):
    server_ctx = test_utils.simple_server_sslcontext()
    client_ctx = test_utils.simple_client_sslcontext()

    async def handle(reader, writer):
        data = await reader.readline()
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0,
                                            ssl=server_ctx)
        addr = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(
            *addr, ssl=client_ctx, server_hostname="",
            ssl_handshake_timeout=10)
        assert writer.get_extra_info("sslcontext") is client_ctx
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"abc\n")
        assert await reader.readline() == b"ABC\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

        # start_tls upgrades a plain connection.
        tls_server = await asyncio.start_server(handle, "127.0.0.1", 0,
                                                ssl=server_ctx)
        addr = tls_server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(*addr)
        await writer.start_tls(client_ctx, server_hostname="")
        writer.write(b"xyz\n")
        assert await reader.readline() == b"XYZ\n"
        writer.close()
        tls_server.close()
        await tls_server.wait_closed()

    loop.run_until_complete(asyncio.wait_for(main(), 30))


def test_no_fd_survives_many_connections(loop):
    before = len(os.listdir("/proc/self/fd"))

    async def main():
        server, addr = await echo_server(loop)
        for _ in range(200):
            reader, writer = await asyncio.open_connection(*addr)
            writer.write(b"x")
            await reader.readexactly(1)
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before


def test_unclosed_transport_warns(loop):
    async def main():
        a, b = socket.socketpair()
        tr, pr = await loop.connect_accepted_socket(lambda: Collect(loop), a)
        await asyncio.sleep(0)
        return tr, b

    tr, b = loop.run_until_complete(main())
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        tr.__del__()
    b.close()


def test_sock_datagram_methods(loop):
    async def main():
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        await loop.sock_sendto(a, b"one", b.getsockname())
        data, addr = await loop.sock_recvfrom(b, 100)
        assert (data, addr) == (b"one", a.getsockname())
        await loop.sock_sendto(a, b"two", b.getsockname())
        buf = bytearray(100)
        n, addr = await loop.sock_recvfrom_into(b, buf)
        assert (bytes(buf[:n]), addr) == (b"two", a.getsockname())
        a.close()
        b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_sock_sendfile(loop, tmp_path):
    path = tmp_path / "f"
    payload = os.urandom(500_000)
    path.write_bytes(payload)

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with open(path, "rb") as f:
            send = asyncio.ensure_future(loop.sock_sendfile(a, f, 1000, 200_000))
            got = bytearray()
            while len(got) < 200_000:
                got += await loop.sock_recv(b, 65536)
            assert await send == 200_000
            assert f.tell() == 201_000
        assert bytes(got) == payload[1000:201_000]
        a.close()
        b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def _full_socketpair():
    """A non-blocking socket pair whose first socket cannot send more."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        while True:
            a.send(b"x" * 65536)
    except BlockingIOError:
        pass
    return a, b


def _drain(sock):
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        pass


def test_sock_sendfile_cancelled_leaves_no_writer(any_loop, tmp_path):
    # CPython checks this through the selector loop's _selector
    # (test_unix_events.SelectorEventLoopUnixSockSendfileTests); this
    # asks remove_writer(), which says whether a writer was registered.
    loop = any_loop
    path = tmp_path / "f"
    path.write_bytes(b"y" * 100_000)

    async def main():
        a, b = _full_socketpair()
        with open(path, "rb") as f:
            send = asyncio.ensure_future(loop.sock_sendfile(a, f))
            for _ in range(3):
                await asyncio.sleep(0)
            assert not send.done()
            send.cancel()
            with pytest.raises(asyncio.CancelledError):
                await send
        assert loop.remove_writer(a) is False
        a.close()
        b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_sock_sendfile_failing_leaves_no_writer(any_loop, tmp_path,
                                                monkeypatch):
    loop = any_loop
    path = tmp_path / "f"
    path.write_bytes(b"y" * 100_000)
    error = OSError(errno.EIO, "injected")
    calls = []

    def sendfile(out_fd, in_fd, offset, count):
        calls.append(offset)
        if len(calls) == 1:
            return os.write(out_fd, b"y")  # one byte sent, then it fails
        raise error

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with open(path, "rb") as f:
            monkeypatch.setattr(os, "sendfile", sendfile)
            with pytest.raises(OSError) as info:
                await loop.sock_sendfile(a, f, fallback=False)
            monkeypatch.undo()
            assert info.value is error
            assert f.tell() == 1
        assert loop.remove_writer(a) is False
        _drain(b)
        a.close()
        b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_create_connection_options(loop):
    async def main():
        server, addr = await echo_server(loop)
        local = socket.socket()
        local.bind(("127.0.0.1", 0))
        local_addr = local.getsockname()
        local.close()
        tr, pr = await loop.create_connection(
            lambda: Collect(loop), "localhost", addr[1],
            family=socket.AF_INET, local_addr=local_addr,
            happy_eyeballs_delay=0.05, interleave=1)
        assert tr.get_extra_info("sockname") == local_addr
        tr.close()
        await pr.done
        sock = socket.create_connection(addr)
        tr, pr = await loop.create_connection(lambda: Collect(loop), sock=sock)
        assert tr.get_extra_info("socket").fileno() == sock.fileno()
        tr.write(b"hi")
        while pr.data != b"hi":
            await asyncio.sleep(0.005)
        tr.close()
        await pr.done
        with pytest.raises(ValueError):
            await loop.create_connection(Collect, "127.0.0.1", addr[1],
                                         sock=socket.socket())
        server.close()
        await server.wait_closed()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_create_server_options(loop):
    async def main():
        server = await loop.create_server(
            Echo, "127.0.0.1", 0, family=socket.AF_INET,
            flags=socket.AI_PASSIVE, reuse_port=True)
        sock = server.sockets[0]
        assert sock.family == socket.AF_INET
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        port = sock.getsockname()[1]
        # A second server on the same port works thanks to SO_REUSEPORT.
        server2 = await loop.create_server(Echo, "127.0.0.1", port,
                                           reuse_port=True)
        for s in (server, server2):
            s.close()
            await s.wait_closed()

    loop.run_until_complete(main())


def test_loop_start_tls_protocol_api(loop):
    server_ctx = test_utils.simple_server_sslcontext()
    client_ctx = test_utils.simple_client_sslcontext()

    async def main():
        upgraded = loop.create_future()

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                if data == b"STARTTLS":
                    async def upgrade():
                        tls = await loop.start_tls(
                            self.transport, self, server_ctx,
                            server_side=True)
                        self.transport = tls
                    upgraded.set_result(asyncio.ensure_future(upgrade()))
                    self.transport.write(b"OK")
                else:
                    self.transport.write(data.upper())

        server = await loop.create_server(Server, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        tr, pr = await loop.create_connection(lambda: Collect(loop), *addr)
        tr.write(b"STARTTLS")
        while pr.data != b"OK":
            await asyncio.sleep(0.005)
        pr.data.clear()
        tls = await loop.start_tls(tr, pr, client_ctx, server_hostname="")
        await (await upgraded)
        tls.write(b"secret")
        while pr.data != b"SECRET":
            await asyncio.sleep(0.005)
        assert tls.get_extra_info("sslcontext") is client_ctx
        tls.close()
        await pr.done
        server.close()
        await server.wait_closed()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_close_waits_for_data_written_by_resume_writing(loop):
    """close() while paused: the bytes the protocol writes from
    resume_writing() -- in the same iteration that emptied the buffer --
    still reach the peer before the connection closes."""
    async def main():
        lsock = socket.socket()
        # Small kernel buffers: flushes often empty the out-buffer and the
        # next write only half goes out.
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        backlog = [b"y" * 65536 for _ in range(64)]
        csock = socket.socket()
        csock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        csock.connect(lsock.getsockname())

        class Backlogged(Collect):
            def pause_writing(self):
                super().pause_writing()
                self.paused = True

            def resume_writing(self):
                super().resume_writing()
                self.paused = False
                while backlog and not self.paused:
                    self.transport.write(backlog.pop())

        tr, pr = await loop.create_connection(lambda: Backlogged(loop),
                                              sock=csock)
        pr.paused = False
        while backlog and not pr.paused:
            tr.write(backlog.pop())
        peer, _ = lsock.accept()
        peer.setblocking(False)
        tr.close()   # with most of the backlog still in the protocol
        total = 0
        while True:
            try:
                chunk = peer.recv(4096)
            except BlockingIOError:
                await asyncio.sleep(0)
                continue
            if not chunk:
                break
            total += len(chunk)
        assert total == 64 * 65536
        await pr.done
        peer.close()
        lsock.close()

    loop.run_until_complete(asyncio.wait_for(main(), 30))


def _pattern(n, start=0):
    return bytes((start + i) % 251 for i in range(n))


def test_large_reads_are_the_transports_then_small_ones_the_loops(loop):
    # Reads of 16 KiB and more switch a stream to reads by the transport
    # (LOOP_EV_READABLE, recv in Python); small ones switch it back.  The
    # bytes, their order and the end of the stream are the same either way.
    big = _pattern(1 << 20)

    async def main():
        tr, pr, peer = await connect_to_raw_peer(
            loop, lambda: Collect(loop))
        peer.setblocking(False)
        assert not tr._by_caller
        await loop.sock_sendall(peer, big)
        while len(pr.data) < len(big):
            await asyncio.sleep(0.001)
        assert tr._by_caller
        for i in range(20):
            await loop.sock_sendall(peer, b"small %d;" % i)
            await asyncio.sleep(0.002)
        expected = big + b"".join(b"small %d;" % i for i in range(20))
        while len(pr.data) < len(expected):
            await asyncio.sleep(0.001)
        assert not tr._by_caller
        assert pr.data == expected
        await loop.sock_sendall(peer, big)   # and large again, then EOF
        peer.shutdown(socket.SHUT_WR)
        await pr.done
        assert pr.data == expected + big
        assert pr.events == ["made", "eof", ("lost", None)]
        peer.close()

    loop.run_until_complete(asyncio.wait_for(main(), 20))


def test_transport_reads_pause_resume_and_reset(loop):
    async def main():
        tr, pr, peer = await connect_to_raw_peer(
            loop, lambda: Collect(loop))
        peer.setblocking(False)
        await loop.sock_sendall(peer, b"a" * 65536)
        while len(pr.data) < 65536:
            await asyncio.sleep(0.001)
        assert tr._by_caller
        tr.pause_reading()
        await loop.sock_sendall(peer, b"b" * 65536)
        await asyncio.sleep(0.05)
        assert len(pr.data) == 65536
        tr.resume_reading()
        while len(pr.data) < 2 * 65536:
            await asyncio.sleep(0.001)
        assert pr.data == b"a" * 65536 + b"b" * 65536
        assert tr._by_caller
        reset(peer)
        exc = await pr.done
        assert isinstance(exc, ConnectionResetError)
        assert tr.is_closing()

    loop.run_until_complete(asyncio.wait_for(main(), 20))


def test_buffered_protocol_reads_into_its_buffer(loop):
    # A BufferedProtocol's stream is read by the transport straight into
    # get_buffer()'s buffer (asyncio's recv_into); errors from the protocol
    # are fatal, EOF ends the stream.
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self, fail=None):
            self.buf = bytearray(7)
            self.got = bytearray()
            self.fail = fail
            self.done = loop.create_future()
            self.events = []

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            if self.fail == "get_buffer":
                raise ZeroDivisionError
            if self.fail == "empty":
                return bytearray()
            return self.buf

        def buffer_updated(self, nbytes):
            if self.fail == "buffer_updated":
                raise ZeroDivisionError
            self.got += self.buf[:nbytes]

        def eof_received(self):
            self.events.append("eof")

        def connection_lost(self, exc):
            self.done.set_result(exc)

    async def main():
        tr, pr, peer = await connect_to_raw_peer(loop, Buffered)
        assert tr._by_caller
        peer.sendall(_pattern(50_000))
        peer.shutdown(socket.SHUT_WR)
        assert await pr.done is None
        assert pr.got == _pattern(50_000)
        assert pr.events == ["eof"]
        peer.close()

        errors = []
        loop.set_exception_handler(lambda loop, ctx: errors.append(ctx))
        for fail, exc_type in [("get_buffer", ZeroDivisionError),
                               ("empty", RuntimeError),
                               ("buffer_updated", ZeroDivisionError)]:
            tr, pr, peer = await connect_to_raw_peer(
                loop, lambda: Buffered(fail))
            peer.sendall(b"data")
            assert isinstance(await pr.done, exc_type)
            assert "protocol." + ("get_buffer" if fail == "empty" else fail) \
                in errors[-1]["message"]
            peer.close()
        loop.set_exception_handler(None)

    loop.run_until_complete(asyncio.wait_for(main(), 20))


def test_protocol_switch_between_buffered_and_plain(loop):
    # set_protocol() to a BufferedProtocol and back (what start_tls does):
    # every byte arrives once, in order.
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self, sink):
            self.buf = bytearray(4096)
            self.sink = sink

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.sink += self.buf[:nbytes]

    async def main():
        tr, plain, peer = await connect_to_raw_peer(
            loop, lambda: Collect(loop))
        peer.setblocking(False)
        sent = b""
        for i in range(6):
            chunk = _pattern(30_000 if i % 2 else 100, i)
            proto = Buffered(plain.data) if i % 2 else plain
            tr.set_protocol(proto)
            assert tr._by_caller == (i % 2 == 1)
            await loop.sock_sendall(peer, chunk)
            sent += chunk
            while len(plain.data) < len(sent):
                await asyncio.sleep(0.001)
        assert plain.data == sent
        tr.set_protocol(plain)
        tr.close()
        await plain.done
        peer.close()

    loop.run_until_complete(asyncio.wait_for(main(), 20))


def _direct_read_matches_state(tr):
    """StreamTransport._direct_read is set exactly in the plain read state
    (see _read_state_changed)."""
    plain = (tr._pending is None and not tr._paused and not tr._closing
             and tr._fd >= 0 and not tr._buffered)
    if plain:
        return tr._direct_read is tr._read_context
    return tr._direct_read is None


def test_direct_read_follows_the_read_state(loop):
    # The loop hands small reads straight to data_received() through
    # _direct_read: every change of the read state has to reach it.
    class Buffered(asyncio.BufferedProtocol):
        def get_buffer(self, sizehint):
            return bytearray(100)

        def buffer_updated(self, nbytes):
            pass

    async def main():
        tr, pr, peer = await connect_to_raw_peer(loop, lambda: Collect(loop))
        states = []

        def check(what):
            states.append((what, tr._direct_read is not None))
            assert _direct_read_matches_state(tr), what

        check("open")
        tr.pause_reading()
        check("paused")
        peer.sendall(b"while paused")
        await asyncio.sleep(0.05)
        check("paused, bytes pending")
        tr.resume_reading()
        check("resumed")
        while pr.data != b"while paused":
            await asyncio.sleep(0.001)
        check("delivered")
        tr.set_protocol(Buffered())
        check("buffered")
        tr.set_protocol(pr)
        check("plain again")
        peer.sendall(b"more")
        while pr.data != b"while paused" + b"more":
            await asyncio.sleep(0.001)
        check("read")
        tr.close()
        check("closed")
        await pr.done
        check("lost")
        peer.close()
        return states

    states = loop.run_until_complete(asyncio.wait_for(main(), 10))
    assert [direct for _, direct in states] == [
        True, False, False, True, True, False, True, True, False, False]


def test_write_direct_follows_the_write_state(loop):
    # write() hands bytes straight to loop_write() while _write_direct is
    # set: every change that refuses or drops writes has to reach it.
    def expected(tr):
        return not (tr._eof or tr._empty_waiter is not None or tr._conn_lost
                    or tr._fd < 0)

    async def main():
        states = []

        def check(tr, what):
            assert tr._write_direct == expected(tr), what
            states.append(tr._write_direct)

        tr, pr, peer = await connect_to_raw_peer(loop, lambda: Collect(loop))
        check(tr, "open")
        waiter = tr._make_empty_waiter()
        check(tr, "sendfile waits")
        await waiter
        tr._reset_empty_waiter()
        check(tr, "sendfile done")
        tr.write_eof()
        check(tr, "eof")
        with pytest.raises(RuntimeError):
            tr.write(b"x")
        tr.close()
        await pr.done
        check(tr, "lost")
        peer.close()

        tr, pr, peer = await connect_to_raw_peer(loop, lambda: Collect(loop))
        tr.close()
        check(tr, "closed, buffer empty")
        tr.write(b"dropped")
        check(tr, "dropped write")
        await pr.done
        peer.close()

        tr, pr, peer = await connect_to_raw_peer(loop, lambda: Collect(loop))
        tr.abort()
        check(tr, "aborted")
        await pr.done
        peer.close()
        return states

    states = loop.run_until_complete(asyncio.wait_for(main(), 10))
    assert states == [True, False, True, False, False, False, False, False]


def test_data_received_looked_up_per_read(any_loop):
    # asyncio calls protocol.data_received() as it finds it at each read: a
    # replaced one gets the next bytes.
    loop = any_loop

    async def main():
        tr, pr, peer = await connect_to_raw_peer(loop, lambda: Collect(loop))
        got = []
        peer.sendall(b"one")
        while pr.data != b"one":
            await asyncio.sleep(0.001)
        pr.data_received = got.append
        peer.sendall(b"two")
        while not got:
            await asyncio.sleep(0.001)
        tr.close()
        await pr.done
        peer.close()
        return pr.data, got

    assert loop.run_until_complete(asyncio.wait_for(main(), 10)) == (
        b"one", [b"two"])


def test_keyboard_interrupt_in_data_received_loses_no_read(any_loop):
    # KeyboardInterrupt from data_received() leaves run_forever(); the reads
    # that came with it in the same poll are delivered when the loop runs
    # again, as asyncio keeps their handles queued.
    loop = any_loop
    got = []

    class Raiser(asyncio.Protocol):
        def data_received(self, data):
            if data == b"raise":
                raise KeyboardInterrupt
            got.append(data)

    server = loop.run_until_complete(
        loop.create_server(Raiser, "127.0.0.1", 0))
    addr = server.sockets[0].getsockname()
    clients = [socket.create_connection(addr) for _ in range(3)]
    loop.run_until_complete(asyncio.sleep(0.05))   # all accepted
    for c, data in zip(clients, (b"ok1", b"raise", b"ok2")):
        c.sendall(data)
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(asyncio.sleep(0.5))
    loop.run_until_complete(asyncio.sleep(0.05))
    assert sorted(got) == [b"ok1", b"ok2"]
    for c in clients:
        c.close()
    server.close()
    loop.run_until_complete(server.wait_closed())


def test_sock_recv_waits_clean_up_their_reader(any_loop):
    # A sock_recv()/sock_recv_into() that has to wait registers a reader; it
    # is gone once the data came, once the wait is cancelled, or once the
    # read failed -- and a reader that replaced it is left alone.
    loop = any_loop

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            task = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            b.send(b"hi")
            assert await task == b"hi"
            assert not loop.remove_reader(a)          # already gone

            buf = bytearray(10)
            task = asyncio.ensure_future(loop.sock_recv_into(a, buf))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not loop.remove_reader(a)          # cancelled: gone

            task = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            loop.add_reader(a, lambda: None)          # replaces the wait
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert loop.remove_reader(a)              # the new one stays

            task = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         b"\x01\x00\x00\x00\x00\x00\x00\x00")
            b.close()                                 # EOF on a socketpair
            assert await task == b""
            assert not loop.remove_reader(a)
        finally:
            a.close()
            b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_sock_recv_wait_that_fails_removes_its_reader(any_loop):
    loop = any_loop

    async def main():
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            client = socket.socket()
            client.setblocking(False)
            await loop.sock_connect(client, lsock.getsockname())
            peer, _ = lsock.accept()
        try:
            task = asyncio.ensure_future(loop.sock_recv(client, 10))
            await asyncio.sleep(0.01)
            reset(peer)
            with pytest.raises(ConnectionResetError):
                await task
            assert not loop.remove_reader(client)
        finally:
            client.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


class _SocketSubclass(socket.socket):
    """Not a plain socket: its reads are its own, so the loop's sock_recv()
    must call them (our loop waits on such sockets the generic way)."""

    def recv(self, n, *args):
        return b"<" + super().recv(n, *args) + b">"


def _pair(cls=socket.socket):
    a, b = socket.socketpair()
    if cls is not socket.socket:
        a = cls(fileno=a.detach())
    a.setblocking(False)
    b.setblocking(False)
    return a, b


@pytest.mark.parametrize("cls", [socket.socket, _SocketSubclass])
def test_sock_recv_waits_once_and_again(any_loop, cls):
    # Waits one after another on one socket, by sock_recv() and
    # sock_recv_into(), each woken by new bytes; bytes already there are
    # returned without a wait; EOF ends it.
    loop = any_loop
    wrap = (lambda d: b"<" + d + b">") if cls is _SocketSubclass else bytes

    async def main():
        a, b = _pair(cls)
        try:
            for i in range(5):
                task = asyncio.ensure_future(loop.sock_recv(a, 10))
                await asyncio.sleep(0.01)
                assert not task.done()
                b.send(b"m%d" % i)
                assert await task == wrap(b"m%d" % i)
                buf = bytearray(10)
                task = asyncio.ensure_future(loop.sock_recv_into(a, buf))
                await asyncio.sleep(0.01)
                b.send(b"into")
                assert await task == 4
                assert buf[:4] == b"into"
                b.send(b"now")
                await asyncio.sleep(0.01)
                assert await loop.sock_recv(a, 10) == wrap(b"now")
            assert not loop.remove_reader(a)
            b.close()
            assert await loop.sock_recv(a, 10) == wrap(b"")
        finally:
            a.close()
            b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_sock_recv_wait_woken_for_nothing_waits_on(any_loop):
    # The bytes that woke a waiting sock_recv() are taken by a callback
    # that runs before its read: the read finds nothing and the wait goes
    # on, for the next bytes.
    loop = any_loop

    async def main():
        a, b = _pair()
        try:
            task = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            b.send(b"stolen")
            select_readable(a)
            taken = []
            loop.call_soon(lambda: taken.append(a.recv(10)))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert taken == [b"stolen"]
            assert not task.done()
            b.send(b"next")
            assert await task == b"next"
            assert not loop.remove_reader(a)
        finally:
            a.close()
            b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_cancelled_sock_recv_consumes_nothing(any_loop):
    # The bytes come in the iteration in which the waiting task is
    # cancelled: its reader may still run, but reads nothing.
    loop = any_loop

    async def main():
        a, b = _pair()
        try:
            task = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            b.send(b"keep")
            select_readable(a)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not loop.remove_reader(a)
            assert await loop.sock_recv(a, 10) == b"keep"
        finally:
            a.close()
            b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_concurrent_sock_recv_on_one_socket(any_loop):
    # As asyncio has it: the second wait replaces the first one's reader;
    # the second gets the bytes, the first waits until it is cancelled.
    loop = any_loop

    async def main():
        a, b = _pair()
        try:
            first = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            second = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            b.send(b"one")
            assert await second == b"one"
            b.send(b"two")
            await asyncio.sleep(0.05)
            assert not first.done()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            assert not loop.remove_reader(a)
            assert await loop.sock_recv(a, 10) == b"two"
        finally:
            a.close()
            b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_sock_recv_on_socket_closed_while_waiting(any_loop):
    # Closing the socket does not wake the wait (on either loop: epoll
    # forgets the closed fd); cancelling it still works, and its reader is
    # gone afterwards; a new socket with the same fd number can be waited
    # on.
    loop = any_loop

    async def main():
        a, b = _pair()
        fd = a.fileno()
        task = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        a.close()
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        b.close()
        c, d = _pair()
        try:
            if c.fileno() != fd:
                os.dup2(c.fileno(), fd)
                c.close()
                c = socket.socket(fileno=fd)
                c.setblocking(False)
            task = asyncio.ensure_future(loop.sock_recv(c, 10))
            await asyncio.sleep(0.01)
            d.send(b"new")
            assert await task == b"new"
        finally:
            c.close()
            d.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def test_sock_recv_wait_and_add_reader_on_one_fd(any_loop):
    # A reader added after a wait that fired (and before one) is a plain
    # level-triggered reader on either loop.
    loop = any_loop

    async def main():
        a, b = _pair()
        try:
            task = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            b.send(b"x")
            assert await task == b"x"
            calls = []
            loop.add_reader(a, calls.append, 1)
            b.send(b"y")
            for _ in range(3):
                select_readable(a)
                await asyncio.sleep(0)
            assert len(calls) >= 2
            assert loop.remove_reader(a)
            assert await loop.sock_recv(a, 10) == b"y"
        finally:
            a.close()
            b.close()

    loop.run_until_complete(asyncio.wait_for(main(), 10))


def select_readable(sock):
    """Waits (outside the loop) until sock has bytes for it."""
    import select
    select.select([sock], [], [], 5)


@pytest.mark.parametrize("queued_before", [False, True])
def test_read_callback_order_around_timers_and_callbacks(any_loop,
                                                         queued_before):
    # One iteration finds bytes to read and a due timer; the protocol
    # schedules a callback from data_received().  asyncio runs the read and
    # the timer in this iteration and that callback in the next (and a
    # callback queued before the poll first of all).  Our loop may deliver
    # the read without queueing it; the order must stay the same.
    loop = any_loop
    log = []

    class Proto(asyncio.Protocol):
        def data_received(self, data):
            log.append(("read", data))
            loop.call_soon(log.append, "scheduled by read")

    a, b = socket.socketpair()
    try:
        tr, _ = loop.run_until_complete(
            loop.create_connection(Proto, sock=a))
        loop.run_until_complete(asyncio.sleep(0.01))
        b.send(b"x")
        if queued_before:
            loop.call_soon(log.append, "queued before")
        loop.call_later(0, log.append, "timer")
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
        tr.close()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        b.close()
    expected = ["timer", "scheduled by read"]
    expected.insert(0, ("read", b"x"))
    if queued_before:
        expected.insert(0, "queued before")
    assert log == expected


# The end of each page-fault script below: the script defines N (rounds),
# PER_ROUND (messages per round), loop and client() (N rounds, then stops the
# loop); this warms up (the transport switches to its own reads, the heap
# settles), then prints the minor page faults per message of N more rounds.
_COUNT_FAULTS = r"""
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

N, n = 20, N
t = threading.Thread(target=client); t.start(); loop.run_forever(); t.join()
N = n
before = faults()
t = threading.Thread(target=client); t.start(); loop.run_forever(); t.join()
print((faults() - before) / (N * PER_ROUND))
"""


_FAULTS_PER_MESSAGE = r"""
import asyncio, resource, socket, sys, threading
import py_async_lib

N, SIZE, PER_ROUND = 300, 64 * 1024, 1
loop = py_async_lib.new_event_loop()

class Echo(asyncio.Protocol):
    def connection_made(self, tr):
        self.tr = tr
    def data_received(self, data):
        self.tr.write(data)

a, b = socket.socketpair()
tr, _ = loop.run_until_complete(loop.create_connection(Echo, sock=a))
msg = b"m" * SIZE
buf = bytearray(SIZE)
view = memoryview(buf)

def client():
    for _ in range(N):
        b.sendall(msg)
        got = 0
        while got < SIZE:
            got += b.recv_into(view[got:])
    loop.call_soon_threadsafe(loop.stop)

""" + _COUNT_FAULTS


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="under make asan-pytest ASan's allocator replaces "
                           "glibc's malloc, whose mmap threshold this test "
                           "is about")
def test_large_reads_do_not_fault_in_fresh_memory_per_message():
    # Issue 12's 64 KiB collapse: a recv(256 KiB) shrunk to the 64 KiB that
    # came is a chunk glibc maps afresh for every message (~18 page faults
    # each) unless its dynamic mmap threshold happened to rise earlier.  A
    # threshold fixed at its default (MALLOC_MMAP_THRESHOLD_) makes that
    # worst case certain; the transport's reads must not depend on it.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072",
               PYTHONPATH=os.path.dirname(os.path.dirname(
                   os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", _FAULTS_PER_MESSAGE],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 2, out.stdout


_STREAM_FAULTS_PER_MESSAGE = r"""
import asyncio, resource, socket, threading
import py_async_lib

N, SIZE, CONNS = 200, 64 * 1024, 16
PER_ROUND = CONNS
loop = py_async_lib.new_event_loop()

async def serve(sock):
    reader, writer = await asyncio.open_connection(sock=sock)
    while data := await reader.read(SIZE):
        writer.write(data)
        await writer.drain()

pairs = [socket.socketpair() for _ in range(CONNS)]
tasks = [loop.create_task(serve(a)) for a, _ in pairs]
msg = b"m" * SIZE
view = memoryview(bytearray(SIZE))

def client():
    # Every connection has a message in flight at once, as under the
    # benchmark's load generator: one iteration fills 16 StreamReader buffers.
    for _ in range(N):
        for _, b in pairs:
            b.sendall(msg)
        for _, b in pairs:
            got = 0
            while got < SIZE:
                got += b.recv_into(view[got:])
    loop.call_soon_threadsafe(loop.stop)

""" + _COUNT_FAULTS + r"""
for _, b in pairs:
    b.close()
loop.run_until_complete(asyncio.gather(*tasks))
loop.close()
"""


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="under make asan-pytest ASan's allocator replaces "
                           "glibc's malloc, whose heap this test is about")
def test_stream_buffers_do_not_make_the_heap_trim_per_message():
    # Issue 12, echo_streams_64k on 3.13: with 16 StreamReaders each filled
    # with a 64 KiB message in one iteration, reads sized to the message left
    # the buffers no hole but the top of the heap; freed together they were
    # trimmed by brk() and faulted in again every iteration (~14 faults per
    # message here).  Reads of HEAP_READ keep them in reused holes.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", _STREAM_FAULTS_PER_MESSAGE],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip().splitlines()[-1]) < 4, out.stdout
