"""Puts py_async_lib's loop where CPython's asyncio tests get their loops.

Shared by conftest.py (the modules pytest runs here) and whole_suite.py.
Our policy class goes where asyncio looks up the class of its default policy
(py_async_lib._compat.DEFAULT_POLICY_SLOT), so asyncio.new_event_loop(),
asyncio.run(), asyncio.Runner, IsolatedAsyncioTestCase and a policy reset
to None all give our loop; asyncio.EventLoop (3.13+), the default loop class
tests pass as loop_factory, is ours too.  Loops a test constructs explicitly
(asyncio.SelectorEventLoop, test_utils.TestLoop) stay what they are.
"""
import asyncio

import py_async_lib
from py_async_lib import _compat


def substitute_default_loop():
    setattr(*_compat.DEFAULT_POLICY_SLOT, py_async_lib.EventLoopPolicy)
    _compat.set_event_loop_policy(None)
    if hasattr(asyncio, "EventLoop"):  # 3.13+
        asyncio.EventLoop = asyncio.unix_events.EventLoop = py_async_lib.EventLoop
    loop = asyncio.new_event_loop()
    loop.close()
    assert type(loop) is py_async_lib.EventLoop, type(loop)


def default_policy_is_ours():
    return isinstance(_compat.get_event_loop_policy(),
                      py_async_lib.EventLoopPolicy)
