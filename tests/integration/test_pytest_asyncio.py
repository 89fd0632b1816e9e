"""pytest-asyncio runs its tests and async fixtures on our loop (through the
loop-factory hook or event_loop_policy fixture in conftest.py)."""
import asyncio

import pytest

import py_async_lib
from integration_support import leaked_fds, open_fds, require

pytest_asyncio = require("pytest_asyncio")


@pytest.fixture(autouse=True)
def no_fd_leak():
    """Set up before pytest-asyncio's loop, so checked after it is closed."""
    before = open_fds()
    yield
    assert not leaked_fds(before), f"fds leaked: {leaked_fds(before)}"


@pytest_asyncio.fixture
async def echo_server():
    assert isinstance(asyncio.get_running_loop(), py_async_lib.EventLoop)

    async def handle(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_test_runs_on_our_loop():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, py_async_lib.EventLoop), type(loop)
    assert await asyncio.sleep(0.001, result="slept") == "slept"


@pytest.mark.asyncio
async def test_async_fixture_shares_the_test_loop(echo_server):
    assert isinstance(asyncio.get_running_loop(), py_async_lib.EventLoop)
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server)
    writer.write(b"ping\n")
    assert await reader.readline() == b"ping\n"
    writer.close()
    await writer.wait_closed()
