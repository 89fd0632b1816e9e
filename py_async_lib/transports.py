"""Stream transports whose reads and writes the C loop does.

The socket (or pipe) stays a Python object that the transport owns and
closes; the C loop only holds its fd as a *stream*: when it is readable the
loop reads into its arena and hands the bytes over in the event array, and
write() gives bytes to loop_write(), which sends at once and buffers only what
the kernel did not take.  The transport mirrors asyncio's selector transport
in behaviour: same callbacks in the same order, same flow control, same
errors, and the same contextvars contexts: asyncio runs a transport's
callbacks from its reader and writer handles, so the reads (data_received,
get_buffer/buffer_updated, eof_received, and connection_lost after a read
error or EOF) run in the context the transport was made in, or the one that
last called resume_reading(); resume_writing(), and the connection_lost()
that ends a close() once the buffer is flushed, run in the context of the
write() that found the buffer empty.  From 3.15 on, asyncio gives a socket
transport a context of its own (create_connection()'s, or a copy of its
server's for each connection) and runs every callback in that one context:
a transport made with one (`context`) does the same.
"""
import contextvars
import os
import types
import warnings

from asyncio import protocols, transports

from . import _compat
from ._binding import EV_DRAINED, EV_EOF, EV_ERROR, EV_RESUME, WRITABLE
from ._binding import ffi, lib, os_error
from ._compat import logger, server_attach as _server_attach
from ._compat import server_detach as _server_detach

__all__ = ["SocketTransport"]

_copy_context = contextvars.copy_context

# What write() and sendto() take, as asyncio checks it.
BYTES_LIKE = (bytes, bytearray, memoryview)

# A stream's _pending when the loop reported it readable and the transport
# reads it itself (see StreamTransport._read_by_caller).
READ_NOW = object()
# Reads the transport makes itself (LOOP_EV_READABLE): recv(n) allocates a
# bytes of n and shrinks it to what came.  The loop does not say how much the
# kernel holds (FIONREAD would be one more syscall per read), so n follows
# the last read: HEAP_READ, or asyncio's MAX_READ after a read that got
# HEAP_READ or more (a bulk transfer, or several messages queued).  Two glibc
# facts size n (issue 12):
# * A request of 128 KiB or more that the heap cannot serve is a fresh mmap:
#   page faults, mremap and munmap on every read, and glibc raises its mmap
#   threshold only when such a chunk is freed unshrunk.  So a read asks for
#   more than 127 KiB only after a read that filled most of that; glibc's
#   smallest threshold is 128 KiB, so HEAP_READ never maps.
# * A read no larger than the message takes the one message-sized hole the
#   previous read left, every time, so the objects that outlive the read
#   (StreamReader's buffer, the bytes the handler holds) find no hole: they
#   pile up at the top of the heap, are freed together, the top exceeds
#   glibc's trim threshold and brk() gives it back, to be faulted in again
#   on the next iteration (streams, 64 KiB, 16 connections: ~12 page faults
#   and 2x the CPU per message).  A read that asks for HEAP_READ fits no
#   message-sized hole: it takes one larger region again and again and the
#   other objects reuse each other's holes, which is also what asyncio's
#   recv(256 KiB) does while the heap serves it.
MAX_READ = 256 * 1024
HEAP_READ = 127 * 1024
# A loop read this large switches the stream to reads by the transport; one
# smaller than BULK_READ_LOW switches it back.
BULK_READ = 16 * 1024
BULK_READ_LOW = 4 * 1024
_loop_write = lib.loop_write   # one lookup, not one per write
# _FlowControlMixin's default write limits (the same on every version).
DEFAULT_HIGH_WATER = 64 * 1024
DEFAULT_LOW_WATER = DEFAULT_HIGH_WATER // 4

# The _extra of socket transports that have no extras but their own.
_NO_EXTRA = types.MappingProxyType({})

# The host of the last peer address seen.  A server's peers often share one
# address (a proxy in front of it, localhost), and each address accept() or
# getpeername() returns carries its own copy of that string (58 bytes for
# "127.0.0.1"): an equal host is made that same object.
_last_host = None


def _share_host(addr):
    global _last_host
    if type(addr) is tuple and addr and type(addr[0]) is str:
        host = addr[0]
        if host != _last_host:
            _last_host = host
        elif host is not _last_host:
            return (_last_host,) + addr[1:]
    return addr
