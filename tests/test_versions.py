"""What differs between Python versions, on our loop as asyncio has it:
entry points with and without policies, the policy warnings of 3.14, child
watchers (3.11-3.13), and each version's additions to the loop API, side by
side with asyncio's loop where the version has them."""
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
import warnings

import pytest

import py_async_lib
from py_async_lib import _compat
from py_async_lib.loop import EventLoop

PY = sys.executable
V = sys.version_info


def run_code(code, *args):
    return subprocess.run([PY, *args, "-c", code], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def clean_policy():
    """asyncio's default policy before and after the test, as a fresh
    interpreter has it."""
    _compat.set_event_loop_policy(None)
    yield
    _compat.set_event_loop_policy(None)


# ---- import --------------------------------------------------------------

def test_import_uses_nothing_deprecated():
    out = run_code("import py_async_lib, py_async_lib.loop",
                   "-W", "error::DeprecationWarning")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_star_import_warns_no_more_than_asyncio():
    code = ("import warnings; warnings.simplefilter('error'); "
            "from asyncio import *; from py_async_lib import *; "
            "print(sorted(n for n in dir() if 'olicy' in n))")
    out = run_code(code)
    assert out.returncode == 0, out.stderr
    # Policy classes are in __all__ exactly where asyncio's are.
    has_classes = "DefaultEventLoopPolicy" in asyncio.__all__
    assert ("EventLoopPolicy" in out.stdout) == has_classes


# ---- entry points ----------------------------------------------------------

async def _loop_type():
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_run():
    assert py_async_lib.run(_loop_type()) is EventLoop


def test_run_debug():
    async def main():
        return asyncio.get_running_loop().get_debug()
    assert py_async_lib.run(main(), debug=True) is True


def test_run_refuses_a_running_loop_as_asyncio_run_does():
    async def outer(run):
        coro = _loop_type()
        try:
            run(coro)
        except RuntimeError as exc:
            return str(exc)
        finally:
            coro.close()
    ours = py_async_lib.run(outer(py_async_lib.run))
    theirs = asyncio.run(outer(asyncio.run))
    assert ours == theirs


def test_run_leaves_the_policy_alone(clean_policy):
    before = _compat.current_policy()
    py_async_lib.run(_loop_type())
    assert _compat.current_policy() is before


def test_new_event_loop():
    loop = py_async_lib.new_event_loop()
    try:
        assert type(loop) is EventLoop
        assert loop.run_until_complete(_loop_type()) is EventLoop
    finally:
        loop.close()


def test_runner_loop_factory():
    with asyncio.Runner(loop_factory=py_async_lib.new_event_loop) as runner:
        assert runner.run(_loop_type()) is EventLoop
        assert runner.run(_loop_type()) is EventLoop
        assert type(runner.get_loop()) is EventLoop


@pytest.mark.skipif(V < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_loop_factory():
    assert asyncio.run(_loop_type(),
                       loop_factory=py_async_lib.new_event_loop) is EventLoop


@pytest.mark.skipif(V < (3, 13),
                    reason="IsolatedAsyncioTestCase.loop_factory is 3.13+")
@pytest.mark.parametrize("factory", [
    py_async_lib.EventLoop, staticmethod(py_async_lib.new_event_loop)])
def test_isolated_asyncio_test_case_loop_factory(factory):
    seen = []

    class Case(unittest.IsolatedAsyncioTestCase):
        loop_factory = factory

        async def asyncSetUp(self):
            seen.append(type(asyncio.get_running_loop()))

        async def test_it(self):
            seen.append(await _loop_type())

    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(Case).run(result)
    assert result.wasSuccessful(), result.errors + result.failures
    assert seen == [EventLoop, EventLoop]


# ---- policies --------------------------------------------------------------

needs_policies = pytest.mark.skipif(not _compat.HAS_POLICIES,
                                    reason="this asyncio has no policies")


@needs_policies
def test_install_in_a_fresh_interpreter():
    code = ("import asyncio, warnings, py_async_lib\n"
            "with warnings.catch_warnings():\n"
            "    warnings.simplefilter('ignore', DeprecationWarning)\n"
            "    py_async_lib.install()\n"
            "print(asyncio.run(asyncio.sleep(0, 'ok')),"
            " type(asyncio.new_event_loop()).__name__)")
    out = run_code(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "EventLoop"]


def _warnings_of(func):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = func()
    return result, [(w.category, os.path.basename(w.filename))
                    for w in caught]


@needs_policies
def test_install_warns_where_set_event_loop_policy_does(clean_policy):
    _, theirs = _warnings_of(lambda: asyncio.set_event_loop_policy(None))
    _, ours = _warnings_of(py_async_lib.install)
    assert type(_compat.current_policy()).__name__ == "EventLoopPolicy"
    # The same category, both at the caller's line (this file).
    assert ours == theirs
    assert ours == ([(DeprecationWarning, "test_versions.py")]
                    if _compat.POLICIES_DEPRECATED else [])


@needs_policies
def test_install_makes_asyncio_loops_ours(clean_policy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        py_async_lib.install()
    loop = asyncio.new_event_loop()
    try:
        assert type(loop) is EventLoop
    finally:
        loop.close()
    assert asyncio.run(_loop_type()) is EventLoop


@needs_policies
def test_policy_class_warns_where_asyncio_default_policy_does():
    _, theirs = _warnings_of(lambda: asyncio.DefaultEventLoopPolicy)
    cls, ours = _warnings_of(lambda: py_async_lib.EventLoopPolicy)
    assert [c for c, _ in ours] == [c for c, _ in theirs]
    if _compat.POLICIES_DEPRECATED:
        assert ours == [(DeprecationWarning, "test_versions.py")]
    # Making one and using it warns as little as asyncio's does.
    asyncio_cls = _compat.UnixDefaultEventLoopPolicy
    _, theirs = _warnings_of(lambda: asyncio_cls().new_event_loop().close())
    _, ours = _warnings_of(lambda: cls().new_event_loop().close())
    assert ours == theirs == []
    loop = cls().new_event_loop()
    try:
        assert type(loop) is EventLoop
    finally:
        loop.close()


@pytest.mark.skipif(not _compat.HAS_POLICIES or _compat.HAS_CHILD_WATCHERS,
                    reason="3.14+: policies without child watchers")
def test_policy_has_no_child_watcher_api_where_asyncio_has_none():
    cls = _compat.UnixDefaultEventLoopPolicy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ours = py_async_lib.EventLoopPolicy
    for name in ("get_child_watcher", "set_child_watcher"):
        assert not hasattr(cls, name)
        assert not hasattr(ours, name)


# What a Python without the policy system (3.16) lacks: hidden here.
_NO_POLICY_NAMES = [
    "asyncio.unix_events:_UnixDefaultEventLoopPolicy",
    "asyncio.unix_events:DefaultEventLoopPolicy",
    "asyncio.events:_BaseDefaultEventLoopPolicy",
    "asyncio.events:BaseDefaultEventLoopPolicy",
    "asyncio.events:set_event_loop_policy",
    "asyncio.events:_set_event_loop_policy",
    "asyncio:set_event_loop_policy",
]


def _without_policies(code):
    prelude = "import asyncio, importlib\n"
    for name in _NO_POLICY_NAMES:
        mod, _, attr = name.partition(":")
        prelude += (f"o = importlib.import_module({mod!r})\n"
                    f"if hasattr(o, {attr!r}): delattr(o, {attr!r})\n")
    return run_code(prelude + code, "-W", "error::DeprecationWarning")


def test_without_policies_the_entry_points_work():
    code = ("import py_async_lib\n"
            "from py_async_lib import _compat\n"
            "assert not _compat.HAS_POLICIES\n"
            "async def main():\n"
            "    return type(asyncio.get_running_loop()).__name__\n"
            "print(py_async_lib.run(main()))\n"
            "with asyncio.Runner(loop_factory=py_async_lib.new_event_loop)"
            " as r:\n"
            "    print(r.run(main()))\n"
            "from py_async_lib import *\n"
            "print(sorted(py_async_lib.__all__))\n")
    out = _without_policies(code)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["EventLoop", "EventLoop"]
    assert lines[2] == ("['EventLoop', 'HISTOGRAM_BOUNDS', 'LoopStats', "
                        "'new_event_loop', 'run']")


def test_without_policies_install_says_what_to_use():
    out = _without_policies("import py_async_lib\npy_async_lib.install()")
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: py_async_lib.install() "), last
    for alternative in ("py_async_lib.run(", "loop_factory=",
                        "asyncio.Runner(", "py_async_lib.new_event_loop()"):
        assert alternative in last


def test_without_policies_the_policy_class_says_what_to_use():
    code = ("import py_async_lib\n"
            "assert not hasattr(py_async_lib, 'EventLoopPolicy')\n"
            "py_async_lib.EventLoopPolicy\n")
    out = _without_policies(code)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("AttributeError: py_async_lib.EventLoopPolicy "), \
        last
    assert "py_async_lib.run(" in last and "loop_factory=" in last


# ---- child watchers (3.11 to 3.13) -----------------------------------------

needs_watchers = pytest.mark.skipif(not _compat.HAS_CHILD_WATCHERS,
                                    reason="3.14 removed child watchers")


def _quiet(func, *args):
    # 3.12 and 3.13 deprecate the child watcher API.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return func(*args)


async def _spawn():
    proc = await asyncio.create_subprocess_exec(PY, "-c", "pass")
    return await proc.wait()


def _recording_watcher_class():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)

        class Recording(asyncio.ThreadedChildWatcher):
            pids = []

            def add_child_handler(self, pid, callback, *args):
                self.pids.append(pid)
                super().add_child_handler(pid, callback, *args)
    return Recording


@needs_watchers
def test_inactive_watcher_on_asyncio_policy_refuses_to_spawn(any_loop,
                                                              clean_policy):
    watcher = _quiet(asyncio.SafeChildWatcher)   # attached to no loop
    _quiet(asyncio.set_child_watcher, watcher)
    try:
        with pytest.raises(RuntimeError, match="is not activated"):
            any_loop.run_until_complete(_spawn())
    finally:
        _quiet(asyncio.set_child_watcher, None)


@needs_watchers
def test_watcher_on_asyncio_policy_is_used(any_loop, clean_policy):
    watcher = _quiet(_recording_watcher_class())
    _quiet(asyncio.set_child_watcher, watcher)
    try:
        assert any_loop.run_until_complete(_spawn()) == 0
        assert len(watcher.pids) == 1
    finally:
        _quiet(asyncio.set_child_watcher, None)


@needs_watchers
def test_watcher_on_our_policy_is_used(clean_policy):
    _compat.set_event_loop_policy(py_async_lib.EventLoopPolicy())
    watcher = _quiet(_recording_watcher_class())
    _quiet(asyncio.set_child_watcher, watcher)
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(_spawn()) == 0
        assert len(watcher.pids) == 1
        _quiet(asyncio.set_child_watcher, _quiet(asyncio.SafeChildWatcher))
        with pytest.raises(RuntimeError, match="is not activated"):
            loop.run_until_complete(_spawn())
    finally:
        _quiet(asyncio.set_child_watcher, None)
        loop.close()


@needs_watchers
def test_default_watcher_asyncio_made_up_is_not_needed(loop, clean_policy,
                                                       monkeypatch):
    # asyncio's policy makes a watcher when asked (its own loop asks); our
    # loop watches the pidfd itself instead, as it does with none.
    watcher = _quiet(asyncio.get_child_watcher)
    assert type(watcher) in (asyncio.ThreadedChildWatcher,
                             asyncio.PidfdChildWatcher)

    def forbidden(*args):
        raise AssertionError("the made-up watcher was used")
    monkeypatch.setattr(type(watcher), "add_child_handler", forbidden)
    assert loop.run_until_complete(_spawn()) == 0


# ---- per-version loop API, side by side ------------------------------------

def test_add_signal_handler_warns_nothing(any_loop):
    # 3.14 deprecated asyncio.iscoroutinefunction, which the check of the
    # callback used to call.
    import signal
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        any_loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        assert any_loop.remove_signal_handler(signal.SIGUSR1)

        async def coro():
            pass
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            any_loop.add_signal_handler(signal.SIGUSR1, coro)


def test_create_task_name_and_context(any_loop):
    import contextvars
    var = contextvars.ContextVar("var", default="outer")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "inner")

    async def read():
        return var.get()
    task = any_loop.create_task(read(), name="named", context=ctx)
    assert task.get_name() == "named"
    assert any_loop.run_until_complete(task) == "inner"


@pytest.mark.skipif(V < (3, 14), reason="eager_start is 3.14+")
def test_create_task_eager_start(any_loop):
    started = []

    async def coro():
        started.append(True)
        await asyncio.sleep(0)
        return "done"

    async def main():
        task = asyncio.get_running_loop().create_task(coro(),
                                                      eager_start=True)
        assert started == [True]     # ran up to its first await already
        return await task
    assert any_loop.run_until_complete(main()) == "done"


@pytest.mark.skipif(V < (3, 14), reason="create_task(**kwargs) is 3.14+")
def test_create_task_kwargs_reach_the_task_factory(any_loop):
    seen = []

    def factory(loop, coro, **kwargs):
        seen.append(sorted(kwargs))
        return asyncio.Task(coro, loop=loop, **kwargs)
    any_loop.set_task_factory(factory)
    task = any_loop.create_task(asyncio.sleep(0, 1), name="n",
                                eager_start=False)
    assert any_loop.run_until_complete(task) == 1
    assert seen == [["eager_start", "name"]]


@pytest.mark.skipif(V < (3, 12), reason="eager task factories are 3.12+")
def test_eager_task_factory(any_loop):
    order = []

    async def coro(n):
        order.append(f"start {n}")
        await asyncio.sleep(0)
        order.append(f"end {n}")
        return n

    async def main():
        t1 = asyncio.create_task(coro(1))
        order.append("created")
        t2 = asyncio.create_task(coro(2))
        return await asyncio.gather(t1, t2)

    any_loop.set_task_factory(asyncio.eager_task_factory)
    assert any_loop.run_until_complete(main()) == [1, 2]
    assert order == ["start 1", "created", "start 2", "end 1", "end 2"]


@pytest.mark.skipif(V < (3, 12), reason="create_eager_task_factory is 3.12+")
def test_create_eager_task_factory_custom_task(any_loop):
    class MyTask(asyncio.Task):
        pass

    async def main():
        task = asyncio.create_task(asyncio.sleep(0, "x"))
        assert type(task) is MyTask
        return await task
    any_loop.set_task_factory(asyncio.create_eager_task_factory(MyTask))
    assert any_loop.run_until_complete(main()) == "x"


def _executor_shutdown_warns(loop):
    """Whether shutdown_default_executor(timeout=0.01) warns that a worker
    still runs.  (3.12.1's waits for the workers before the timeout starts,
    and then does not: the worker is let go after a second in any case.)"""
    release = threading.Event()

    async def main():
        fut = loop.run_in_executor(None, release.wait, 60)   # still running
        letgo = threading.Timer(1.0, release.set)
        letgo.start()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await loop.shutdown_default_executor(timeout=0.01)
        release.set()
        letgo.cancel()
        await fut
        return [str(w.message) for w in caught
                if issubclass(w.category, RuntimeWarning)]
    try:
        return loop.run_until_complete(main())
    finally:
        release.set()
        loop.close()


@pytest.mark.skipif(V < (3, 12),
                    reason="shutdown_default_executor(timeout) is 3.12+")
def test_shutdown_default_executor_timeout():
    ours = _executor_shutdown_warns(py_async_lib.new_event_loop())
    theirs = _executor_shutdown_warns(asyncio.SelectorEventLoop())
    assert ours == theirs
    if V >= (3, 13):
        assert ours == ["The executor did not finishing joining its "
                        "threads within 0.01 seconds."]


async def _serve_one(loop, **kwargs):
    """A TCP server with one client connected: (server, client reader,
    client writer, the server side's transport)."""
    accepted = loop.create_future()

    class Proto(asyncio.Protocol):
        def connection_made(self, transport):
            accepted.set_result(transport)

    server = await loop.create_server(Proto, "127.0.0.1", 0, **kwargs)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return server, reader, writer, await accepted


@pytest.mark.skipif(V < (3, 13), reason="close_clients() is 3.13+")
def test_server_close_clients(any_loop):
    async def main():
        server, reader, writer, transport = await _serve_one(any_loop)
        server.close()
        server.close_clients()
        assert transport.is_closing()
        assert await reader.read() == b""        # an orderly close
        writer.close()
        await server.wait_closed()
    any_loop.run_until_complete(main())


@pytest.mark.skipif(V < (3, 13), reason="abort_clients() is 3.13+")
def test_server_abort_clients(any_loop):
    # The client reads nothing, so most of what the server writes stays in
    # the transport's buffer: abort_clients() drops it and the connection
    # is lost at once, where close_clients() would wait for the buffer.
    size = 32 * 1024 * 1024
    lost = any_loop.create_future()

    class Proto(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(b"x" * size)

        def connection_lost(self, exc):
            lost.set_result(exc)

    async def main():
        server = await any_loop.create_server(Proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        server.close()
        server.abort_clients()
        assert await lost is None
        received = 0
        try:
            while chunk := await reader.read(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        writer.close()
        await server.wait_closed()
        return received
    assert any_loop.run_until_complete(main()) < size


@pytest.mark.skipif(V < (3, 13), reason="wait_closed() waits for clients")
def test_server_wait_closed_waits_for_clients(any_loop):
    async def main():
        server, reader, writer, transport = await _serve_one(any_loop)
        server.close()
        waiter = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.01)
        still_waiting = not waiter.done()
        transport.close()
        await waiter
        writer.close()
        return still_waiting
    assert any_loop.run_until_complete(main()) is True


@pytest.mark.skipif(V < (3, 13), reason="keep_alive is 3.13+")
@pytest.mark.parametrize("keep_alive", [True, False])
def test_create_server_keep_alive(any_loop, keep_alive):
    async def main():
        server, reader, writer, transport = await _serve_one(
            any_loop, keep_alive=keep_alive)
        listening = server.sockets[0].getsockopt(socket.SOL_SOCKET,
                                                 socket.SO_KEEPALIVE)
        accepted = transport.get_extra_info("socket").getsockopt(
            socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        writer.close()
        server.close()
        server.close_clients()
        await server.wait_closed()
        return bool(listening), bool(accepted)
    assert any_loop.run_until_complete(main()) == (keep_alive, keep_alive)


@pytest.mark.skipif(V < (3, 13), reason="cleanup_socket is 3.13+")
@pytest.mark.parametrize("cleanup", [True, False])
def test_create_unix_server_cleanup_socket(any_loop, cleanup):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sock")

        async def main():
            server = await any_loop.create_unix_server(
                asyncio.Protocol, path, cleanup_socket=cleanup)
            assert os.path.exists(path)
            server.close()
            await server.wait_closed()
            return os.path.exists(path)
        assert any_loop.run_until_complete(main()) is (not cleanup)


@pytest.mark.skipif(V < (3, 13), reason="cleanup_socket is 3.13+")
def test_create_unix_server_leaves_a_replaced_path(any_loop):
    # Someone else bound the path after us: not ours to unlink.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sock")

        async def main():
            server = await any_loop.create_unix_server(asyncio.Protocol, path)
            os.unlink(path)
            other = socket.socket(socket.AF_UNIX)
            other.bind(path)
            server.close()
            await server.wait_closed()
            other.close()
            return os.path.exists(path)
        assert any_loop.run_until_complete(main()) is True


# ---- python -m asyncio ps / pstree (3.14) ----------------------------------

_PS_CHILD = """
import asyncio, sys, py_async_lib

async def worker():
    await asyncio.sleep(3600)

async def main():
    async with asyncio.TaskGroup() as tg:
        tg.create_task(worker(), name="worker-one")
        tg.create_task(worker(), name="worker-two")
        print(type(asyncio.get_running_loop()).__name__, flush=True)
        sys.stdin.read()
        raise SystemExit

py_async_lib.run(main())
"""


@pytest.mark.skipif(V < (3, 14), reason="python -m asyncio ps is 3.14+")
@pytest.mark.parametrize("command", ["ps", "pstree"])
def test_asyncio_ps_shows_our_tasks(command):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(py_async_lib.__file__)),
         os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([PY, "-c", _PS_CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "EventLoop"
        out = subprocess.run([PY, "-m", "asyncio", command, str(child.pid)],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0 and ("ermission" in out.stderr
                                    or "ptrace" in out.stderr):
            pytest.skip(f"cannot inspect another process: {out.stderr}")
        assert out.returncode == 0, out.stderr
        for name in ("Task-1", "worker-one", "worker-two"):
            assert name in out.stdout
        assert "worker" in out.stdout and "main" in out.stdout
    finally:
        child.stdin.close()
        child.wait(60)


@pytest.mark.skipif(_compat.ThreadSafeHandle is None,
                    reason="call_soon_threadsafe() handles take a lock "
                           "from Python 3.14 on")
@pytest.mark.parametrize("factory", [py_async_lib.new_event_loop,
                                     asyncio.SelectorEventLoop])
def test_threadsafe_handle_cancelled_under_its_lock_does_not_run(factory):
    # 3.14's call_soon_threadsafe() handle: a cancel() from another thread
    # that holds its lock while the loop reaches it wins, as on asyncio.
    loop = factory()
    try:
        ran = []
        handle = loop.call_soon_threadsafe(ran.append, 1)
        assert isinstance(handle, _compat.ThreadSafeHandle)
        locked = threading.Event()

        def canceller():
            with handle._lock:
                locked.set()
                # Long enough for the loop to be waiting on the lock.
                threading.Event().wait(0.2)
                handle.cancel()

        thread = threading.Thread(target=canceller)
        thread.start()
        locked.wait()
        loop.run_until_complete(asyncio.sleep(0))
        thread.join()
        assert ran == []
    finally:
        loop.close()
