"""CPython's test.test_asyncio.test_context, run on py_async_lib's loop."""
from test.test_asyncio.test_context import *  # noqa: F401,F403
