"""unittest.IsolatedAsyncioTestCase on our loop: through its loop_factory
attribute on Python 3.13+, through the event loop policy before that."""
import asyncio
import sys
import unittest

import py_async_lib
from integration_support import leaked_fds, open_fds

USE_LOOP_FACTORY = sys.version_info >= (3, 13)


class OurLoopTestCase(unittest.IsolatedAsyncioTestCase):
    if USE_LOOP_FACTORY:
        # The class, as CPython's docs show: a plain function here would be
        # bound to the test case (new_event_loop(self) -> TypeError).
        loop_factory = py_async_lib.EventLoop

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._fds = open_fds()
        if not USE_LOOP_FACTORY:
            cls._old_policy = asyncio.get_event_loop_policy()
            asyncio.set_event_loop_policy(py_async_lib.EventLoopPolicy())

    @classmethod
    def tearDownClass(cls):
        if not USE_LOOP_FACTORY:
            asyncio.set_event_loop_policy(cls._old_policy)
        # Each test's loop is closed by now.
        assert not leaked_fds(cls._fds), f"fds leaked: {leaked_fds(cls._fds)}"
        super().tearDownClass()

    async def asyncSetUp(self):
        self.setup_loop = asyncio.get_running_loop()

    async def test_runs_on_our_loop(self):
        loop = asyncio.get_running_loop()
        self.assertIsInstance(loop, py_async_lib.EventLoop)
        self.assertIs(loop, self.setup_loop)
        # IsolatedAsyncioTestCase runs its loop in debug mode.
        self.assertTrue(loop.get_debug())

    async def test_streams_and_cleanup(self):
        async def handle(reader, writer):
            writer.write((await reader.read(100)).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.addAsyncCleanup(server.wait_closed)
        self.addCleanup(server.close)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"abc")
        self.assertEqual(await reader.read(), b"ABC")
        writer.close()
        await writer.wait_closed()
