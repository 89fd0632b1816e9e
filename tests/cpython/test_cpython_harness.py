"""CPython's suites really run on our loop (our_loop.py, whole_suite.py)."""
import asyncio
import os
import subprocess
import sys
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


def test_policy_reset_gives_our_loop_again():
    from py_async_lib import _compat
    policy = _compat.get_event_loop_policy()
    try:
        _compat.set_event_loop_policy(None)   # as tearDownModule does
        loop = asyncio.new_event_loop()
        assert isinstance(loop, py_async_lib.EventLoop)
        loop.close()
    finally:
        _compat.set_event_loop_policy(policy)


def test_whole_suite_runs_a_module_on_our_loop():
    # test_futures2 is small; its tests make their loops with asyncio.run().
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, os.path.join(here, "whole_suite.py"), "-j1",
         "test_futures2"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    total = [line for line in out.stdout.splitlines()
             if line.startswith("Python ")][-1]
    assert " 0 failed" in total and "0 ours" not in total, out.stdout
