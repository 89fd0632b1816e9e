"""Everything py_async_lib takes from asyncio's internals, and every switch
on the Python version.

The loop is asyncio's BaseEventLoop with the engine replaced, so it leans on
names asyncio does not promise to keep: private helpers, private classes,
methods of asyncio's own loops that it borrows, and behaviour that changed
between versions.  They are all named here, once; the rest of the package
imports them from this module and nothing private from asyncio directly.

Every name is looked up when this module is imported.  One that this Python
lacks fails the import with CompatError (an ImportError) naming the Python
version and the name, rather than an AttributeError at some later call.
What may legitimately be missing (the policy system, gone in Python 3.16;
child watchers, gone in 3.14) is looked up with _maybe() and has a flag.

Supporting a new CPython: read this file against that version's asyncio,
and run tests/test_compat.py, which checks that every attribute the borrowed
methods use on `self` exists on our loop.
"""
import asyncio
import inspect
import selectors
import sys

from asyncio import base_events, base_subprocess, constants, coroutines
from asyncio import events, format_helpers, futures, log, selector_events
from asyncio import sslproto, tasks, transports, trsock, unix_events

__all__ = ["CompatError"]   # the rest is for the package's own modules

PYTHON = "%d.%d.%d" % sys.version_info[:3]
_MISSING = object()


class CompatError(ImportError):
    """This Python's asyncio lacks something py_async_lib is built on."""


def _take(owner, dotted, why):
    """owner.dotted (a dotted path of attributes), or CompatError."""
    value = _maybe(owner, dotted)
    if value is _MISSING:
        raise CompatError(
            f"py_async_lib does not support Python {PYTHON}: it needs "
            f"{owner.__name__}.{dotted} ({why}), which this Python's asyncio "
            f"does not have (py_async_lib/_compat.py lists what it takes "
            f"from asyncio)")
    return value


def _maybe(owner, dotted):
    """owner.dotted, or _MISSING."""
    value = owner
    for part in dotted.split("."):
        value = getattr(value, part, _MISSING)
        if value is _MISSING:
            break
    return value


# ---- version switches -----------------------------------------------------
# What changed in asyncio between 3.11 and 3.15 and changes what our code
# does.  CPython's own tests check each of these on our loop.

# 3.13: Server tracks its transports (for close_clients()/abort_clients()):
# Server._attach(transport) and _detach(transport); before, no argument.
SERVER_TRACKS_TRANSPORTS = sys.version_info >= (3, 13)
# 3.13: datagram transports send empty datagrams, and count 8 bytes of
# header per queued datagram in get_write_buffer_size().
SEND_EMPTY_DATAGRAMS = sys.version_info >= (3, 13)
# 3.12: a socket transport's writelines() adds its writer again (in the
# caller's context) even when one is there; before, it was
# write(b"".join(...)).
WRITELINES_READDS_WRITER = sys.version_info >= (3, 12)
# 3.11 hands a child to what the watcher's __enter__() returns, 3.12 and
# 3.13 to the watcher itself.
USE_ENTERED_WATCHER = sys.version_info < (3, 12)
# The context process_exited() runs in: 3.11's default child watcher reports
# from a thread of its own (an empty context), later ones from a pidfd
# reader added in the context that started the child.
EXIT_IN_EMPTY_CONTEXT = sys.version_info < (3, 12)
# 3.14 removed child watchers (asyncio.set_child_watcher() and the classes).
HAS_CHILD_WATCHERS = sys.version_info < (3, 14)
# 3.12: asyncio.run() takes a loop_factory (3.11 has only asyncio.Runner's).
RUN_HAS_LOOP_FACTORY = sys.version_info >= (3, 12)
# 3.11's _get_running_loop() checks the pid it was set in with getpid(), a
# syscall (0.12 us here) on every call, and so does a Future or Task made
# without a loop, which takes the running one; 3.12 keeps the running loop
# in the thread state and asks nothing.
RUNNING_LOOP_ASKS_PID = sys.version_info < (3, 12)
# 3.14 deprecated the policy system (get/set_event_loop_policy() warn, and
# so does reading asyncio.DefaultEventLoopPolicy); 3.16 removes it.
POLICIES_DEPRECATED = sys.version_info >= (3, 14)

# 3.14 deprecated asyncio.iscoroutinefunction (it warns); asyncio itself
# calls the private copy.
if sys.version_info >= (3, 14):
    iscoroutinefunction = _take(coroutines, "_iscoroutinefunction",
                                "add_signal_handler()'s check")
else:
    iscoroutinefunction = coroutines.iscoroutinefunction
iscoroutine = coroutines.iscoroutine

# ---- the policy system (gone in 3.16) -------------------------------------
# asyncio's Unix policy class: 3.14 dropped the public unix_events name
# (asyncio.DefaultEventLoopPolicy warns); the private class is the same one
# on 3.11 to 3.15.
UnixDefaultEventLoopPolicy = _maybe(unix_events,
                                    "_UnixDefaultEventLoopPolicy")
