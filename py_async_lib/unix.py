"""Unix-only loop methods: signal handlers.

Signals reach the loop the way CPython lets them: a Python-level handler is
installed for the signal, and signal.set_wakeup_fd() makes the interpreter's C
handler write the signal number into a socketpair that the loop watches.  The
loop then runs the user's callback as an ordinary ready callback, on the loop's
thread.  The handler that was installed before the loop's is put back when the
loop's is removed or the loop closes.
"""
import errno
import signal
import socket
import sys
import warnings

from . import _compat
from ._compat import logger

__all__ = ["UnixMethods"]


def _noop_handler(signum, frame):
    """Installed so that Python writes the signal number to the wakeup fd."""


class UnixMethods:
    """Mixin for the loop: add_signal_handler() / remove_signal_handler()."""

    def __init__(self):
        super().__init__()
        self._signal_handlers = {}    # signum -> Handle
        self._signal_previous = {}    # signum -> handler before ours
        self._signal_socks = None     # (read, write) socketpair, made lazily
        self._previous_wakeup_fd = -1
        # Listening Unix sockets to unlink on close (Python 3.13's
        # create_unix_server() fills it; see sockets._stop_serving).
        self._unix_server_sockets = {}

    def close(self):
        super().close()
        if not self._signal_handlers:
            self._close_signal_socks()
        elif sys.is_finalizing():
            warnings.warn(f"Closing the loop {self!r} on interpreter shutdown "
                          f"stage, skipping signal handlers removal",
                          ResourceWarning, source=self)
            self._signal_handlers.clear()
        else:
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def _open_signal_socks(self):
        if self._signal_socks is None:
            rsock, wsock = socket.socketpair()
            rsock.setblocking(False)
            wsock.setblocking(False)
            self._signal_socks = (rsock, wsock)
            self._add_reader(rsock.fileno(), self._read_signals)
        return self._signal_socks[1]

    def _close_signal_socks(self):
        socks, self._signal_socks = self._signal_socks, None
        if socks is not None:
            self._remove_reader(socks[0].fileno())
            socks[0].close()
            socks[1].close()

    def _read_signals(self):
        rsock = self._signal_socks[0]
        while True:
            try:
                data = rsock.recv(4096)
            except InterruptedError:
                continue
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                self._handle_signal(signum)

    def _handle_signal(self, sig):
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._add_callback_signalsafe(handle)

    def add_signal_handler(self, sig, callback, *args):
        """Runs callback(*args) on the loop when signal sig arrives.

        ValueError for an invalid signal number, RuntimeError for one that
        cannot be caught (SIGKILL, SIGSTOP) or outside the main thread."""
        if (_compat.iscoroutine(callback) or
                _compat.iscoroutinefunction(callback)):
            raise TypeError("coroutines cannot be used "
                            "with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        wsock = self._open_signal_socks()
        try:
            # Raises ValueError outside the main thread: checked first, so
            # that a loop in another thread cannot take signals.
            previous_fd = signal.set_wakeup_fd(wsock.fileno())
        except (ValueError, OSError) as exc:
            if not self._signal_handlers:
                self._close_signal_socks()
            raise RuntimeError(str(exc))
        if not self._signal_handlers and previous_fd != wsock.fileno():
            self._previous_wakeup_fd = previous_fd

        handle = _compat.Handle(callback, args, self, None)
        first = sig not in self._signal_handlers
        self._signal_handlers[sig] = handle
        try:
            previous = signal.signal(sig, _noop_handler)
            # Restart interrupted system calls rather than fail with EINTR.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._restore_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise
        if first:
            self._signal_previous[sig] = previous

    def remove_signal_handler(self, sig):
        """Removes the handler for sig; True if there was one."""
        self._check_signal(sig)
        if self._signal_handlers.pop(sig, None) is None:
            return False
        previous = self._signal_previous.pop(sig, None)
        if previous is None:
            previous = (signal.default_int_handler if sig == signal.SIGINT
                        else signal.SIG_DFL)
        try:
            signal.signal(sig, previous)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise
        if not self._signal_handlers:
            self._restore_wakeup_fd()
        return True

    def _restore_wakeup_fd(self):
        try:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(%s) failed: %s",
                        self._previous_wakeup_fd, exc)
        self._previous_wakeup_fd = -1
        self._close_signal_socks()
