"""anyio on its asyncio backend with our loop (backend_options' loop_factory):
its TCP streams and listeners, subprocesses and thread helpers."""
import os
import signal
import socket
import sys
import threading

import py_async_lib
from integration_support import assert_our_loop, leaked_fds, open_fds, \
    require

anyio = require("anyio")


def anyio_run(main, *args):
    """anyio.run() on our loop, with the checks of integration_support.run()."""
    async def checked():
        assert_our_loop()
        return await main(*args)

    before = open_fds()
    result = anyio.run(checked, backend="asyncio",
                       backend_options={"loop_factory":
                                        py_async_lib.new_event_loop})
    assert not leaked_fds(before), f"fds leaked: {leaked_fds(before)}"
    return result


def test_tcp_listener_and_streams():
    async def main():
        results = []

        async def handle(stream):
            async with stream:
                data = b""
                while not data.endswith(b"\n"):
                    data += await stream.receive()
                await stream.send(data.upper())

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)

            async def client(n):
                async with await anyio.connect_tcp("127.0.0.1", port) as s:
                    await s.send(b"x" * 100_000 + b"client %d\n" % n)
                    got = b""
                    while True:
                        try:
                            got += await s.receive()
                        except anyio.EndOfStream:
                            break
                    results.append(got)

            async with anyio.create_task_group() as clients:
                for n in range(10):
                    clients.start_soon(client, n)
            tg.cancel_scope.cancel()
        return sorted(results)

    results = anyio_run(main)
    assert results == sorted(b"X" * 100_000 + b"CLIENT %d\n" % n
                             for n in range(10))


def test_subprocesses():
    async def main():
        done = await anyio.run_process(
            [sys.executable, "-c", "import sys; print(sys.argv[1]); "
             "sys.exit(3)", "hello"], check=False)
        async with await anyio.open_process(
                [sys.executable, "-c",
                 "import sys\nfor line in sys.stdin: "
                 "sys.stdout.write(line[::-1]); sys.stdout.flush()"]) as proc:
            replies = []
            for word in ("abc\n", "hello\n"):
                await proc.stdin.send(word.encode())
                replies.append(await proc.stdout.receive())
            await proc.stdin.aclose()
            rc = await proc.wait()
        return done.returncode, done.stdout, replies, rc

    rc, out, replies, rc2 = anyio_run(main)
    assert (rc, out) == (3, b"hello\n")
    assert replies == [b"\ncba", b"\nolleh"]
    assert rc2 == 0


def test_threads():
    async def main():
        loop_thread = threading.get_ident()

        def in_thread(x):
            assert threading.get_ident() != loop_thread
            # Back into the loop from the worker thread.
            inner = anyio.from_thread.run(double, x)
            token = anyio.from_thread.run_sync(assert_our_loop)
            return inner + (token is not None)

        async def double(x):
            assert threading.get_ident() == loop_thread
            assert_our_loop()
            await anyio.sleep(0)
            return x * 2

        results = []
        async with anyio.create_task_group() as tg:
            for i in range(8):
                async def one(i=i):
                    results.append(await anyio.to_thread.run_sync(
                        in_thread, i))
                tg.start_soon(one)
        with anyio.fail_after(10):
            event = anyio.Event()
            threading.Timer(0.01, anyio.from_thread.run_sync,
                            (event.set,),
                            {"token": anyio.lowlevel.current_token()}).start()
            await event.wait()
        return sorted(results)

    assert anyio_run(main) == [i * 2 + 1 for i in range(8)]


def test_udp_unix_sockets_signals_and_wait_readable(tmp_path):
    async def main():
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as a, \
                await anyio.create_udp_socket(local_host="127.0.0.1") as b:
            port = b.extra(anyio.abc.SocketAttribute.local_port)
            await a.sendto(b"datagram", "127.0.0.1", port)
            datagram, _ = await b.receive()

        async def upper(stream):
            async with stream:
                await stream.send((await stream.receive()).upper())

        path = str(tmp_path / "sock")
        async with await anyio.create_unix_listener(path) as listener, \
                anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, upper)
            async with await anyio.connect_unix(path) as client:
                await client.send(b"unix")
                unix = await client.receive()
            tg.cancel_scope.cancel()

        with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
            os.kill(os.getpid(), signal.SIGUSR1)
            async for signum in signals:
                break

        r, w = socket.socketpair()
        with r, w:
            w.send(b"x")
            with anyio.fail_after(10):
                await anyio.wait_readable(r)
            readable = r.recv(1)
        return datagram, unix, signum, readable

    assert anyio_run(main) == (b"datagram", b"UNIX", signal.SIGUSR1, b"x")
