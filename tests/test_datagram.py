"""Datagram transports: create_datagram_endpoint() over UDP v4/v6 and Unix
datagram sockets, sendto() queueing and flow control, error_received(),
close/abort, extra info; compared with asyncio where behaviour must match.
Everything binds to 127.0.0.1, ::1 or paths under tmp_path."""
import asyncio
import gc
import socket
import sys

import pytest

from py_async_lib.datagram import DatagramTransport


def run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def run_until(loop, pred, timeout=10):
    async def wait():
        while not pred():
            await asyncio.sleep(0.005)
    run(loop, wait(), timeout)


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Proto(asyncio.DatagramProtocol):
    def __init__(self, loop, echo=False):
        self.echo = echo
        self.received = []
        self.errors = []
        self.events = []
        self.transport = None
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def datagram_received(self, data, addr):
        self.received.append((data, addr))
        if self.echo:
            self.transport.sendto(b"echo:" + data, addr)

    def error_received(self, exc):
        self.errors.append(exc)

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.done.set_result(exc)


def _echo_round_trip(loop, family, host):
    async def main():
        server_t, server = await loop.create_datagram_endpoint(
            lambda: Proto(loop, echo=True), local_addr=(host, 0),
            family=family)
        addr = server_t.get_extra_info("sockname")
        client_t, client = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=addr[:2], family=family)
        assert isinstance(client_t, asyncio.DatagramTransport)
        assert client_t.get_extra_info("peername")[:2] == addr[:2]
        for i in range(20):
            client_t.sendto(b"msg%d" % i)
        while len(client.received) < 20:
            await asyncio.sleep(0.005)
        client_t.close()
        server_t.close()
        await client.done
        await server.done
        return [d for d, _ in client.received], server.received

    got, seen = run(loop, main())
    assert sorted(got) == sorted(b"echo:msg%d" % i for i in range(20))
    assert len(seen) == 20


def test_udp_echo_ipv4(loop):
    _echo_round_trip(loop, socket.AF_INET, "127.0.0.1")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_udp_echo_ipv6(loop):
    _echo_round_trip(loop, socket.AF_INET6, "::1")


def test_unix_datagram_with_paths(loop, tmp_path):
    server_path = str(tmp_path / "server.sock")
    client_path = str(tmp_path / "client.sock")

    async def main():
        server_t, server = await loop.create_datagram_endpoint(
            lambda: Proto(loop, echo=True), local_addr=server_path,
            family=socket.AF_UNIX)
        client_t, client = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=client_path,
            remote_addr=server_path, family=socket.AF_UNIX)
        assert server_t.get_extra_info("sockname") == server_path
        assert client_t.get_extra_info("peername") == server_path
        client_t.sendto(b"over unix")
        while not client.received:
            await asyncio.sleep(0.005)
        client_t.close()
        server_t.close()
        await asyncio.gather(client.done, server.done)
        return client.received, server.received

    client_got, server_got = run(loop, main())
    assert client_got == [(b"echo:over unix", server_path)]
    assert server_got == [(b"over unix", client_path)]


def test_unconnected_sendto_and_extra_info(loop):
    async def main():
        a_t, a = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        b_t, b = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        b_addr = b_t.get_extra_info("sockname")
        assert a_t.get_extra_info("peername") is None
        sock = a_t.get_extra_info("socket")
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_DGRAM
        a_t.sendto(b"one", b_addr)
        a_t.sendto(bytearray(b"two"), b_addr)
        a_t.sendto(memoryview(b"three"), b_addr)
        while len(b.received) < 3:
            await asyncio.sleep(0.005)
        a_t.close()
        b_t.close()
        await asyncio.gather(a.done, b.done)
        return [d for d, _ in b.received], b.received[0][1], \
            a_t.get_extra_info("sockname")

    data, src, a_addr = run(loop, main())
    assert data == [b"one", b"two", b"three"]
    assert src == a_addr


def test_sendto_argument_checks(any_loop):
    loop = any_loop

    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=("127.0.0.1", 9))
        with pytest.raises(TypeError):
            t.sendto("text")
        with pytest.raises(ValueError):
            t.sendto(b"x", ("127.0.0.1", 10))
        t.sendto(b"x", ("127.0.0.1", 9))   # the connected address is fine
        t.close()
        await p.done

    run(loop, main())


def test_connection_refused_goes_to_error_received(any_loop):
    # ICMP port unreachable on a connected UDP socket: error_received()
    # gets ConnectionRefusedError and the transport stays open.
    loop = any_loop
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]

    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=("127.0.0.1", closed_port))
        for _ in range(50):
            t.sendto(b"anyone?")
            await asyncio.sleep(0.01)
            if p.errors:
                break
        closing = t.is_closing()
        t.close()
        await p.done
        return p.errors, closing

    errors, closing = run(loop, main())
    assert errors and all(isinstance(e, ConnectionRefusedError)
                          for e in errors)
    assert not closing


