"""Runs CPython's own asyncio test modules (test.test_asyncio) with
py_async_lib's loop in place of the stdlib one.

Every loop those tests create through asyncio (new_event_loop(), asyncio.run,
asyncio.Runner, IsolatedAsyncioTestCase, the default policy the modules reset
to in tearDownModule) is ours: our_loop.substitute_default_loop().  Tests
that build the mock-clock test_utils.TestLoop on purpose keep it: they test
tasks and futures against virtual time, not an event loop.
"""
import pytest

from our_loop import default_policy_is_ours, substitute_default_loop

substitute_default_loop()


@pytest.fixture(autouse=True)
def _our_policy():
    # A module's tearDownModule may have reset the policy to None; the next
    # one asyncio makes is then ours again.
    yield
    assert default_policy_is_ours()
