"""Child processes: subprocess_exec()/subprocess_shell() and the pipe
transports they (and connect_read_pipe()/connect_write_pipe()) use.

The loop learns that a child exited from the C loop, not from a child
watcher: loop_child_watch() puts a pidfd for the child into epoll, and when
it becomes readable the C loop reaps the child (waitid on the pidfd) and
reports LOOP_EV_CHILD, which base_loop turns into a call of the callback
registered in loop._children.  No SIGCHLD handler, no thread, no policy
child watcher: a loop can run in any thread and never touches children that
are not its own.

Where pidfds are missing (kernels before 5.3, valgrind) a thread per child
blocks in waitpid() instead and hands the status to the loop.
"""
import contextvars
import errno
import os
import subprocess
import threading

from . import _compat
from ._binding import NULL, lib
from ._compat import logger
from .pipes import ReadPipeTransport, WritePipeTransport

__all__ = ["ProcessMethods", "UnixSubprocessTransport"]

# The status asyncio reports for a child whose status someone else took.
_UNKNOWN_RETURNCODE = 255


class UnixSubprocessTransport(_compat.BaseSubprocessTransport):
    """asyncio's subprocess transport (base_subprocess) on a Popen child."""

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, **kwargs):
        # Popen creates the pipes close-on-exec and makes only pass_fds
        # inheritable; the loop connects their parent ends afterwards.
        self._proc = subprocess.Popen(
            args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
            universal_newlines=False, bufsize=bufsize, **kwargs)

    def _child_exited(self, pid, returncode):
        """Called by the loop once the child has been reaped."""
        proc = self._proc
        if proc is None:
            return
        if returncode is None:
            # Someone else reaped it.  Popen itself (poll() in close() or
            # send_signal(), or the user's wait()) has the real status;
            # otherwise it is lost, and asyncio says 255.
            returncode = proc.returncode
            if returncode is None:
                logger.warning("Unknown child process pid %d, will report "
                               "returncode 255", pid)
                returncode = _UNKNOWN_RETURNCODE
        # From now on Popen knows it is gone (and will not signal a pid that
        # may already belong to another process).
        proc.returncode = returncode
        # Like asyncio: one iteration for the pipes' last callbacks first.
        self._loop.call_soon(self._process_exited, returncode)


def _popen_of(callback):
    """The Popen object behind a callback of ours, or None."""
    transport = getattr(callback, "__self__", None)
    if isinstance(transport, UnixSubprocessTransport):
        return transport._proc
    return None


def _waitpid(pid, proc):
    """Blocks until child pid exits; its returncode, or None if someone
    else reaped it.  Goes through the Popen object when there is one, so
    that it and the loop agree (Popen serialises its own waits)."""
    try:
        if proc is not None:
            return proc.wait()
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


def _reap_in_thread(loop, pid, callback):
    """Without pidfds: waits for pid in a thread, then callback(pid,
    returncode) on the loop."""
    proc = _popen_of(callback)

    def wait():
        returncode = _waitpid(pid, proc)   # None: the status is lost
        try:
            loop.call_soon_threadsafe(callback, pid, returncode)
        except RuntimeError:
            if loop.get_debug():
                logger.warning("Loop %r that handles pid %r is closed",
                               loop, pid)

    threading.Thread(target=wait, name=f"py_async_lib-waitpid-{pid}",
                     daemon=True).start()


def _application_child_watcher():
    """The child watcher asyncio's own loop would hand a new child to, where
    the application chose one (Python 3.11 to 3.13); None: the loop watches
    the child's pidfd itself.

    On our policy, that is a watcher set with set_child_watcher(); the one
    its get_child_watcher() would make up is not needed.  On asyncio's Unix
    policy, it is the watcher the policy holds, as asyncio's loop uses it
    (set with asyncio.set_child_watcher(), or made by get_child_watcher())."""
    if not _compat.HAS_CHILD_WATCHERS:
        return None
    policy = _compat.current_policy()
    ours = getattr(policy, "_explicit_child_watcher", _NOT_OURS)
    if ours is not _NOT_OURS:
        return ours
    return _compat.unix_policy_watcher(policy)


