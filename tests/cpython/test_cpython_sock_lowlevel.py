"""CPython's test.test_asyncio.test_sock_lowlevel on py_async_lib's loop."""
from test.test_asyncio import test_sock_lowlevel as _mod
from test.test_asyncio import utils as test_utils

import py_async_lib


class PyAsyncLibSockTests(_mod.BaseSockTestsMixin, test_utils.TestCase):

    def create_event_loop(self):
        return py_async_lib.new_event_loop()
