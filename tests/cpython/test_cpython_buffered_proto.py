"""CPython's test.test_asyncio.test_buffered_proto on py_async_lib's loop."""
import unittest

from test.test_asyncio import test_buffered_proto as _mod

import py_async_lib


class PyAsyncLibBufferedProtocolTests(_mod.BaseTestBufferedProtocol,
                                      unittest.TestCase):

    def new_loop(self):
        return py_async_lib.new_event_loop()
