"""The websockets library's asyncio server and client, both on our loop."""
import asyncio
import os

from integration_support import assert_our_loop, require, run

websockets = require("websockets")
require("websockets.asyncio.server")    # the asyncio API (websockets >= 13)
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402
from websockets.exceptions import ConnectionClosedOK  # noqa: E402


async def echo(ws):
    assert_our_loop()
    async for message in ws:
        await ws.send(message)
    # The client closed: the server side reports the same clean close.


def test_echo_text_binary_and_large_messages():
    async def main():
        async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
                texts = []
                for i in range(50):
                    await ws.send(f"hello {i}")
                    texts.append(await ws.recv())
                big = os.urandom(4 * 1024 * 1024)
                await ws.send(big)
                big_back = await ws.recv()
                latency = await ws.ping()
                await latency
                await ws.close()
                try:
                    await ws.recv()
                except ConnectionClosedOK as exc:
                    code = exc.rcvd.code
        return texts, big_back == big, code

    texts, big_ok, code = run(main)
    assert texts == [f"hello {i}" for i in range(50)]
    assert big_ok
    assert code == 1000


def test_flow_control_when_the_server_reads_late():
    """The server reads nothing for a while: its queue fills (max_queue), it
    stops reading the transport, the client's writes wait on drain; then
    all 300 64 KiB messages arrive, in order."""
    async def late_reader(ws):
        await asyncio.sleep(0.3)
        count = 0
        async for message in ws:
            if message == "end":
                await ws.send(str(count))
                return
            assert message == f"{count:06d}" + "x" * 65530
            count += 1

    async def main():
        async with serve(late_reader, "127.0.0.1", 0, max_queue=4) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}",
                               write_limit=2 ** 14) as ws:
                for i in range(300):
                    await ws.send(f"{i:06d}" + "x" * 65530)
                await ws.send("end")
                return await ws.recv()

    assert run(main) == "300"


def test_many_concurrent_clients():
    async def main():
        async with serve(echo, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]

            async def client(n):
                async with connect(f"ws://127.0.0.1:{port}") as ws:
                    out = []
                    for i in range(10):
                        await ws.send(f"{n}:{i}")
                        out.append(await ws.recv())
                    return out

            return await asyncio.gather(*(client(n) for n in range(30)))

    results = run(main)
    assert results == [[f"{n}:{i}" for i in range(10)] for n in range(30)]
