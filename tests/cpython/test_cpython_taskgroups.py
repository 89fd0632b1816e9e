"""CPython's test.test_asyncio.test_taskgroups, run on py_async_lib's loop."""
from test.test_asyncio.test_taskgroups import *  # noqa: F401,F403
