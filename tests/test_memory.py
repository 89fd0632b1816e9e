"""What a connection costs a server, and that the savings keep asyncio's
behaviour: lazily made extras, slotted transports, batched accepts."""
import asyncio
import socket
import weakref

import pytest

from asyncio import trsock

from py_async_lib.transports import SocketTransport


class Recorder(asyncio.Protocol):
    """Asks for nothing while the connection lives; its transport is read
    after connection_lost()."""

    def __init__(self, loop):
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def extras(transport):
    sock = transport.get_extra_info("socket")
    return {
        "socket": type(sock).__name__,
        "socket_again": transport.get_extra_info("socket") is sock,
        "sockname": transport.get_extra_info("sockname"),
        "peername": transport.get_extra_info("peername"),
        "missing": transport.get_extra_info("nope", "default"),
    }


def test_socket_extras_after_close(any_loop):
    """Extras never asked for while the socket was open are there after the
    transport closed it, as asyncio's (made at creation) are."""
    loop = any_loop

    async def main():
        server_protos = []

        def factory():
            p = Recorder(loop)
            server_protos.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        tr, client = await loop.create_connection(lambda: Recorder(loop),
                                                  *addr)
        local = tr._sock.getsockname()
        while not server_protos:
            await asyncio.sleep(0)
        tr.close()
        await client.lost
        s_tr = server_protos[0].transport
        s_tr.close()
        await server_protos[0].lost
        server.close()
        await server.wait_closed()
        return addr, local, extras(tr), extras(s_tr)

    addr, local, client, served = loop.run_until_complete(main())
    assert client == {"socket": "TransportSocket", "socket_again": True,
                      "sockname": local, "peername": addr,
                      "missing": "default"}
    assert served == {"socket": "TransportSocket", "socket_again": True,
                      "sockname": addr, "peername": local,
                      "missing": "default"}


def test_socket_extras_while_open(any_loop):
    loop = any_loop

    async def main():
        a, b = socket.socketpair()
        tr, proto = await loop.create_connection(lambda: Recorder(loop),
                                                 sock=a)
        sock = tr.get_extra_info("socket")
        got = (isinstance(sock, trsock.TransportSocket),
               sock.fileno() == a.fileno(),
               tr.get_extra_info("sockname") == a.getsockname(),
               tr.get_extra_info("peername") == b.getsockname())
        tr.close()
        await proto.lost
        b.close()
        return got

    assert loop.run_until_complete(main()) == (True, True, True, True)


def test_socket_transport_is_slotted(loop):
    """No per-instance __dict__; weak references still work (asyncio's
    Server and loop keep transports in weak containers)."""

    async def main():
        a, b = socket.socketpair()
        tr, proto = await loop.create_connection(lambda: Recorder(loop),
                                                 sock=a)
        try:
            assert isinstance(tr, SocketTransport)
            assert not hasattr(tr, "__dict__")
            assert weakref.ref(tr)() is tr
            with pytest.raises(AttributeError):
                tr.some_new_attribute = 1
        finally:
            tr.close()
            await proto.lost
            b.close()

    loop.run_until_complete(main())


def test_burst_larger_than_accept_batch(any_loop):
    """More connections queued at once than one accept batch takes (see
    sockets.ACCEPT_BATCH): every one is served."""
    loop = any_loop
    n = 250

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=1024)
        addr = server.sockets[0].getsockname()
        # All queued in the kernel before the server accepts any.
        clients = [socket.create_connection(addr) for _ in range(n)]
        try:
            for c in clients:
                c.setblocking(False)
            for i, c in enumerate(clients):
                await loop.sock_sendall(c, b"%d\n" % i)
            got = []
            for c in clients:
                got.append(await loop.sock_recv(c, 100))
            return got
        finally:
            for c in clients:
                c.close()
            server.close()
            await server.wait_closed()

    assert loop.run_until_complete(main()) == [b"%d\n" % i for i in range(n)]


def test_transport_fd_refused_to_watchers(any_loop):
    """Stream transports are found through the loop's streams, not a weak
    map: add_reader()/add_writer() on their fd still raise until they
    close, as asyncio's do."""
    loop = any_loop

    async def main():
        a, b = socket.socketpair()
        tr, proto = await loop.create_connection(lambda: Recorder(loop),
                                                 sock=a)
        refused = []
        for op in (lambda: loop.add_reader(a.fileno(), print),
                   lambda: loop.add_writer(a, print),
                   lambda: loop.remove_reader(a.fileno())):
            with pytest.raises(RuntimeError, match="is used by transport"):
                op()
            refused.append(True)
        tr.close()
        # Closing: the fd is no longer the transport's to defend.
        loop.add_reader(b.fileno(), print)
        assert loop.remove_reader(b.fileno())
        assert loop.remove_reader(a.fileno()) is False
        await proto.lost
        b.close()
        return refused

    assert loop.run_until_complete(main()) == [True, True, True]


def test_default_write_limits(any_loop):
    loop = any_loop

    async def main():
        a, b = socket.socketpair()
        tr, proto = await loop.create_connection(lambda: Recorder(loop),
                                                 sock=a)
        limits = [tr.get_write_buffer_limits()]
        tr.set_write_buffer_limits(high=1000)
        limits.append(tr.get_write_buffer_limits())
        tr.set_write_buffer_limits()
        limits.append(tr.get_write_buffer_limits())
        tr.set_write_buffer_limits(low=100)
        limits.append(tr.get_write_buffer_limits())
        tr.close()
        await proto.lost
        b.close()
        return limits

    assert loop.run_until_complete(main()) == [
        (16384, 65536), (250, 1000), (16384, 65536), (100, 400)]


def test_peer_hosts_shared(loop):
    """Connections from one host share its string; addresses compare and
    type as accept() returned them."""

    async def main():
        transports = []

        def factory():
            p = Recorder(loop)
            transports.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        clients = [socket.create_connection(addr) for _ in range(3)]
        while len(transports) < 3:
            await asyncio.sleep(0.01)
        peers = [p.transport.get_extra_info("peername") for p in transports]
        expected = sorted(c.getsockname() for c in clients)
        for p in transports:
            p.transport.close()
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        return peers, expected

    peers, expected = loop.run_until_complete(main())
    assert sorted(peers) == expected
    assert all(type(p) is tuple for p in peers)
    assert peers[0][0] is peers[1][0] is peers[2][0]