def test_unresolvable_host_raises_like_asyncio(any_loop):
    loop = any_loop

    async def main():
        with pytest.raises(OSError) as info:
            await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol,
                remote_addr=("nonexistent.invalid", 9999))
        return info.value

    exc = run(loop, main())
    assert type(exc) is socket.gaierror
    assert exc.errno in (socket.EAI_NONAME, socket.EAI_AGAIN,
                         getattr(socket, "EAI_NODATA", socket.EAI_NONAME))


def unix_pair(tmp_path, name):
    """Two bound, connected Unix datagram sockets (named: asyncio's
    transport sends with sendto(data, peername), which an unnamed peer
    would not have)."""
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.bind(str(tmp_path / f"{name}-a"))
    b.bind(str(tmp_path / f"{name}-b"))
    a.connect(str(tmp_path / f"{name}-b"))
    b.connect(str(tmp_path / f"{name}-a"))
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_flow_control_on_a_full_socket(loop, tmp_path):
    # A Unix datagram socket whose peer does not read fills up: sendto()
    # queues, pauses the protocol above the high-water mark, and resumes it
    # once the peer drains its queue; every datagram arrives, in order.
    a, b = unix_pair(tmp_path, "fc")

    async def main():
        t, p = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                   sock=a)
        t.set_write_buffer_limits(high=4096, low=1024)
        n = 0
        while "pause" not in p.events:
            t.sendto(b"%08d" % n + b"." * 500)
            n += 1
            assert n < 100000 and not t.is_closing()
        assert t.get_write_buffer_size() > 4096
        got = []
        while len(got) < n:
            try:
                got.append(b.recv(1000))
            except BlockingIOError:
                await asyncio.sleep(0.001)
        await asyncio.sleep(0)
        assert t.get_write_buffer_size() == 0
        t.close()
        await p.done
        return n, got, p.events

    n, got, events = run(loop, main())
    b.close()
    assert [int(g[:8]) for g in got] == list(range(n))
    assert events == ["made", "pause", "resume", ("lost", None)]


def test_close_waits_for_queued_datagrams_abort_does_not(loop, tmp_path):
    a, b = unix_pair(tmp_path, "close")
    c, d = unix_pair(tmp_path, "abort")

    async def fill(t):
        for _ in range(100000):
            if t.get_write_buffer_size():
                return
            assert not t.is_closing()
            t.sendto(b"z" * 1000)
        raise AssertionError("the socket never filled up")

    async def main():
        t1, p1 = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                     sock=a)
        t2, p2 = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                     sock=c)
        await fill(t1)
        await fill(t2)
        t1.close()
        t2.abort()
        assert t1.is_closing() and t2.is_closing()
        await p2.done
        assert t2.get_write_buffer_size() == 0
        assert not p1.done.done()   # still flushing
        while not p1.done.done():
            try:
                b.recv(2000)
            except BlockingIOError:
                await asyncio.sleep(0.001)
        return p1.events, p2.events

    e1, e2 = run(loop, main())
    assert e1[-1] == ("lost", None) and e2[-1] == ("lost", None)
    for s in (b, d):
        s.close()


def test_sock_argument_reuse_port_allow_broadcast(loop):
    async def main():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        t, p = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                   sock=sock)
        assert t.get_extra_info("socket").fileno() == sock.fileno()
        t.close()
        await p.done
        assert sock.fileno() == -1

        kwargs = {"allow_broadcast": True}
        if hasattr(socket, "SO_REUSEPORT"):
            kwargs["reuse_port"] = True
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0), **kwargs)
        s = t.get_extra_info("socket")
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        if "reuse_port" in kwargs:
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        t.close()
        await p.done

    run(loop, main())


def test_pause_and_resume_reading(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        addr = t.get_extra_info("sockname")
        t.pause_reading()
        assert not t.is_reading()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"a", addr)
            s.sendto(b"b", addr)
            await asyncio.sleep(0.05)
            assert p.received == []
            t.resume_reading()
            while len(p.received) < 2:
                await asyncio.sleep(0.005)
        t.close()
        await p.done
        return [d for d, _ in p.received]

    assert run(loop, main()) == [b"a", b"b"]


def test_empty_datagram_like_asyncio(any_loop):
    loop = any_loop

    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        addr = t.get_extra_info("sockname")
        t.sendto(b"", addr)
        t.sendto(b"end", addr)
        while not any(d == b"end" for d, _ in p.received):
            await asyncio.sleep(0.005)
        t.close()
        await p.done
        return [d for d, _ in p.received]

    expected = [b"", b"end"] if sys.version_info >= (3, 13) else [b"end"]
    assert run(loop, main()) == expected


def test_unclosed_datagram_transport_warns(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        return t

    t = run(loop, main())
    assert isinstance(t, DatagramTransport)
    sock = t._sock
    loop.close()
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del t
        gc.collect()
    assert sock.fileno() == -1
