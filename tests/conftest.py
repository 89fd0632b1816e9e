import asyncio
import os

import pytest

import py_async_lib

from fdcheck import leaked_fds, open_fds


def pytest_addoption(parser, pluginmanager):
    # pyproject.toml sets pytest-asyncio's fixture loop scope (the plugin
    # comes with the [integration] extra); where it is not installed, the
    # option is declared here so that pytest does not call it unknown.
    if not pluginmanager.has_plugin("asyncio"):
        parser.addini("asyncio_default_fixture_loop_scope",
                      "pytest-asyncio's option (pytest-asyncio not installed)")




@pytest.fixture
def loop():
    """A fresh py_async_lib loop, closed (and checked for fd leaks) after."""
    before = open_fds()
    lp = py_async_lib.new_event_loop()
    yield lp
    if not lp.is_closed():
        if lp._default_executor is not None:
            lp.run_until_complete(lp.shutdown_default_executor())
        lp.close()
    leaked = leaked_fds(before)
    assert not leaked, f"fds leaked: {leaked}"


@pytest.fixture(params=["py_async_lib", "asyncio"])
def any_loop(request):
    """Our loop and asyncio's, for tests that compare the two."""
    lp = (py_async_lib.new_event_loop() if request.param == "py_async_lib"
          else asyncio.SelectorEventLoop())
    yield lp
    if not lp.is_closed():
        lp.close()
