"""Pipe transports: what connect_read_pipe() and connect_write_pipe() return.

They take pipes, FIFOs, ptys and other character devices, and sockets passed
as pipes, and do their I/O as C streams (transports.StreamTransport): the C
loop reads the fd into its arena while reading is on, and write() hands the
bytes to loop_write(), which writes at once and buffers only the rest, with
the usual flow control.  Behaviour follows asyncio's unix_events pipe
transports: the same checks and errors, get_extra_info('pipe'), the same
eof_received()/connection_lost() order.

A write pipe has no reads of its own, so readability of its fd only ever
means that the other end went away: for a pipe or FIFO the kernel reports
an error condition (the read() the C loop then tries fails), for a socket
the peer's EOF or data.  The write transport therefore turns reading on for
pipes, FIFOs and sockets (as asyncio watches them for readability) and takes
any read-side event as "closed by the peer".
"""
import errno
import os
import stat

from ._binding import EV_DRAINED, EV_EOF, EV_ERROR, EV_RESUME
from ._binding import lib, os_error
from ._compat import logger
from .transports import StreamTransport

__all__ = ["ReadPipeTransport", "WritePipeTransport"]


class _PipeTransport(StreamTransport):
    """What both pipe transports share.

    StreamTransport calls its file object `_sock`; asyncio's pipe transports
    call it `_pipe` (and code, CPython's tests included, reads and resets
    that attribute), so `_pipe` is the same slot under asyncio's name."""

    # connection_lost() is scheduled.  Kept apart from _conn_lost, which
    # (as in asyncio) also counts writes dropped after the end.
    _lost = False

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        mode = os.fstat(pipe.fileno()).st_mode
        # What epoll can watch; not regular files (or directories).
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or
                stat.S_ISCHR(mode)):
            raise ValueError(self._refusal)
        if stat.S_ISSOCK(mode):
            # recv()/send(MSG_NOSIGNAL): the same bytes, and no SIGPIPE for
            # programs that do not ignore it.
            self._stream_flags = lib.LOOP_STREAM_SOCKET
            self._is_socket = True
        self._mode = mode
        try:
            super().__init__(loop, pipe, protocol, extra)
        except BaseException:
            # The caller keeps its pipe: __del__ must not warn or close it.
            self._sock = None
            raise
        self._extra["pipe"] = pipe
        self._start(waiter)

    @property
    def _pipe(self):
        return self._sock

    @_pipe.setter
    def _pipe(self, pipe):
        self._sock = pipe

    @property
    def _fileno(self):
        return self._sock_fd

    def _polling(self):
        """What repr() shows of the C stream's state (a list of words)."""
        raise NotImplementedError

    def _repr_state(self):
        if self._sock is None:
            return []
        if self._cloop is None:
            return ["open"]   # the loop is closed: no state to show
        return self._polling()

    def _force_close(self, exc):
        # Ends the transport now: no more reads, unsent bytes dropped,
        # connection_lost(exc) on the next iteration.
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._release_stream()
        self._call_soon(self._call_connection_lost, exc)



class ReadPipeTransport(_PipeTransport):
    """The read end of a pipe (or a FIFO, pty, character device, socket)."""

    _refusal = "Pipe transport is for pipes/sockets only."

    def _polling(self):
        return ["polling" if self.is_reading() else "idle"]

    def _on_stream_event(self, kind, arg):
        if kind == EV_EOF:
            self._on_eof()
        elif kind == EV_ERROR:
            self._fatal_error(os_error(-arg),
                              "Fatal read error on pipe transport")

    def _on_eof(self):
        if self._lost:
            return
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._lost = True
        self._closing = True
        self._release_stream()
        # The return value of eof_received() does not matter: a pipe that
        # gave EOF is done.
        self._call_soon(self._protocol.eof_received)
        self._call_soon(self._call_connection_lost, None)

    def close(self):
        if not self._closing:
            self._force_close(None)

    def _is_quiet_error(self, exc):
        # EIO is how a pty master sees its slave side go away: not worth
        # more than a debug line.
        return isinstance(exc, OSError) and exc.errno == errno.EIO

    # A read transport has no write side.

    def write(self, data):
        raise NotImplementedError("a read pipe transport cannot write")

    def writelines(self, list_of_data):
        raise NotImplementedError("a read pipe transport cannot write")

    def write_eof(self):
        raise NotImplementedError("a read pipe transport cannot write")

    def can_write_eof(self):
        return False


