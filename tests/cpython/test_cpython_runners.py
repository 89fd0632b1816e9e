"""CPython's test.test_asyncio.test_runners, run on py_async_lib's loop."""
from test.test_asyncio.test_runners import *  # noqa: F401,F403
