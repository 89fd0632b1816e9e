"""Integration tests: real libraries and real servers on py_async_lib's loop.

Every test here is marked ``integration``.  Their Python dependencies are the
``[integration]`` extra; ``.ci/install-integration`` installs them with the
servers (PostgreSQL, Redis) on CI's Python 3.11.  Elsewhere a test skips only
when its library or server binary is genuinely missing, and says which.

The servers are started once per session by the fixtures below, on loopback
ports, in temporary directories, and stopped at the end.
"""
import contextlib
import importlib
import os
import subprocess

import pytest

import py_async_lib
from integration_support import (HERE, PostgresServer, RedisServer,
                                 pg_bindir, require_binary)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres():
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (Debian "
                    "package postgresql; .ci/install-integration installs it)")
    server = PostgresServer(bindir)
    try:
        with contextlib.suppress(ImportError):
            server.enable_tls(importlib.import_module("trustme"))
        server.init()
        server.start()
    except subprocess.CalledProcessError as exc:
        log = open(server.log).read() if os.path.exists(server.log) else ""
        server.cleanup()
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r} {log}")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer(require_binary("redis-server", "redis-server"))
    server.start()
    yield server
    server.cleanup()


# ---- pytest-asyncio: its tests run on our loop -----------------------------
# pytest-asyncio 1.4+ documents the pytest_asyncio_loop_factories hook for
# this; before it, overriding the event_loop_policy fixture was the way.

def _has_loop_factories_hook():
    try:
        from pytest_asyncio.plugin import PytestAsyncioSpecs
    except ImportError:
        return False
    return hasattr(PytestAsyncioSpecs, "pytest_asyncio_loop_factories")


if _has_loop_factories_hook():
    @pytest.hookimpl(optionalhook=True)
    def pytest_asyncio_loop_factories(config, item):
        return {"py_async_lib": py_async_lib.new_event_loop}
else:
    @pytest.fixture(scope="session")
    def event_loop_policy():
        return py_async_lib.EventLoopPolicy()
