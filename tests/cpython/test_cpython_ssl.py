"""CPython's test.test_asyncio.test_ssl, run on py_async_lib's loop (its
tests make their loops with asyncio.new_event_loop())."""
from test.test_asyncio.test_ssl import *  # noqa: F401,F403
