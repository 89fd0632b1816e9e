"""CPython's test.test_asyncio.test_streams, run on py_async_lib's loop (its
tests make their loops with asyncio.new_event_loop())."""
from test.test_asyncio.test_streams import *  # noqa: F401,F403