_WRITELINES_READDS_WRITER = _compat.WRITELINES_READDS_WRITER

class TransportBase(_compat.FlowControlMixin):
    """What all our transports share: flow control (asyncio's mixin), the
    socket keys of get_extra_info(), and how a fatal error is reported.

    Attributes are slots (asyncio's BaseTransport and _FlowControlMixin
    have theirs): a server holds one transport per connection, and a slot
    costs 8 bytes where a key of a per-instance dict costs more (issue 12).
    Subclasses that are not held by the thousand (pipes, datagrams) keep a
    __dict__."""

    __slots__ = ("__weakref__", "_sock", "_sock_fd", "_server", "_protocol",
                 "_protocol_connected", "_conn_lost", "_closing", "_paused",
                 "_peername", "_context")

    # True for socket transports: _set_socket_extra() took the peer's
    # address out of _extra, and get_extra_info() makes "socket" and
    # "sockname" on first use.
    _lazy_socket_extra = False

    def __init__(self, extra=None, loop=None):
        # Read by __del__ and repr(), which may see an instance whose
        # __init__ failed.
        self._sock = None
        self._server = None
        # The context every callback of the transport runs in, where
        # asyncio gives its transport one (socket transports from 3.15 on);
        # None: each runs in the context asyncio's selector loop would
        # schedule it from.
        self._context = None
        super().__init__(extra, loop)

    def _call_soon(self, callback, *args):
        self._loop.call_soon(callback, *args, context=self._context)

    def _set_socket_extra(self, sock):
        # asyncio's socket transports keep "peername", "socket" (a
        # TransportSocket) and "sockname" in their _extra dict.  Ours keeps
        # the peer's address in a slot and makes the other two when first
        # asked for, or when the socket closes (_fill_socket_extra): most
        # transports never are, and a dict and those keys cost each
        # connection ~500 bytes (issue 12).  _extra stays a shared empty
        # mapping (read-only: nothing can be added to it by mistake) until
        # something is added.  The peer's address is read now: after a
        # reset getpeername() fails.
        extra = self._extra
        if "peername" in extra:
            peer = extra["peername"]
        else:
            try:
                peer = sock.getpeername()
            except OSError:
                peer = None
        self._peername = _share_host(peer)
        rest = {k: v for k, v in extra.items() if k != "peername"}
        self._extra = rest if rest else _NO_EXTRA

    def _fill_socket_extra(self):
        """Adds the "socket" and "sockname" keys that _set_socket_extra()
        left for later, while the socket is open."""
        extra = self._extra
        if extra is _NO_EXTRA:
            extra = self._extra = {}
        sock = self._sock
        if "socket" not in extra:
            extra["socket"] = _compat.TransportSocket(sock)
        if "sockname" not in extra:
            try:
                extra["sockname"] = sock.getsockname()
            except OSError:
                extra["sockname"] = None

    def get_extra_info(self, name, default=None):
        if self._lazy_socket_extra:
            if name == "peername":
                return self._peername
            if ((name == "socket" or name == "sockname") and
                    name not in self._extra and self._sock is not None):
                self._fill_socket_extra()
        return self._extra.get(name, default)

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        info.extend(self._repr_state())
        return "<{}>".format(" ".join(info))

    def _repr_state(self):
        """The words repr() shows after the fd: polling state, buffer."""
        return []

    def get_protocol(self):
        return self._protocol

    def is_closing(self):
        return self._closing

    def is_reading(self):
        return not self._closing and not self._paused

    def pause_reading(self):
        if not self.is_reading():
            return
        self._paused = True
        self._stop_reading()
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self):
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def _is_quiet_error(self, exc):
        """Errors that only a debug log line reports (the peer went away),
        rather than the loop's exception handler."""
        return isinstance(exc, OSError)

    def _fatal_error(self, exc, message="Fatal error on transport"):
        if self._is_quiet_error(exc):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            })
        self._force_close(exc)

    def abort(self):
        self._force_close(None)

    def _release(self):
        """Lets go of what the loop holds for the socket, before it closes."""

    def _call_connection_lost(self, exc):
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._release()
            if self._lazy_socket_extra:
                self._fill_socket_extra()
            self._sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
            server = self._server
            if server is not None:
                _server_detach(server, self)
                self._server = None

    def __del__(self, _warn=warnings.warn):
        if getattr(self, "_sock", None) is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._release()
            self._sock.close()


