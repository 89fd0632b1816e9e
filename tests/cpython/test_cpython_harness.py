"""The CPython suites in this folder really run on our loop."""
import asyncio
import unittest

import py_async_lib


def test_new_event_loop_is_ours():
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, py_async_lib.EventLoop)
    finally:
        loop.close()


def test_isolated_testcase_runs_on_our_loop():
    seen = []

    class Case(unittest.IsolatedAsyncioTestCase):
        async def test_loop(self):
            seen.append(type(asyncio.get_running_loop()))

    result = unittest.TextTestRunner(stream=open("/dev/null", "w")).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(Case))
    assert result.wasSuccessful()
    assert seen == [py_async_lib.EventLoop]
