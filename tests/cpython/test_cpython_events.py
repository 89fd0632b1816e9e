"""CPython's test.test_asyncio.test_events: its loop-parametrised test
classes pointed at py_async_lib's loop, plus the module's loop-independent
classes."""
import sys
import unittest

from test.test_asyncio import test_events as _events
from test.test_asyncio import utils as test_utils

import py_async_lib

from test.test_asyncio.test_events import (  # noqa: F401
    HandleTests, TimerTests, AbstractEventLoopTests, PolicyTests,
    TestPyGetEventLoop, TestServer, TestAbstractServer)

if hasattr(_events, "TestCGetEventLoop"):
    from test.test_asyncio.test_events import TestCGetEventLoop  # noqa: F401


# 3.11-3.13: the Unix mixin adds a child watcher; 3.14 has no watchers and
# only the base mixin.
_LoopTestsMixin = getattr(_events, "UnixEventLoopTestsMixin",
                          _events.EventLoopTestsMixin)


class PyAsyncLibEventLoopTests(_LoopTestsMixin,
                               _events.SubprocessTestsMixin,
                               test_utils.TestCase):

    def create_event_loop(self):
        return py_async_lib.new_event_loop()