class StreamTransport(TransportBase, transports.Transport):
    """What socket and pipe transports share: the C stream and its events."""

    __slots__ = ("_cloop", "_fd", "_by_caller", "_read_size", "_pending",
                 "_eof", "_empty_waiter", "_read_handle", "_read_context",
                 "_buffered",
                 "_write_context", "_flush_error", "_direct_read",
                 "_write_direct")

    _stream_flags = 0
    _is_socket = False   # _stream_flags has LOOP_STREAM_SOCKET
    # False: every read goes through _data_read()/_data_now(), never
    # straight to the protocol (see _read_state_changed).
    _reads_to_protocol = True

    def __init__(self, loop, sock, protocol, extra=None, server=None,
                 context=None):
        # Before the mixin's __init__, which sets the write limits.
        self._cloop = None
        self._fd = -1
        self._by_caller = False   # see _read_by_caller
        self._read_size = HEAP_READ   # of our next recv (see HEAP_READ)
        # The context asyncio's writer handle would have: that of the
        # write() that found the out-buffer empty.  None while the buffer
        # is empty.
        self._write_context = None
        # The errno of a flush that failed while a read left to us was
        # queued (see _stream_event); 0 if none.
        self._flush_error = 0
        # See _read_state_changed(); set once the protocol is.
        self._direct_read = None
        # See _write_state_changed(); set once the stream is open.
        self._write_direct = False
        super().__init__(extra, loop)
        self._context = context
        self._sock_fd = sock.fileno()
        self._protocol_connected = False
        self._pending = None        # bytes read by C, not yet delivered
        self._conn_lost = 0         # connection_lost() is scheduled
        self._closing = False       # close() was called
        self._paused = False        # pause_reading() was called
        self._eof = False           # write_eof() was called
        self._empty_waiter = None   # sendfile waits for an empty buffer
        self._server = server
        self._open_stream()
        # Only now: if the C loop refused the fd, __del__ must leave the
        # caller's socket alone.
        self._sock = sock
        # The context of asyncio's reader handle, which the protocol's read
        # callbacks run in; the handle itself is made by the first read
        # that _data_read() or _readable() take while nothing is pending
        # (_queued_read): an idle connection has none, nor one whose reads
        # all go through _direct_read (168 bytes of each, with the bound
        # method it holds).
        self._read_context = self._new_handle_context()
        self._read_handle = None
        self.set_protocol(protocol)
        if server is not None:
            _server_attach(server, self)

    def _start(self, waiter):
        self._call_soon(self._protocol.connection_made, self)
        # Reading starts once connection_made() has run.
        self._call_soon(self._start_reading)
        if waiter is not None:
            self._call_soon(_compat.set_result_unless_cancelled, waiter, None)

    def _repr_state(self):
        if self._cloop is None or self._fd < 0:
            return []
        bufsize = self.get_write_buffer_size()
        state = "polling" if bufsize else "idle"
        return ["read=polling" if self.is_reading() else "read=idle",
                f"write=<{state}, bufsize={bufsize}>"]

    # ---- the C stream ----------------------------------------------------

    def _open_stream(self):
        """Gives the fd to the C loop as a stream (reading still off)."""
        loop = self._loop
        fd = self._sock_fd
        rc = lib.loop_stream_open(loop._cloop, fd, self._stream_flags)
        if rc < 0:
            raise os_error(rc)
        self._cloop = loop._cloop
        self._fd = fd
        self._write_state_changed()
        loop._stream_opened(fd, self)
        self._push_write_limits()
        if self._by_caller:
            lib.loop_stream_read_by_caller(self._cloop, fd, 1)

    def _resume_stream(self):
        if self._sock is None or self._conn_lost or self._fd >= 0:
            return
        self._open_stream()
        self._read_state_changed()
        self._start_reading()

    def _release_stream(self):
        """Takes the fd out of the C loop (dropping unsent bytes).  Also
        while sendfile uses the socket directly (the out-buffer is empty
        then); _resume_stream() gives it back."""
        fd = self._fd
        if fd >= 0:
            self._fd = -1
            if self._cloop is not None:
                lib.loop_stream_close(self._cloop, fd)
                self._loop._stream_closed(fd)
        self._pending = None
        self._write_context = None
        self._read_state_changed()
        self._write_state_changed()

    def _loop_closed(self):
        # The loop freed its C side: nothing may call into it any more.
        self._cloop = None
        self._fd = -1
        self._read_state_changed()
        self._write_state_changed()

    def _push_write_limits(self):
        if self._fd >= 0 and self._cloop is not None:
            lib.loop_stream_set_write_limits(
                self._cloop, self._fd, self._high_water, self._low_water)

    def _set_write_buffer_limits(self, high=None, low=None):
        if high is None and low is None:
            # asyncio's defaults, as ints every transport shares: its
            # high // 4 makes a new one (32 bytes) per transport.
            high, low = DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER
        super()._set_write_buffer_limits(high, low)
        self._push_write_limits()

    def _start_reading(self):
        if not self._closing and not self._paused and self._fd >= 0:
            lib.loop_stream_read_start(self._cloop, self._fd)

    def _stop_reading(self):
        if self._fd >= 0:
            lib.loop_stream_read_stop(self._cloop, self._fd)

    def _stream_event(self, kind, arg, side):
        # Each event is handled in the context asyncio's reader or writer
        # handle would run it in: EOF and read errors (side is
        # LOOP_READABLE) in the read handle's, the rest in the writer's.
        if kind == EV_DRAINED:
            context = self._write_context
            # asyncio drops its writer when the buffer empties: the next
            # write that buffers brings its own context.
            self._write_context = None
            # An emptied out-buffer matters only to a closing transport, a
            # waiting sendfile or a paused protocol: skip the callback
            # otherwise (a busy writer sees one DRAINED per partial send).
            # close() called later in this iteration finds the buffer empty
            # and finishes by itself.
            if not (self._closing or self._protocol_paused or
                    self._empty_waiter is not None):
                return
        elif kind == EV_RESUME:
            context = self._write_context
        elif kind == EV_ERROR and side == WRITABLE:
            context = self._write_context
            self._write_context = None   # the buffer is dropped
            if self._pending is READ_NOW:
                # The loop flushed before the read it left to us, and the
                # send took the socket's error (a reset): asyncio reads
                # first, and its read fails with that error.
                self._flush_error = arg
        else:
            context = self._read_context
        self._loop._call_soon(self._on_stream_event, (kind, arg), context)

    def _on_stream_event(self, kind, arg):
        if kind == EV_DRAINED:
            self._on_drained()
        elif kind == EV_RESUME:
            self._maybe_resume_protocol()
            self._maybe_finish_close()
        elif kind == EV_EOF:
            self._on_eof()
        elif kind == EV_ERROR:
            self._fatal_error(os_error(-arg), "Fatal error on socket transport")

    # ---- reading -----------------------------------------------------------

    def _read_state_changed(self):
        """Keeps _direct_read true to the read state; called wherever that
        changes (the bytes pending, pause, close, the protocol's kind, the
        read handle, the stream).

        _direct_read is the read handle's context while a read smaller
        than BULK_READ that the C loop made may go straight to
        protocol.data_received() (nothing pending, reading neither paused
        nor closed, the stream open, not a BufferedProtocol), else None.
        The loop then calls _direct_read.run(protocol.data_received,
        bytes) itself, and _data_received_failed(exc) if that raises: what the
        read handle would do, without the Python call of _data_now() or
        _read_ready() (issue 12).  Only the transport writes it."""
        if (self._pending is None and not self._paused and
                not self._closing and self._fd >= 0 and
                not self._buffered and self._reads_to_protocol):
            self._direct_read = self._read_context
        else:
            self._direct_read = None

    def _data_received_failed(self, exc):
        """protocol.data_received() raised in a call the loop made through
        _direct_read: fatal, as in _read_ready(), in the same context."""
        self._read_context.run(
            self._fatal_error, exc,
            "Fatal error: protocol.data_received() call failed.")

    def set_protocol(self, protocol):
        self._buffered = isinstance(protocol, protocols.BufferedProtocol)
        self._protocol = protocol
        self._protocol_connected = True
        # A buffered protocol has its own buffer: recv_into it.
        if self._buffered != self._by_caller:
            self._read_by_caller(self._buffered)
        self._read_state_changed()

    def pause_reading(self):
        super().pause_reading()
        self._read_state_changed()

    def resume_reading(self):
        if self._paused and not self._closing:
            # asyncio adds its reader again, made in this context (unless
            # the transport has its own): reads run in it from now on.
            self._read_context = self._new_handle_context()
            self._read_handle = None
            if self._pending is not None:
                # Bytes read before the pause are delivered first.
                self._loop._call_soon(self._read_ready, (),
                                      self._read_context)
        super().resume_reading()
        self._read_state_changed()

    # What the loop reports (see BaseLoop._dispatch): the read handle when
    # it is to be queued, that is when nothing was pending; else None.

    def _queued_read(self):
        """The read handle, made now if no read has been queued since the
        last resume_reading() (see __init__)."""
        handle = self._read_handle = _compat.Handle(
            self._read_ready, (), self._loop, self._read_context)
        return handle

    def _data_read(self, data, size):
        """The C loop read `data` (size bytes) for this stream
        (LOOP_EV_DATA)."""
        if size >= BULK_READ:
            self._read_by_caller(True)
        pending = self._pending
        if pending is None:
            self._pending = data
            self._direct_read = None   # (see _read_state_changed)
            return self._read_handle or self._queued_read()
        if pending is READ_NOW:
            # Queued when the reads were ours: the loop's read is the data.
            self._pending = data
        else:
            self._pending = pending + data
        return None

    def _data_now(self, data, size):
        """The same as _data_read() followed, when it returns a handle, by a run
        of the read handle (the loop runs it inline, see
        BaseLoop._dispatch), for the reads that _direct_read does not
        take."""
        if self._data_read(data, size):
            self._read_context.run(self._read_ready)

    def _readable(self):
        """The stream is readable and the read is ours (LOOP_EV_READABLE)."""
        if self._pending is not None:
            return None
        self._pending = READ_NOW
        self._direct_read = None   # (see _read_state_changed)
        return self._read_handle or self._queued_read()

    def _read_ready(self):
        data = self._pending
        if data is None or self._paused or self._closing:
            return
        self._pending = None
        # _read_state_changed(), without its call on every queued read:
        # nothing is pending now, and the checks above hold (bytes are
        # pending only while the stream is open).
        if not self._buffered and self._reads_to_protocol:
            self._direct_read = self._read_context
        if data is READ_NOW:
            if self._buffered:
                self._recv_into_buffer()
                return
            data = self._recv()
            if data is None:
                return
        elif self._buffered:
            self._deliver_to_buffer(data)
            return
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(
                exc, "Fatal error: protocol.data_received() call failed.")

    # Reads the loop leaves to us (LOOP_EV_READABLE, see _read_by_caller):
    # asyncio's own recv, right before the protocol gets the bytes.

    def _recv(self):
        data = self._read_now(None)
        if data is not None and len(data) < BULK_READ_LOW:
            # Small messages again: the loop's batched reads are cheaper.
            self._read_by_caller(False)
        return data

    def _recv_into_buffer(self):
        buf = self._get_buffer()
        if buf is not None:
            n = self._read_now(buf)
            if n is not None:
                self._buffer_updated(n)

    def _read_now(self, into):
        """One read: new bytes (into is None) or how many went into `into`.
        None when there was nothing to read, at EOF (reading then stops)
        and on a read error (fatal)."""
        try:
            if into is None:
                size = self._read_size
                got = self._sock.recv(size) if self._is_socket else \
                    os.read(self._sock_fd, size)
                self._read_size = MAX_READ if len(got) >= HEAP_READ \
                    else HEAP_READ
            else:
                got = self._sock.recv_into(into) if self._is_socket else \
                    os.readv(self._sock_fd, [into])
        except (BlockingIOError, InterruptedError):
            got = None
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return None
        if got:
            return got
        if self._flush_error:
            err, self._flush_error = self._flush_error, 0
            self._fatal_error(os_error(-err),
                              "Fatal read error on socket transport")
        elif got is not None:
            self._read_eof()
        return None

    # A BufferedProtocol's two calls; an exception from either is fatal.

    def _get_buffer(self):
        try:
            buf = self._protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
            return buf
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(
                exc, "Fatal error: protocol.get_buffer() call failed.")
            return None

    def _buffer_updated(self, n):
        try:
            self._protocol.buffer_updated(n)
            return True
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(
                exc, "Fatal error: protocol.buffer_updated() call failed.")
            return False

    def _read_eof(self):
        # What the loop's LOOP_EV_EOF means: reading is over.
        self._stop_reading()
        self._on_eof()

    def _read_by_caller(self, on):
        """Switches who reads the stream: the C loop into its arena (small
        messages: one batched crossing carries many reads) or this
        transport, when the loop reports it readable (large messages and
        buffered protocols: no copy out of the arena, and the bytes are
        still in cache when the protocol gets them)."""
        self._by_caller = on
        if self._fd >= 0:
            lib.loop_stream_read_by_caller(self._cloop, self._fd, on)

    def _deliver_to_buffer(self, data):
        view = memoryview(data)
        while view:
            buf = self._get_buffer()
            if buf is None:
                return
            dest = memoryview(buf).cast("B")
            n = min(len(dest), len(view))
            dest[:n] = view[:n]
            view = view[n:]
            if not self._buffer_updated(n):
                return
            if view and (self._paused or self._closing):
                if self._paused:
                    self._pending = view.tobytes()
                    self._read_state_changed()
                return

    def _on_eof(self):
        if self._conn_lost:
            return
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(
                exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # ---- writing -----------------------------------------------------------

    # The one write path of every stream transport (write_pipe's too): the
    # same checks, warning and error handling for write() and writelines().
    # What differs is said by three class attributes: asyncio's socket
    # transport's words here, its pipe transport's in pipes.py.
    _write_error = "Fatal write error on socket transport"
    _dropped_write_warning = "socket.send() raised exception."
    # A closing socket transport still sends what is written before the
    # close completes; a closing pipe drops it, as asyncio's does.
    _closing_drops_writes = False

    def _write_state_changed(self):
        """Keeps _write_direct true to the write state; called wherever
        that changes (write_eof(), a sendfile wait, the end of the
        connection, a closing pipe, the stream).  _write_direct is True
        while write() may hand its bytes straight to loop_write(): nothing
        refuses them (write_eof(), sendfile) and nothing drops them (lost
        connection, stream gone, closing pipe).  One check in write()
        instead of five (issue 12); only the transport writes it."""
        self._write_direct = not (self._eof or self._empty_waiter is not None
                                  or self._writes_dropped())

    def write(self, data):
        if type(data) is not bytes:
            data = self._write_buffer(data)
            if data is None:
                return
        if not self._write_direct:
            if self._eof or self._empty_waiter is not None:
                self._refuse_write("write")
            if len(data):
                self._drop_write()
            return
        # An empty write reaches loop_write(), which sends nothing and
        # returns what is buffered: above the high-water mark only while
        # the protocol is paused already, so the checks below do nothing
        # for it (one length check less per message).
        size = _loop_write(self._cloop, self._fd, data, len(data))
        if size:
            if size > 0:
                if self._write_context is None:
                    self._write_context = self._new_handle_context()
                if size > self._high_water and not self._protocol_paused:
                    self._maybe_pause_protocol()
            else:
                self._write_fatal(os_error(size))

    def _new_handle_context(self):
        """The context of a reader or writer handle that asyncio adds now:
        the transport's own, or a copy of the current one."""
        return _copy_context() if self._context is None else self._context

    def writelines(self, list_of_data):
        # asyncio's is write(b"".join(list_of_data)): the same checks here,
        # then one writev() instead of the join.
        chunks = list(list_of_data)
        if len(chunks) < 2 or self._writes_dropped():
            self.write(b"".join(chunks))
            if _WRITELINES_READDS_WRITER and self._write_context is not None:
                self._write_context = self._new_handle_context()
            return
        for i, d in enumerate(chunks):
            if type(d) is not bytes:
                try:
                    contiguous = memoryview(d).c_contiguous
                except TypeError:
                    contiguous = False
                if not contiguous:
                    raise TypeError(f"sequence item {i}: expected a "
                                    f"bytes-like object, {type(d).__name__} "
                                    f"found")
        if self._eof or self._empty_waiter is not None:
            self._refuse_write("writelines")
        views = [ffi.from_buffer(d) for d in chunks]  # kept alive for the call
        bufs = ffi.new("void *[]", views)
        lens = ffi.new("size_t[]", [len(v) for v in views])
        size = lib.loop_writev(self._cloop, self._fd, bufs, lens, len(chunks))
        if size > 0:
            if self._write_context is None or _WRITELINES_READDS_WRITER:
                self._write_context = self._new_handle_context()
            if size > self._high_water and not self._protocol_paused:
                self._maybe_pause_protocol()
        elif size < 0:
            self._write_fatal(os_error(size))

    def _write_buffer(self, data):
        """What write() was given (not bytes) as a buffer for loop_write(),
        or None when that already failed the transport."""
        if not isinstance(data, BYTES_LIKE):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        try:
            return ffi.from_buffer(data)
        except BufferError as exc:
            # A memoryview that is not C-contiguous.  asyncio's send() of
            # it fails, a fatal write error, when nothing is buffered;
            # otherwise it buffers the view's bytes.
            if (data and not self._eof and self._empty_waiter is None
                    and not self._writes_dropped()
                    and not self.get_write_buffer_size()):
                self._write_fatal(exc)
                return None
            return data.tobytes()

    def _writes_dropped(self):
        return (self._conn_lost or self._fd < 0 or
                (self._closing and self._closing_drops_writes))

    def _refuse_write(self, what):
        if self._eof:
            raise RuntimeError(f"Cannot call {what}() after write_eof()")
        raise RuntimeError(f"unable to {what}; sendfile is in progress")

    def _drop_write(self):
        # A write after the end: counted, and warned about past a few, as
        # asyncio does.
        if self._conn_lost >= _compat.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
            logger.warning(self._dropped_write_warning)
        self._conn_lost += 1
        self._write_state_changed()

    def _write_fatal(self, exc):
        self._fatal_error(exc, self._write_error)

    def get_write_buffer_size(self):
        if self._fd < 0:
            return 0
        return max(lib.loop_write_buffer_size(self._cloop, self._fd), 0)

    def _on_drained(self):
        # A RESUME whose callback found the buffer above the low-water mark
        # again (bytes written in between) resumed nobody; an empty buffer
        # certainly may, as asyncio checks on every flush.
        self._maybe_resume_protocol()
        # The C loop saw the buffer empty, but a callback run since (that
        # resume_writing(), typically) may have written more: only an empty
        # buffer ends a close or a sendfile wait.
        if self.get_write_buffer_size():
            return
        if self._empty_waiter is not None and not self._empty_waiter.done():
            self._empty_waiter.set_result(None)
        self._maybe_finish_close()

    def write_eof(self):
        if self._closing or self._eof:
            return
        self._eof = True
        self._write_state_changed()
        if self._fd >= 0:
            lib.loop_stream_shutdown_write(self._cloop, self._fd)

    def can_write_eof(self):
        return True

    def _make_empty_waiter(self):
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        self._write_state_changed()
        if not self.get_write_buffer_size():
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self):
        self._empty_waiter = None
        self._write_state_changed()

    # ---- closing -----------------------------------------------------------

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._read_state_changed()
        self._stop_reading()
        self._maybe_finish_close()

    def _maybe_finish_close(self):
        # A closing transport ends once everything is written.  A paused
        # protocol still has a resume_writing() coming (the C loop emptied
        # the buffer, its RESUME callback has not run yet): asyncio resumes
        # before it finds the buffer empty, and the protocol may write its
        # last bytes then (SSL's close_notify), so the close waits for it.
        if (self._closing and not self._conn_lost and
                not self._protocol_paused and
                not self.get_write_buffer_size()):
            self._conn_lost += 1
            self._write_state_changed()
            self._call_soon(self._call_connection_lost, None)

    def _force_close(self, exc):
        if self._conn_lost:
            return
        if self._empty_waiter is not None and not self._empty_waiter.done():
            if exc is None:
                self._empty_waiter.set_result(None)
            else:
                self._empty_waiter.set_exception(exc)
        self._closing = True
        self._conn_lost += 1
        self._release_stream()   # (which updates _direct_read, _write_direct)
        self._call_soon(self._call_connection_lost, exc)

    def _release(self):
        self._release_stream()


class SocketTransport(StreamTransport):
    """A TCP or Unix stream socket transport."""

    __slots__ = ()
    _lazy_socket_extra = True
    _stream_flags = lib.LOOP_STREAM_SOCKET
    _is_socket = True
    _start_tls_compatible = True
    _sendfile_compatible = _compat.SENDFILE_TRY_NATIVE

    def __init__(self, loop, sock, protocol, waiter=None, extra=None,
                 server=None, context=None):
        super().__init__(loop, sock, protocol, extra, server, context)
        self._set_socket_extra(sock)
        # Small writes leave at once instead of waiting for an ACK.
        _compat.set_nodelay(sock)
        self._start(waiter)
