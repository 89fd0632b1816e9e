"""CPython's test.test_asyncio.test_tasks, run on py_async_lib's loop."""
from test.test_asyncio.test_tasks import *  # noqa: F401,F403