_NOT_OURS = object()


def _from_watcher(pid, returncode, loop, transp):
    # A watcher says 255 for a child someone else reaped (and has warned);
    # if that someone was Popen, its status is the real one.
    if returncode == _UNKNOWN_RETURNCODE and transp._proc is not None and \
            transp._proc.returncode is not None:
        returncode = None
    # A watcher may call from another thread (ThreadedChildWatcher).
    if not loop.is_closed():
        loop.call_soon_threadsafe(transp._child_exited, pid, returncode)


class ProcessMethods:
    """Mixin for the loop: pipe and subprocess transports, child exits."""

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None,
                                  extra=None):
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None,
                                   extra=None):
        return WritePipeTransport(self, pipe, protocol, waiter, extra)

    async def _make_subprocess_transport(self, protocol, args, shell,
                                         stdin, stdout, stderr, bufsize,
                                         extra=None, **kwargs):
        watcher = _application_child_watcher()
        if watcher is None:
            waiter = self.create_future()
            transp = UnixSubprocessTransport(self, protocol, args, shell,
                                             stdin, stdout, stderr, bufsize,
                                             waiter=waiter, extra=extra,
                                             **kwargs)
            # Nothing ran since Popen returned, so nobody else can have
            # reaped the child: if it already exited, its pidfd is readable
            # at once.
            self._watch_child(transp.get_pid(), transp._child_exited)
            await self._wait_subprocess_started(transp, waiter)
            return transp
        # The application chose a watcher: asyncio's loop would use it, so
        # we do too (and refuse to spawn if it is inactive), as asyncio
        # does it.
        with watcher as entered:
            if _compat.USE_ENTERED_WATCHER:
                watcher = entered
            if not watcher.is_active():
                raise RuntimeError("asyncio.get_child_watcher() is not "
                                   "activated, subprocess support is "
                                   "not installed.")
            waiter = self.create_future()
            transp = UnixSubprocessTransport(
                self, protocol, args, shell, stdin, stdout, stderr,
                bufsize, waiter=waiter, extra=extra, **kwargs)
            watcher.add_child_handler(
                transp.get_pid(), _from_watcher, self, transp)
            await self._wait_subprocess_started(transp, waiter)
        return transp

    async def _wait_subprocess_started(self, transp, waiter):
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise

    def _watch_child(self, pid, callback):
        """Arranges for callback(pid, returncode) to run on the loop once
        child `pid` has exited, the loop having reaped it.

        returncode is asyncio's: the exit status, or -signal for a child
        a signal killed; None if someone else reaped the child before the
        loop could, and its status is lost.  The callback runs in a copy of
        the caller's context, as asyncio's pidfd watcher's reader does (in
        an empty one on 3.11, as its thread watcher's report does)."""
        self._check_closed()
        rc = lib.loop_child_watch(self._cloop, pid, NULL, NULL)
        if rc == 0:
            context = (contextvars.Context() if _compat.EXIT_IN_EMPTY_CONTEXT
                       else contextvars.copy_context())
            self._children[pid] = (callback, context)
        elif rc in (-errno.ESRCH, -errno.ECHILD):
            # Already reaped elsewhere (a waitpid(-1) somewhere, SIGCHLD
            # ignored): the status is gone.
            self.call_soon(callback, pid, None)
        elif rc == -errno.EEXIST:
            raise RuntimeError(f"child process {pid} is already watched")
        else:
            # ENOSYS (no pidfds), EMFILE...: wait in a thread.
            if self._debug:
                logger.debug("pidfd watch of pid %d failed (%s), waiting in "
                             "a thread", pid, os.strerror(-rc))
            _reap_in_thread(self, pid, callback)

    def close(self):
        super().close()
        # Children still running when the loop closes lost their pidfds
        # with the C loop: threads reap them, so that none stays a zombie.
        children = self._children
        if self.is_closed() and children:
            for pid, (callback, _) in list(children.items()):
                proc = _popen_of(callback)
                threading.Thread(target=_waitpid, args=(pid, proc),
                                 name=f"py_async_lib-reap-{pid}",
                                 daemon=True).start()
            children.clear()
