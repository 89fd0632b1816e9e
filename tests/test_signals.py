"""Signals: add_signal_handler()/remove_signal_handler() (unix.py), and a
real Ctrl-C (SIGINT from os.kill) reaching a loop that runs in a child
Python process."""
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import py_async_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s)
             for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT,
                       signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


# ---- add_signal_handler ---------------------------------------------------

def test_handler_runs_as_a_loop_callback(loop, restore_signals):
    calls = []
    done = loop.create_future()

    def handler(*args):
        # On the loop's thread, inside a running loop, with our arguments.
        calls.append((args, threading.get_ident(),
                      asyncio.get_running_loop() is loop))
        if len(calls) == 2:
            done.set_result(None)

    loop.add_signal_handler(signal.SIGUSR1, handler, "a", 1)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(0.05, os.kill, os.getpid(), signal.SIGUSR1)
    run(loop, done)
    me = threading.get_ident()
    assert calls == [(("a", 1), me, True), (("a", 1), me, True)]


def test_signal_wakes_a_blocked_loop(loop, restore_signals):
    # No timers and no ready callbacks: the loop sleeps in epoll until the
    # signal, sent from another thread, wakes it.
    got = []
    loop.add_signal_handler(signal.SIGUSR2, lambda: (got.append(1),
                                                     loop.stop()))
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR2))
    timer.start()
    t0 = time.monotonic()
    loop.run_forever()
    timer.join()
    assert got == [1]
    assert time.monotonic() - t0 < 5


def test_replacing_and_removing_handlers(loop, restore_signals):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "first")
    loop.add_signal_handler(signal.SIGUSR1, got.append, "second")
    os.kill(os.getpid(), signal.SIGUSR1)
    run(loop, asyncio.sleep(0.05))
    assert got == ["second"]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert loop.remove_signal_handler(signal.SIGUSR2) is False


@pytest.mark.parametrize("sig", [0, -1, signal.NSIG, signal.NSIG + 100,
                                 1 << 20])
def test_invalid_signal_numbers_raise_value_error(loop, sig):
    with pytest.raises(ValueError):
        loop.add_signal_handler(sig, lambda: None)
    with pytest.raises(ValueError):
        loop.remove_signal_handler(sig)


def test_non_int_signal_raises_type_error(loop):
    with pytest.raises(TypeError):
        loop.add_signal_handler("SIGINT", lambda: None)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_uncatchable_signals_raise_runtime_error(loop, sig):
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(sig, lambda: None)
    # Nothing was left half installed.
    assert not loop._signal_handlers


def test_coroutine_callback_raises_type_error(loop):
    async def coro():
        pass

    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, coro)


def test_errors_match_asyncio(any_loop, restore_signals):
    def outcome(*args):
        try:
            any_loop.add_signal_handler(*args)
        except Exception as exc:
            return type(exc)
        any_loop.remove_signal_handler(args[0])
        return None

    results = (outcome(0, print), outcome(signal.NSIG + 1, print),
               outcome(signal.SIGKILL, print), outcome(signal.SIGSTOP, print),
               outcome(signal.SIGUSR1, print))
    assert results == (ValueError, ValueError, RuntimeError, RuntimeError,
                       None)


def test_outside_the_main_thread_raises_runtime_error():
    result = []

    def worker():
        lp = py_async_lib.new_event_loop()
        try:
            lp.add_signal_handler(signal.SIGUSR1, lambda: None)
        except RuntimeError:
            result.append("RuntimeError")
        finally:
            lp.close()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert result == ["RuntimeError"]


def test_previous_handlers_restored_when_loop_closes(restore_signals):
    def previous(signum, frame):
        pass

    signal.signal(signal.SIGUSR1, previous)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    wakeup_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_before)

    lp = py_async_lib.new_event_loop()
    lp.add_signal_handler(signal.SIGUSR1, lambda: None)
    lp.add_signal_handler(signal.SIGHUP, lambda: None)
    lp.add_signal_handler(signal.SIGINT, lambda: None)
    assert signal.getsignal(signal.SIGUSR1) is not previous
    lp.close()
    assert signal.getsignal(signal.SIGUSR1) is previous
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # The wakeup fd is back to what it was.
    assert signal.set_wakeup_fd(wakeup_before) == wakeup_before


def test_remove_restores_previous_handler(loop, restore_signals):
    def previous(signum, frame):
        pass

    signal.signal(signal.SIGUSR2, previous)
    loop.add_signal_handler(signal.SIGUSR2, lambda: None)
    assert loop.remove_signal_handler(signal.SIGUSR2)
    assert signal.getsignal(signal.SIGUSR2) is previous


# ---- a real Ctrl-C --------------------------------------------------------

def _spawn(script):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)


def _ctrl_c(script):
    proc = _spawn(script)
    try:
        line = proc.stdout.readline()
        assert line == b"running\n", (line, proc.stderr.read())
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), err.decode()


def test_ctrl_c_interrupts_run_forever_and_loop_still_closes():
    rc, out, err = _ctrl_c("""
        import py_async_lib
        loop = py_async_lib.new_event_loop()
        # Blocked in epoll with nothing to do but a far timer.
        loop.call_later(3600, print, "never")
        loop.call_soon(lambda: print("running", flush=True))
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            print("KeyboardInterrupt")
        print("running:", loop.is_running())
        loop.close()
        print("closed:", loop.is_closed())
    """)
    assert rc == 0, err
    assert out.split("\n")[:3] == ["KeyboardInterrupt", "running: False",
                                   "closed: True"]


def test_ctrl_c_in_asyncio_run_cancels_main_task():
    # The Runner's SIGINT handling (cancel the main task, then raise
    # KeyboardInterrupt) on our loop.
    rc, out, err = _ctrl_c("""
        import asyncio
        import py_async_lib

        async def main():
            print("running", flush=True)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                print("cancelled")
                raise

        try:
            py_async_lib.run(main())
        except KeyboardInterrupt:
            print("KeyboardInterrupt")
    """)
    assert rc == 0, err
    assert out.split("\n")[:2] == ["cancelled", "KeyboardInterrupt"]


def test_ctrl_c_with_a_sigint_handler_on_the_loop():
    rc, out, err = _ctrl_c("""
        import signal
        import py_async_lib
        loop = py_async_lib.new_event_loop()
        loop.add_signal_handler(signal.SIGINT, lambda: (print("handled"),
                                                        loop.stop()))
        loop.call_soon(lambda: print("running", flush=True))
        loop.run_forever()
        loop.close()
        print("default again:",
              signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    """)
    assert rc == 0, err
    assert out.split("\n")[:2] == ["handled", "default again: True"]


def test_ctrl_c_default_exit_status():
    # Unhandled, KeyboardInterrupt ends the interpreter the way Ctrl-C
    # does: killed by SIGINT.
    rc, out, err = _ctrl_c("""
        import py_async_lib
        loop = py_async_lib.new_event_loop()
        loop.call_soon(lambda: print("running", flush=True))
        loop.run_forever()
    """)
    assert rc == -signal.SIGINT
    assert "KeyboardInterrupt" in err
