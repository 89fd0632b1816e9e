"""CPython's test.test_asyncio.test_pep492, run on py_async_lib's loop."""
from test.test_asyncio.test_pep492 import *  # noqa: F401,F403
