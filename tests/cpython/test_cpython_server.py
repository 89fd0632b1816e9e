"""CPython's test.test_asyncio.test_server on py_async_lib's loop (its
start-server tests, which the module runs on SelectorEventLoop)."""
from test.test_asyncio import test_server as _mod

import py_async_lib


class PyAsyncLibStartServerTests(_mod.SelectorStartServerTests):

    def new_loop(self):
        return py_async_lib.new_event_loop()