# set_event_loop_policy() without the warning: install() warns itself, at
# its caller's line, where asyncio's would.
_set_policy = _maybe(events, "_set_event_loop_policy"
                     if POLICIES_DEPRECATED else "set_event_loop_policy")
_get_policy = _maybe(events, "_get_event_loop_policy"
                     if POLICIES_DEPRECATED else "get_event_loop_policy")
HAS_POLICIES = (UnixDefaultEventLoopPolicy is not _MISSING
                and _set_policy is not _MISSING
                and _maybe(events, "_event_loop_policy") is not _MISSING)
if not HAS_POLICIES:
    UnixDefaultEventLoopPolicy = None
# Where asyncio finds the class of the policy it makes when none is set
# (events._init_event_loop_policy, also after set_event_loop_policy(None)),
# as (module, attribute): 3.14 imports the private name.  The harness of
# CPython's own tests (tests/cpython) puts our policy there.
if POLICIES_DEPRECATED:
    DEFAULT_POLICY_SLOT = (unix_events, "_DefaultEventLoopPolicy")
else:
    DEFAULT_POLICY_SLOT = (asyncio, "DefaultEventLoopPolicy")


def set_event_loop_policy(policy):
    """asyncio.set_event_loop_policy(), without its 3.14 warning."""
    _set_policy(policy)


def get_event_loop_policy():
    """asyncio.get_event_loop_policy() (which makes the default policy if
    there is none), without its 3.14 warning."""
    return _get_policy()


def current_policy():
    """The policy asyncio has now, or None if none was made yet (reading it
    does not make one, nor warn)."""
    return events._event_loop_policy


# The watchers asyncio's policy makes up when asked for one and none was set
# (3.11: threaded; 3.12, 3.13: pidfd where it can).  Always active, and
# they watch any child for any loop: what our loop's own pidfd watch does.
if HAS_CHILD_WATCHERS:
    _DEFAULT_WATCHERS = (
        _take(unix_events, "ThreadedChildWatcher", "child watchers"),
        _take(unix_events, "PidfdChildWatcher", "child watchers"))


def unix_policy_watcher(policy):
    """The child watcher that asyncio's Unix policy `policy` holds and that
    asyncio's loop would use for a new child, unless it is one of those the
    policy makes up by default (our loop's pidfd watch does what they do);
    None for a policy that is not asyncio's Unix one."""
    if not (HAS_CHILD_WATCHERS and HAS_POLICIES
            and isinstance(policy, UnixDefaultEventLoopPolicy)):
        return None
    watcher = policy._watcher
    if type(watcher) in _DEFAULT_WATCHERS:
        return None
    return watcher


# ---- classes we subclass ---------------------------------------------------
BaseEventLoop = _take(base_events, "BaseEventLoop", "the loop's base class")
Handle = _take(events, "Handle", "the handles' base class")
TimerHandle = _take(events, "TimerHandle", "the timers' base class")
# 3.14+: call_soon_threadsafe()'s handles, whose cancel() and _run() share a
# lock (a cancel() from another thread either comes first or not at all).
# None before 3.14.
_tsh = _maybe(events, "_ThreadSafeHandle")
ThreadSafeHandle = None if _tsh is _MISSING else _tsh
del _tsh
FlowControlMixin = _take(transports, "_FlowControlMixin",
                         "the transports' write flow control")
BaseSubprocessTransport = _take(base_subprocess, "BaseSubprocessTransport",
                                "the subprocess transport")
# TLS runs in asyncio's SSLProtocol over our plain transport.
SSLProtocol = _take(sslproto, "SSLProtocol", "TLS transports")
TransportSocket = _take(trsock, "TransportSocket",
                        "get_extra_info('socket')")

# Our Handle/TimerHandle constructors set every slot of asyncio's handles
# themselves: a slot asyncio lacks, or one it added that they would leave
# unset, is an import error here rather than an AttributeError in some later
# callback.
HANDLE_SLOTS = ("_context", "_loop", "_callback", "_args", "_cancelled",
                "_repr", "_source_traceback")
TIMER_HANDLE_SLOTS = ("_when", "_scheduled")
for _cls, _names in ((Handle, HANDLE_SLOTS),
                     (TimerHandle, TIMER_HANDLE_SLOTS)):
    _theirs = set(_cls.__slots__) - {"__weakref__"}
    if _theirs != set(_names):
        raise CompatError(
            f"py_async_lib does not support Python {PYTHON}: its handles set "
            f"{sorted(_names)}, and {_cls.__module__}.{_cls.__name__} has the "
            f"slots {sorted(_theirs)}")
del _theirs

