"""Runs CPython's own asyncio test modules (test.test_asyncio) with
py_async_lib's loop in place of the stdlib one.

Every loop those tests create through asyncio (new_event_loop(), asyncio.run,
asyncio.Runner, IsolatedAsyncioTestCase, the default policy the modules reset
to in tearDownModule) comes from our policy.  Tests that build the mock-clock
test_utils.TestLoop on purpose keep it: they test tasks and futures against
virtual time, not an event loop.
"""
import asyncio

import pytest

import py_async_lib

asyncio.DefaultEventLoopPolicy = py_async_lib.EventLoopPolicy
asyncio.set_event_loop_policy(py_async_lib.EventLoopPolicy())


@pytest.fixture(autouse=True)
def _our_policy():
    # A module's tearDownModule may have reset the policy to None; the next
    # get_event_loop_policy() then builds asyncio.DefaultEventLoopPolicy,
    # which is ours.
    yield
    assert isinstance(asyncio.get_event_loop_policy(),
                      py_async_lib.EventLoopPolicy)
