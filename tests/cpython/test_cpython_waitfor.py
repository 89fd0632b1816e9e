"""CPython's test.test_asyncio.test_waitfor, run on py_async_lib's loop."""
from test.test_asyncio.test_waitfor import *  # noqa: F401,F403
