"""Child processes: asyncio.create_subprocess_exec/shell, subprocess_exec()
protocols, exit statuses, Popen keyword arguments, and the way the loop sees
children exit (pidfds in the C loop; a waitpid thread where there are none).
"""
import asyncio
import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import py_async_lib

from fdcheck import leaked_fds, open_fds
from py_async_lib import processes

PY = sys.executable
PIPE = asyncio.subprocess.PIPE
MiB = 1024 * 1024


def run(loop, coro, timeout=60):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))




def is_gone(pid):
    """True once pid is neither running nor a zombie of ours."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    # Same pid, another process (pid reuse) would not be our zombie.
    return state != "Z" and not _is_our_child(pid)


def _is_our_child(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[2])
    except FileNotFoundError:
        return False
    return ppid == os.getpid()


def wait_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while not is_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---- create_subprocess_exec / shell -------------------------------------

def test_exec_stdout_and_returncode(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "print('hello'); raise SystemExit(3)", stdout=PIPE)
        out, err = await proc.communicate()
        return out, err, proc.returncode

    assert run(loop, main()) == (b"hello\n", None, 3)


def test_shell_exit_code_and_wait(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell("exit 7")
        return await proc.wait(), proc.returncode

    assert run(loop, main()) == (7, 7)


def test_communicate_one_mib_round_trip_through_cat(loop):
    data = os.urandom(MiB)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=PIPE, stdout=PIPE)
        out, _ = await proc.communicate(data)
        return out, proc.returncode

    out, rc = run(loop, main())
    assert rc == 0
    assert out == data


def test_large_data_both_ways_at_once(loop):
    # The child echoes stdin to stdout and writes as much to stderr while
    # it reads: every pipe is far above its 64 KiB kernel buffer at once, so
    # this deadlocks unless the loop writes and reads concurrently.
    code = (
        "import sys\n"
        "r, o, e = sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer\n"
        "while True:\n"
        "    chunk = r.read1(65536)\n"
        "    if not chunk: break\n"
        "    o.write(chunk); e.write(chunk.upper())\n"
    )
    data = b"abcdefghij" * (300 * 1024)   # 3 MiB

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", code, stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await proc.communicate(data)
        return out, err, await proc.wait()

    out, err, rc = run(loop, main())
    assert rc == 0
    assert out == data
    assert err == data.upper()


def test_stream_api_interactive(loop):
    code = ("import sys\n"
            "for line in sys.stdin:\n"
            "    sys.stdout.write(line.upper()); sys.stdout.flush()\n")

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", code, stdin=PIPE, stdout=PIPE)
        answers = []
        for word in (b"one", b"two", b"three"):
            proc.stdin.write(word + b"\n")
            await proc.stdin.drain()
            answers.append(await proc.stdout.readline())
        proc.stdin.close()
        await proc.stdin.wait_closed()
        rest = await proc.stdout.read()
        return answers, rest, await proc.wait()

    assert run(loop, main()) == ([b"ONE\n", b"TWO\n", b"THREE\n"], b"", 0)


def test_many_children_in_parallel(loop):
    async def one(i):
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", f"print({i}); raise SystemExit({i % 5})", stdout=PIPE)
        out, _ = await proc.communicate()
        return int(out), proc.returncode

    async def main():
        return await asyncio.gather(*(one(i) for i in range(12)))

    assert run(loop, main()) == [(i, i % 5) for i in range(12)]


# ---- errors ---------------------------------------------------------------

def test_missing_program_raises_file_not_found(loop):
    # (The loop fixture checks that no pipe end is left open.)
    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec(
                "/nonexistent/program-py-async-lib", stdin=PIPE, stdout=PIPE,
                stderr=PIPE)
        with pytest.raises(FileNotFoundError):
            await loop.subprocess_exec(asyncio.SubprocessProtocol,
                                       "no-such-program-py-async-lib")

    run(loop, main())


def test_kill_after_exit_raises_process_lookup_error(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "pass")
        assert await proc.wait() == 0
        with pytest.raises(ProcessLookupError):
            proc.kill()
        with pytest.raises(ProcessLookupError):
            proc.terminate()
        with pytest.raises(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    run(loop, main())


def test_kill_after_exit_matches_asyncio(any_loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "pass")
        await proc.wait()
        try:
            proc.kill()
        except Exception as exc:
            return type(exc)
        return None

    assert run(any_loop, main()) is ProcessLookupError


def test_kill_terminate_send_signal_returncodes(loop):
    async def one(how):
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import time; print('up', flush=True); time.sleep(60)",
            stdout=PIPE)
        assert await proc.stdout.readline() == b"up\n"
        if how == "kill":
            proc.kill()
        elif how == "terminate":
            proc.terminate()
        else:
            proc.send_signal(signal.SIGUSR1)
        return await proc.wait()

    async def main():
        return [await one(h) for h in ("kill", "terminate", "signal")]

    assert run(loop, main()) == [-signal.SIGKILL, -signal.SIGTERM,
                                 -signal.SIGUSR1]


def test_invalid_arguments_raise_value_error(loop):
    async def main():
        with pytest.raises(ValueError):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "true",
                                       universal_newlines=True)
        with pytest.raises(ValueError):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, ["ls"])
        with pytest.raises(ValueError):
            await asyncio.create_subprocess_exec("true", text=True)

    run(loop, main())


# ---- no zombies, no fds left ---------------------------------------------

def test_no_zombies_and_no_fds_left(loop):
    before = open_fds()
    pids = []

    async def main():
        for _ in range(5):
            proc = await asyncio.create_subprocess_exec(
                "cat", stdin=PIPE, stdout=PIPE, stderr=PIPE)
            pids.append(proc.pid)
            await proc.communicate(b"x" * 100000)
        proc = await asyncio.create_subprocess_shell("exit 3")
        pids.append(proc.pid)
        await proc.wait()

    run(loop, main())
    for pid in pids:
        # Reaped already: waitpid finds no such child, /proc has no zombie.
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        assert is_gone(pid)
    leaked = leaked_fds(before)
    assert not leaked, leaked


def test_transport_close_kills_and_reaps(loop):
    async def main():
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol, PY, "-c",
            "import time; time.sleep(60)", stdin=PIPE, stdout=PIPE)
        pid = transport.get_pid()
        transport.close()
        rc = await transport._wait()
        return pid, rc

    pid, rc = run(loop, main())
    assert rc == -signal.SIGKILL
    assert is_gone(pid)


def test_child_left_running_is_reaped_after_loop_close():
    before = open_fds()
    lp = py_async_lib.new_event_loop()

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import time; time.sleep(0.3)")
        return proc

    proc = run(lp, main())
    pid = proc.pid
    # Closed before the child ends: the pidfd goes with the C loop, and a
    # thread reaps the child instead.
    proc._transport.close()
    lp.close()
    assert wait_gone(pid)
    # Reaped through the Popen object, which knows the status.
    deadline = time.monotonic() + 10
    while proc._transport._proc.returncode is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert proc._transport._proc.returncode == -signal.SIGKILL
    assert not leaked_fds(before)


# ---- how the loop sees children exit ---------------------------------------

def test_no_child_watcher_no_sigchld_handler_no_thread(loop, monkeypatch):
    def forbidden(*args):
        raise AssertionError("the policy's child watcher was used")

    if hasattr(asyncio, "get_child_watcher"):    # 3.14 has none
        monkeypatch.setattr(asyncio.events, "get_child_watcher", forbidden)
        monkeypatch.setattr(asyncio, "get_child_watcher", forbidden)
    sigchld = signal.getsignal(signal.SIGCHLD)
    threads = set(threading.enumerate())

    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "pass")
        assert not set(threading.enumerate()) - threads
        return await proc.wait()

    assert run(loop, main()) == 0
    assert signal.getsignal(signal.SIGCHLD) == sigchld
    assert not loop._children


def test_subprocess_in_a_thread_loop():
    # No SIGCHLD handler, so a loop outside the main thread runs children.
    result = []

    def worker():
        lp = py_async_lib.new_event_loop()
        try:
            async def main():
                proc = await asyncio.create_subprocess_exec(
                    PY, "-c", "print('t')", stdout=PIPE)
                out, _ = await proc.communicate()
                return out, proc.returncode
            result.append(run(lp, main()))
        finally:
            lp.close()

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    assert result == [(b"t\n", 0)]


def test_watch_child_that_already_exited(loop):
    # The race of a child that exits before the watch is set up: pidfd_open
    # works on a zombie, which the loop then reaps.
    proc = subprocess.Popen([PY, "-c", "raise SystemExit(5)"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)   # a zombie now
    got = loop.create_future()
    loop._watch_child(proc.pid, lambda pid, rc: got.set_result((pid, rc)))
    assert run(loop, got) == (proc.pid, 5)
    assert is_gone(proc.pid)
    proc.returncode = 5   # Popen need not poll a reaped child


def test_watch_child_already_reaped_says_the_status_is_lost(loop):
    proc = subprocess.Popen([PY, "-c", "pass"])
    proc.wait()
    got = loop.create_future()
    loop._watch_child(proc.pid, lambda pid, rc: got.set_result(rc))
    assert run(loop, got) is None


def test_child_reaped_elsewhere_gives_255_with_warning(loop, caplog):
    # A waitpid() outside Popen and the loop takes the status: asyncio's
    # answer is 255 and a warning.
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import time; time.sleep(0.2)")
        os.waitpid(proc.pid, 0)   # the loop does not run meanwhile
        return await proc.wait()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        assert run(loop, main()) == 255
    assert "Unknown child process pid" in caplog.text


def test_exit_status_255_is_not_a_lost_status(loop, caplog):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "raise SystemExit(255)")
        return await proc.wait()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        assert run(loop, main()) == 255
    assert "Unknown child process pid" not in caplog.text


def test_popen_reaping_first_keeps_the_real_returncode(loop):
    # Popen.wait() (or poll(), which asyncio's close() and send_signal()
    # use) may reap the child before the loop: Popen's status then counts.
    async def main():
        transport, protocol = await loop.subprocess_exec(
            asyncio.SubprocessProtocol, PY, "-c", "raise SystemExit(4)")
        transport.get_extra_info("subprocess").wait()
        rc = await transport._wait()
        transport.close()
        return rc

    assert run(loop, main()) == 4


def test_waitpid_thread_when_pidfds_are_missing(loop, monkeypatch):
    class NoPidfd:
        def __getattr__(self, name):
            return getattr(processes.lib, name)

        @staticmethod
        def loop_child_watch(*args):
            return -errno.ENOSYS

    monkeypatch.setattr(processes, "lib", NoPidfd())

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=PIPE, stdout=PIPE)
        out, _ = await proc.communicate(b"via thread")
        killed = await asyncio.create_subprocess_exec(
            PY, "-c", "import time; time.sleep(60)")
        killed.kill()
        return out, proc.returncode, await killed.wait(), killed.pid

    out, rc, krc, kpid = run(loop, main())
    assert (out, rc, krc) == (b"via thread", 0, -signal.SIGKILL)
    assert is_gone(kpid)


# ---- Popen keyword arguments ------------------------------------------------

def _out(loop, *args, **kwargs):
    async def main():
        proc = await asyncio.create_subprocess_exec(*args, stdout=PIPE,
                                                    **kwargs)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        return out.decode()
    return run(loop, main())


def test_kwargs_cwd_env(loop, tmp_path):
    code = "import os; print(os.getcwd()); print(os.environ.get('PAL_X'))"
    out = _out(loop, PY, "-c", code, cwd=str(tmp_path),
               env={**os.environ, "PAL_X": "42"})
    assert out.split() == [str(tmp_path), "42"]


def test_kwargs_pass_fds(loop):
    r, w = os.pipe()
    try:
        out = _out(loop, PY, "-c",
                   f"import os; os.write({w}, b'through fd'); print('ok')",
                   pass_fds=(w,))
        assert out == "ok\n"
        assert os.read(r, 100) == b"through fd"
    finally:
        os.close(r)
        os.close(w)


def test_kwargs_sessions_groups_umask_preexec(loop):
    code = ("import os; print(os.getsid(0), os.getpgid(0), "
            "os.umask(0), os.environ.get('PAL_PRE'))")
    sid, pgid, umask, pre = _out(
        loop, PY, "-c", code, start_new_session=True, umask=0o27,
        preexec_fn=lambda: os.environ.__setitem__("PAL_PRE", "ran")).split()
    assert int(sid) != os.getsid(0)
    assert int(umask) == 0o27
    assert pre == "ran"

    pgid = int(_out(loop, PY, "-c", "import os; print(os.getpgid(0))",
                    process_group=0))
    assert pgid != os.getpgid(0)


def test_kwargs_user_group(loop):
    code = "import os; print(os.getuid(), os.getgid())"
    out = _out(loop, PY, "-c", code, user=os.getuid(), group=os.getgid())
    assert out.split() == [str(os.getuid()), str(os.getgid())]


def test_std_streams_devnull_stdout_fd_and_file(loop, tmp_path):
    code = ("import sys; data = sys.stdin.read(); "
            "print('out', len(data)); print('err', file=sys.stderr)")
    path = tmp_path / "out.txt"

    async def main():
        # stdin DEVNULL, stderr into stdout
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", code, stdin=asyncio.subprocess.DEVNULL, stdout=PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, err = await proc.communicate()
        assert err is None
        assert sorted(out.split(b"\n")) == [b"", b"err", b"out 0"]
        # stdout to a file object, stdin from a raw fd
        r, w = os.pipe()
        os.write(w, b"12345")
        os.close(w)
        with open(path, "wb") as f:
            proc = await asyncio.create_subprocess_exec(
                PY, "-c", code, stdin=r, stdout=f,
                stderr=asyncio.subprocess.DEVNULL)
            await proc.wait()
        os.close(r)
        assert path.read_bytes() == b"out 5\n"

    run(loop, main())


# ---- the protocol level -----------------------------------------------------

def test_subprocess_protocol_callbacks(loop):
    events = []

    class Proto(asyncio.SubprocessProtocol):
        def connection_made(self, transport):
            self.transport = transport
            events.append("made")

        def pipe_data_received(self, fd, data):
            events.append(("data", fd, data))

        def pipe_connection_lost(self, fd, exc):
            events.append(("pipe_lost", fd, exc))

        def process_exited(self):
            events.append(("exited", self.transport.get_returncode()))

        def connection_lost(self, exc):
            events.append(("lost", exc))
            done.set_result(None)

    done = loop.create_future()

    async def main():
        transport, proto = await loop.subprocess_exec(
            Proto, PY, "-c",
            "import sys; sys.stdout.write(sys.stdin.read()); sys.exit(2)")
        stdin = transport.get_pipe_transport(0)
        stdin.write(b"ping")
        stdin.write_eof()
        await done
        assert transport.get_returncode() == 2
        transport.close()

    run(loop, main())
    assert events[0] == "made"
    assert events[-1] == ("lost", None)
    data = b"".join(e[2] for e in events if e[0] == "data")
    assert data == b"ping"
    assert ("exited", 2) in events
    assert {e[1] for e in events if e[0] == "pipe_lost"} == {0, 1, 2}
