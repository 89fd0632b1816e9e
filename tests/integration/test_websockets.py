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
