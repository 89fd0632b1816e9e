"""Socket-level loop methods: sock_*(), serving, connections, sendfile.

asyncio implements these in selector_events and unix_events on top of four
primitives -- _add_reader/_remove_reader/_add_writer/_remove_writer -- which
our loop provides on the C engine.  So rather than write the same logic a
second time, the loop takes asyncio's own functions for them (whatever this
Python version has), and adds what is ours: the transports whose I/O the C
loop does.
"""
import functools
import os
import socket

from . import _compat
from ._binding import lib, os_error
from ._compat import logger
from .handles import make_handle
from .transports import SocketTransport

__all__ = ["SocketMethods"]

_selector_start_serving = _compat.SELECTOR_START_SERVING
_socket_class = socket.socket

# asyncio accepts up to `backlog` connections each time the listening socket
# is readable.  Until its transport is set up, two iterations later, every
# connection of the batch holds a Task, its coroutine, a future and a few
# handles and contexts (~1.3 KiB), and pymalloc keeps the pools of the
# largest batch for good: a server listening with a backlog of 4096 kept
# 1.3 KiB per connection of it after 10k connections arrived at once (issue
# 12).  So a batch is at most asyncio's default backlog: a server with that
# backlog accepts exactly as asyncio's does, a larger backlog still queues
# more connections in the kernel, and the rest of a burst waits for the next
# iteration.
ACCEPT_BATCH = 100


# sock_recv(n) peeks (see SocketMethods) for an n up to this; a larger one
# goes asyncio's way, where recv(n) fails at once if it cannot allocate.
_PEEK_NBYTES_MAX = 1 << 24


def _plain_recv_into_buffer(buf):
    """Whether sock.recv_into(buf) takes buf as it is: a non-empty
    bytearray, or a writable C-contiguous memoryview of one or more bytes
    (not released).  Anything else goes asyncio's way, where recv_into()
    refuses it (or reads 0 bytes) at once."""
    if buf.__class__ is bytearray:
        return len(buf) > 0
    if buf.__class__ is memoryview:
        try:
            return not buf.readonly and buf.c_contiguous and buf.nbytes > 0
        except ValueError:   # released
            return False
    return False