# ---- functions and constants ----------------------------------------------
get_running_loop_or_none = _take(events, "_get_running_loop", "run()")
logger = log.logger         # our messages go where asyncio's go
check_ssl_socket = _take(base_events, "_check_ssl_socket", "sock_*() checks")
set_nodelay = _take(base_events, "_set_nodelay", "TCP transports")
format_handle = _take(base_events, "_format_handle", "slow callback logs")
set_result_unless_cancelled = _take(futures, "_set_result_unless_cancelled",
                                    "transport waiters")
extract_stack = _take(format_helpers, "extract_stack", "debug tracebacks")
format_callback_source = _take(format_helpers, "_format_callback_source",
                               "callback error messages")
# 3.13's Handle._run passes debug= to _format_callback_source (read from
# its signature, which is what a backport would change).
FORMAT_CALLBACK_TAKES_DEBUG = "debug" in inspect.signature(
    format_callback_source).parameters
fileobj_to_fd = _take(selectors, "_fileobj_to_fd", "fd watchers")
LOG_THRESHOLD_FOR_CONNLOST_WRITES = _take(
    constants, "LOG_THRESHOLD_FOR_CONNLOST_WRITES", "writes after close")
SSL_HANDSHAKE_TIMEOUT = _take(constants, "SSL_HANDSHAKE_TIMEOUT", "TLS")
SSL_SHUTDOWN_TIMEOUT = _take(constants, "SSL_SHUTDOWN_TIMEOUT", "TLS")
SENDFILE_TRY_NATIVE = _take(constants, "_SendfileMode.TRY_NATIVE",
                            "loop.sendfile() on our transports")


def server_attach(server, transport):
    """Server._attach: a connection of `server` opened."""
    if SERVER_TRACKS_TRANSPORTS:
        server._attach(transport)
    else:
        server._attach()


def server_detach(server, transport):
    """Server._detach: a connection of `server` closed."""
    if SERVER_TRACKS_TRANSPORTS:
        server._detach(transport)
    else:
        server._detach()


_take(base_events, "Server._attach", "server connection tracking")
_take(base_events, "Server._detach", "server connection tracking")

# ---- borrowed loop methods -------------------------------------------------
# asyncio's selector loop implements the sock_*() methods, serving and Unix
# sockets on four primitives (_add_reader/_remove_reader/_add_writer/
# _remove_writer) that our loop has on the C engine: the loop takes these
# functions as they are (sockets.py).  tests/test_compat.py checks that what
# they use on `self` exists on our loop.
_SELECTOR_METHODS = (
    "sock_recvfrom", "_sock_recvfrom", "sock_recvfrom_into",
    "_sock_recvfrom_into", "_sock_read_done",
    "_sock_sendall", "sock_sendto", "_sock_sendto",
    "sock_connect", "_sock_connect", "_sock_connect_cb", "_sock_write_done",
    "sock_accept", "_sock_accept",
    "_accept_connection", "_accept_connection2",
)
_UNIX_METHODS = (
    "create_unix_connection", "create_unix_server",
    "_sock_sendfile_native", "_sock_sendfile_native_impl",
    "_sock_sendfile_update_filepos", "_sock_add_cancellation_callback",
)
BORROWED_METHODS = {}
for _owner, _names in (
        (selector_events.BaseSelectorEventLoop, _SELECTOR_METHODS),
        (unix_events._UnixSelectorEventLoop, _UNIX_METHODS)):
    for _name in _names:
        BORROWED_METHODS[_name] = _take(
            _owner, _name, f"{_owner.__name__}.{_name}, borrowed")

# Methods of asyncio's selector loop that sockets.py has versions of its own
# (with less work per call): they keep asyncio's docstrings.
OWN_METHOD_DOCS = {
    _name: _take(selector_events.BaseSelectorEventLoop, _name,
                 "its docstring").__doc__
    for _name in ("sock_recv", "sock_recv_into", "sock_sendall")
}

# The accept loop's start, which sockets.py wraps (it caps the accept batch)
# rather than takes as it is.
SELECTOR_START_SERVING = _take(
    selector_events.BaseSelectorEventLoop, "_start_serving",
    "the accept loop, wrapped")

# ---- hooks -----------------------------------------------------------------
# Methods our loop defines because asyncio's base loop (or a borrowed
# method) calls them.  Were one renamed, ours would silently never run.
HOOKS = {
    base_events.BaseEventLoop: (
        "_make_socket_transport", "_make_ssl_transport",
        "_make_datagram_transport", "_make_read_pipe_transport",
        "_make_write_pipe_transport", "_make_subprocess_transport",
        "_write_to_self", "_process_events", "_run_once",
        "_timer_handle_cancelled", "_call_soon", "_sendfile_native"),
    selector_events.BaseSelectorEventLoop: (
        "_add_reader", "_remove_reader", "_add_writer", "_remove_writer",
        "_ensure_fd_no_transport", "_stop_serving", "_start_serving"),
}
for _owner, _names in HOOKS.items():
    for _name in _names:
        _take(_owner, _name, "a method our loop overrides")
del _owner, _names, _name, _cls
