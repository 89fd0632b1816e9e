"""CPython's test.test_asyncio.test_futures, run on py_async_lib's loop."""
from test.test_asyncio.test_futures import *  # noqa: F401,F403
