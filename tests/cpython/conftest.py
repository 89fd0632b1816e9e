"""CPython's own asyncio tests (test.test_asyncio) run on py_async_lib's
loop through whole_suite.py, one process per module (make check-python);
test_cpython_harness.py checks that they do.

This conftest makes every loop the tests here create through asyncio ours
(our_loop.substitute_default_loop(), the substitution whole_suite.py uses).
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
