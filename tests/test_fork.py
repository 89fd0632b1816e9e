"""fork() while a loop runs: the child closes the loop it inherited and runs
a new one; the parent's loop carries on untouched.

After fork() the child shares the parent's epoll instance (the epoll fd is
inherited, the registrations belong to the instance), so anything the child
did through it -- an EPOLL_CTL_DEL above all -- would change the parent's
loop.  Closing the inherited loop in the child must only free memory and
close the child's copies of the loop's fds.  The parent checks afterwards
that every kind of registration it had still works: an fd watcher, a
listening server, a stream transport, the eventfd that
call_soon_threadsafe() writes to, a signal handler and timers.

Every child leaves through os._exit(); the parent checks its exit status.
"""
import asyncio
import os
import signal
import socket
import threading
import traceback

import pytest

import py_async_lib

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class _Collect(asyncio.Protocol):
    def __init__(self):
        self.data = b""
        self.waiter = None

    def data_received(self, data):
        self.data += data
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def read(self, n, timeout=5):
        loop = asyncio.get_running_loop()
        while len(self.data) < n:
            self.waiter = loop.create_future()
            await asyncio.wait_for(self.waiter, timeout)
        data, self.data = self.data[:n], self.data[n:]
        return data


def _child(inherited):
    """Runs in the forked child; returns its exit status."""
    inherited.close()
    if not inherited.is_closed():
        return 2
    loop = py_async_lib.new_event_loop()
    try:
        async def work():
            await asyncio.sleep(0.01)
            # A wakeup from another thread reaches the new loop.
            woken = loop.create_future()
            threading.Timer(0.05, loop.call_soon_threadsafe,
                            (woken.set_result, "woken")).start()
            got = [await asyncio.wait_for(woken, 5)]
            # Stream I/O on a new socketpair.
            a, b = socket.socketpair()
            tr, proto = await loop.create_connection(_Collect, sock=a)
            b.sendall(b"ping")
            got.append(await proto.read(4))
            tr.close()
            b.close()
            # A signal handler of the child's own.
            hit = loop.create_future()
            loop.add_signal_handler(signal.SIGUSR2, hit.set_result, "signal")
            os.kill(os.getpid(), signal.SIGUSR2)
            got.append(await asyncio.wait_for(hit, 5))
            loop.remove_signal_handler(signal.SIGUSR2)
            return got

        result = loop.run_until_complete(asyncio.wait_for(work(), 20))
    finally:
        loop.close()
    return 0 if result == ["woken", b"ping", "signal"] else 3


def _fork_child(inherited):
    """fork(); the child runs _child(inherited) and _exits with its status.
    Returns the child's pid in the parent."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = _child(inherited)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    return pid


async def _wait_child(loop, pid):
    _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
    return os.waitstatus_to_exitcode(status)


async def _check_parent_loop(loop, server_port, client, rsock, wsock,
                             signal_hits):
    """Every registration the parent had before the fork still works."""
    # The fd watcher.
    readable = loop.create_future()
    loop.add_reader(rsock.fileno(), lambda: readable.done() or
                    readable.set_result(rsock.recv(100)))
    wsock.send(b"r")
    assert await asyncio.wait_for(readable, 5) == b"r"
    loop.remove_reader(rsock.fileno())
    # The wakeup eventfd: nothing else wakes the loop while it waits.
    woken = loop.create_future()
    threading.Timer(0.05, loop.call_soon_threadsafe,
                    (woken.set_result, "woken")).start()
    assert await asyncio.wait_for(woken, 5) == "woken"
    # The listening socket accepts, and the new connection echoes.
    tr, proto = await loop.create_connection(_Collect, "127.0.0.1",
                                             server_port)
    tr.write(b"new")
    assert await proto.read(3) == b"new"
    tr.close()
    # The stream transport from before the fork.
    ctr, cproto = client
    ctr.write(b"old")
    assert await cproto.read(3) == b"old"
    # The signal handler.
    before = len(signal_hits)
    os.kill(os.getpid(), signal.SIGUSR1)
    for _ in range(500):
        if len(signal_hits) > before:
            break
        await asyncio.sleep(0.01)
    assert len(signal_hits) > before
    # Timers.
    await asyncio.sleep(0.01)


def _run_scenario(loop, fork_from_callback):
    signal_hits = []
    rsock, wsock = socket.socketpair()

    async def setup():
        server = await loop.create_server(_Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = await loop.create_connection(_Collect, "127.0.0.1", port)
        client[0].write(b"pre")
        assert await client[1].read(3) == b"pre"
        loop.add_reader(rsock.fileno(), lambda: None)
        loop.add_signal_handler(signal.SIGUSR1, signal_hits.append, 1)
        loop.call_later(3600, lambda: None)     # a pending timer
        return server, port, client

    async def fork_in_callback():
        forked = loop.create_future()
        loop.call_soon(lambda: forked.set_result(_fork_child(loop)))
        return await forked

    async def check(pid, server, port, client):
        status = await asyncio.wait_for(_wait_child(loop, pid), 60)
        assert status == 0, f"child exited with {status}"
        await _check_parent_loop(loop, port, client, rsock, wsock,
                                 signal_hits)
        client[0].close()
        server.close()
        await server.wait_closed()

    try:
        server, port, client = loop.run_until_complete(
            asyncio.wait_for(setup(), 30))
        if fork_from_callback:
            pid = loop.run_until_complete(fork_in_callback())
        else:
            pid = _fork_child(loop)   # everything registered, loop idle
        loop.run_until_complete(
            asyncio.wait_for(check(pid, server, port, client), 90))
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        rsock.close()
        wsock.close()


def test_fork_in_callback_child_closes_loop_and_runs_new_one(loop):
    """fork() from inside a callback: in the child the loop looks running
    (run_forever is below on the stack); it can still be closed."""
    _run_scenario(loop, fork_from_callback=True)


def test_fork_idle_loop_child_closes_loop_and_runs_new_one(loop):
    _run_scenario(loop, fork_from_callback=False)


def test_fork_child_exits_without_closing(loop):
    async def main():
        forked = loop.create_future()

        def do_fork():
            pid = os.fork()
            if pid == 0:
                os._exit(7)
            forked.set_result(pid)
        loop.call_soon(do_fork)
        pid = await forked
        assert await asyncio.wait_for(_wait_child(loop, pid), 30) == 7
        woken = loop.create_future()
        threading.Timer(0.05, loop.call_soon_threadsafe,
                        (woken.set_result, 1)).start()
        assert await asyncio.wait_for(woken, 5) == 1

    loop.run_until_complete(main())
