"""What py_async_lib takes from asyncio's internals, and every switch on the
Python version: the one module to review for a new CPython."""
import asyncio
import sys
from asyncio import events, unix_events

# asyncio's Unix policy class.  Python 3.14 deprecated the public names
# (asyncio.DefaultEventLoopPolicy warns, unix_events has no public one); the
# private class is the same one on 3.11 to 3.15.
UnixDefaultEventLoopPolicy = unix_events._UnixDefaultEventLoopPolicy

# Where asyncio finds the class of the policy it makes when none is set
# (events._init_event_loop_policy, also after set_event_loop_policy(None)),
# as (module, attribute), and the policy's getter and setter that do not
# warn: 3.14 deprecated the public ones and imports the private name.
# tests/cpython/our_loop.py puts our policy there.
if sys.version_info >= (3, 14):
    DEFAULT_POLICY_SLOT = (unix_events, "_DefaultEventLoopPolicy")
    get_event_loop_policy = events._get_event_loop_policy
    set_event_loop_policy = events._set_event_loop_policy
else:
    DEFAULT_POLICY_SLOT = (asyncio, "DefaultEventLoopPolicy")
    get_event_loop_policy = events.get_event_loop_policy
    set_event_loop_policy = events.set_event_loop_policy
