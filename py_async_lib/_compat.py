"""What py_async_lib takes from asyncio's internals, and every switch on the
Python version: the one module to review for a new CPython."""
from asyncio import unix_events

# asyncio's Unix policy class.  Python 3.14 deprecated the public names
# (asyncio.DefaultEventLoopPolicy warns, unix_events has no public one); the
# private class is the same one on 3.11 to 3.15.
UnixDefaultEventLoopPolicy = unix_events._UnixDefaultEventLoopPolicy