class WritePipeTransport(_PipeTransport):
    """The write end of a pipe (or a FIFO, pty, character device, socket)."""

    _refusal = ("Pipe transport is only for pipes, sockets and character "
                "devices")

    def _polling(self):
        bufsize = self.get_write_buffer_size()
        return ["polling" if bufsize else "idle", f"bufsize={bufsize}"]

    def _start_reading(self):
        # Only to notice the reader going away: pipes, FIFOs and sockets
        # report it as readability; ttys and other devices do not.
        if (self._closing or self._fd < 0 or
                not (stat.S_ISFIFO(self._mode) or stat.S_ISSOCK(self._mode))):
            return
        lib.loop_stream_read_start(self._cloop, self._fd)

    def is_reading(self):
        return False

    def pause_reading(self):
        raise NotImplementedError("a write pipe transport does not read")

    def resume_reading(self):
        raise NotImplementedError("a write pipe transport does not read")

    # ---- the other end goes away ---------------------------------------

    # Any bytes mean the end of the pipe (_read_ready), never data.
    _reads_to_protocol = False

    def _read_ready(self):
        # Bytes from the other end of a socket passed as a write pipe:
        # asyncio takes readability itself as the end of the pipe.
        self._pending = None
        self._peer_closed()

    def _on_stream_event(self, kind, arg):
        if kind == EV_DRAINED:
            self._on_drained()
        elif kind == EV_RESUME:
            self._maybe_resume_protocol()
        elif kind == EV_EOF or kind == EV_ERROR:
            # EOF or a failed read (EBADF on the write end of a pipe): the
            # other end closed.  An error can also be a failed flush, which
            # _peer_closed() finds.
            self._peer_closed()

    def _peer_closed(self):
        if self._lost:
            return
        if self._fd >= 0:
            # A flush that failed (EPIPE...) made the stream drop its
            # buffer: report that error, as the write did.
            err = lib.loop_stream_write_error(self._cloop, self._fd)
            if err < 0:
                self._fatal_error(os_error(err), self._write_error)
                return
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        if self.get_write_buffer_size():
            self._force_close(BrokenPipeError())
        else:
            self._force_close(None)

    # ---- writing ---------------------------------------------------------

    # StreamTransport.write()/writelines(), with asyncio's pipe wording.
    _write_error = "Fatal write error on pipe transport"
    _dropped_write_warning = ("pipe closed by peer or "
                              "os.write(pipe, data) raised exception.")
    _closing_drops_writes = True

    def _write_fatal(self, exc):
        # As asyncio's pipe: the failed write counts as a lost one.
        self._conn_lost += 1
        self._write_state_changed()
        super()._write_fatal(exc)

    def _on_drained(self):
        self._maybe_resume_protocol()
        # resume_writing() may have written more: close only when empty.
        if self._closing and not self.get_write_buffer_size():
            self._force_close(None)

    def can_write_eof(self):
        return True

    def write_eof(self):
        # A pipe has no half-close: the end of the writes closes it, once
        # the buffer has drained.
        if self._closing:
            return
        # _closing, not _eof: later writes are dropped (counted), not
        # refused, as asyncio's pipe does.
        self._closing = True
        self._write_state_changed()
        if not self.get_write_buffer_size():
            self._force_close(None)

    def close(self):
        if self._sock is not None and not self._closing:
            self.write_eof()