class SocketMethods:
    """Mixin for the loop: socket methods and stream transport factories."""

    # sock_recv(), sock_recv_into() and sock_sendall() behave as asyncio's,
    # with less work per call and per wait (issue 12).  On a plain
    # non-blocking socket, asyncio's first try of the read, which raises
    # BlockingIOError when there is nothing yet (1.5 us of the ~16 us a
    # waited message costs), is a peek in C that arms a one-shot reader of
    # the C loop in the same call (loop_wait_readable): after one event it
    # is gone without a syscall, and the next wait re-arms it with one.  The
    # read runs as asyncio's, in a reader handle; it leaves fd's reader
    # entry on success, instead of a done-callback of the future doing it
    # one callback later (asyncio's costs a functools.partial, a Handle and
    # a remove_reader() per wait).  A cancelled wait's reader is removed by
    # the coroutine.

    async def sock_recv(self, sock, n):
        if sock.__class__ is not _socket_class or self._debug:
            self._check_sock(sock)
        # The peek stands for asyncio's first recv() only where that
        # recv() could not refuse its argument before reading.
        handle = (self._sock_wait_read(sock, sock.recv, n, True)
                  if n.__class__ is int and 0 < n <= _PEEK_NBYTES_MAX
                  else None)
        if handle is None:
            try:
                return sock.recv(n)
            except (BlockingIOError, InterruptedError):
                pass
            handle = self._sock_wait_read(sock, sock.recv, n, False)
        fut, fd = handle._args[0], handle._args[1]
        try:
            return await fut
        finally:
            if self._readers.get(fd) is handle:   # cancelled, or failed
                self._remove_reader(fd)

    async def sock_recv_into(self, sock, buf):
        if sock.__class__ is not _socket_class or self._debug:
            self._check_sock(sock)
        handle = (self._sock_wait_read(sock, sock.recv_into, buf, True)
                  if _plain_recv_into_buffer(buf) else None)
        if handle is None:
            try:
                return sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                pass
            handle = self._sock_wait_read(sock, sock.recv_into, buf, False)
        fut, fd = handle._args[0], handle._args[1]
        try:
            return await fut
        finally:
            if self._readers.get(fd) is handle:
                self._remove_reader(fd)

    def _check_sock(self, sock):
        # asyncio's checks of a sock_*() argument, before anything is tried.
        # Its callers skip it for a plain socket.socket outside debug mode,
        # which passes both: it is two frames per sock_recv() or
        # sock_sendall().
        _compat.check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _sock_wait_read(self, sock, read, arg, peek):
        """Makes sock_recv()'s wait: a future, and fd's reader that calls
        _sock_read_ready(fut, fd, read, arg, oneshot), replacing a reader
        fd had, as asyncio's add_reader() does (same checks, same errors);
        returns the reader's handle.  peek: the read has not been tried;
        None when it would not block, or when sock is not a plain socket
        (then the caller tries it, as asyncio does).

        A plain socket (whose read is recv(2) on its fd: not a subclass,
        not a mock), non-blocking, not a transport's, outside debug mode,
        is waited for by a one-shot reader of the C loop, made in the call
        that peeks; any other the generic way."""
        if (sock.__class__ is _socket_class and not self._debug
                and not self._closed and sock.timeout == 0.0):
            fd = sock.fileno()
            if (fd >= 0 and fd not in self._streams
                    and fd not in self._transports.data):
                rc = lib.loop_wait_readable(self._cloop, fd, peek)
                if rc:
                    if rc > 0:
                        return None
                    raise os_error(rc)
                handle = make_handle(self._sock_read_ready,
                                     (self.create_future(), fd, read, arg,
                                      True), self)
                return self._set_watcher(self._readers, fd, handle)
        if peek:
            return None
        fut = self.create_future()
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        return self._add_reader(fd, self._sock_read_ready, fut, fd, read, arg,
                                False)

    def _sock_read_ready(self, fut, fd, read, arg, oneshot):
        # oneshot: the C loop's reader went when it reported fd readable.
        if fut.done():
            return   # cancelled: its coroutine removes the reader
        try:
            result = read(arg)
        except (BlockingIOError, InterruptedError):
            # Not readable after all: wait on.
            if oneshot:
                rc = lib.loop_wait_readable(self._cloop, fd, 0)
                if rc < 0:
                    self._remove_reader(fd)
                    fut.set_exception(os_error(rc))
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._remove_reader(fd)
            fut.set_exception(exc)
        else:
            # This handle is fd's reader: one that replaced or removed it
            # would have cancelled it, and it would not run.
            del self._readers[fd]
            if not oneshot:
                lib.loop_remove_reader(self._cloop, fd)
            fut.set_result(result)

    async def sock_sendall(self, sock, data):
        # asyncio's, with its checks inline; the wait for writability is
        # asyncio's own (_sock_sendall, _sock_write_done).
        if sock.__class__ is not _socket_class or self._debug:
            self._check_sock(sock)
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(data):
            return
        fut = self.create_future()
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        # (asyncio's trick: a list in the closure holds the bytes sent.)
        handle = self._add_writer(fd, self._sock_sendall, fut, sock,
                                  memoryview(data), [n])
        fut.add_done_callback(
            functools.partial(self._sock_write_done, fd, handle=handle))
        return await fut

    # `context`: the transport's own (asyncio passes one from 3.15 on).

    def _start_serving(self, protocol_factory, sock, sslcontext=None,
                       server=None, backlog=100, *args, **kwargs):
        return _selector_start_serving(
            self, protocol_factory, sock, sslcontext, server,
            min(backlog, ACCEPT_BATCH), *args, **kwargs)

    def _make_socket_transport(self, sock, protocol, waiter=None, *,
                               extra=None, server=None, context=None):
        return SocketTransport(self, sock, protocol, waiter, extra, server,
                               context)

    def _make_ssl_transport(
            self, rawsock, protocol, sslcontext, waiter=None,
            *, server_side=False, server_hostname=None,
            extra=None, server=None,
            ssl_handshake_timeout=_compat.SSL_HANDSHAKE_TIMEOUT,
            ssl_shutdown_timeout=_compat.SSL_SHUTDOWN_TIMEOUT,
            call_connection_made=True, context=None):
        # TLS runs in asyncio's SSLProtocol over our plain transport.
        ssl_protocol = _compat.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            call_connection_made=call_connection_made,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        SocketTransport(self, rawsock, ssl_protocol, extra=extra,
                        server=server, context=context)
        return ssl_protocol._app_transport


    def _stop_serving(self, sock):
        # A listening Unix socket that create_unix_server() made (Python
        # 3.13 records those, with their inode) is unlinked when its server
        # closes, unless something else took the path since.
        ino = self._unix_server_sockets.pop(sock, None)
        path = sock.getsockname() if ino is not None else None
        self._remove_reader(sock.fileno())
        sock.close()
        if path is not None:
            try:
                if os.stat(path).st_ino == ino:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("Unable to clean up listening UNIX socket "
                             "%r: %r", path, err)

    async def _sendfile_native(self, transp, file, offset, count):
        # sendfile(2) on the transport's socket: the C loop lets go of the
        # fd once the out-buffer is empty, and takes it back afterwards.
        # Meanwhile add_reader() may take the fd, as asyncio's lets it for
        # the whole sendfile (ours refuses while the buffer drains).
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        transp._release_stream()
        try:
            return await self.sock_sendfile(transp._sock, file, offset, count,
                                            fallback=False)
        finally:
            transp._resume_stream()
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()


# asyncio's own sock_*(), serving and Unix socket methods (the list and why
# they work on our loop: _compat.BORROWED_METHODS).
for _name, _func in _compat.BORROWED_METHODS.items():
    setattr(SocketMethods, _name, _func)
del _name, _func
for _name, _doc in _compat.OWN_METHOD_DOCS.items():
    getattr(SocketMethods, _name).__doc__ = _doc
del _name, _doc
