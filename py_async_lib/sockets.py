"""Socket-level loop methods: sock_*(), serving, connections, sendfile.

asyncio implements these in selector_events and unix_events on top of four
primitives -- _add_reader/_remove_reader/_add_writer/_remove_writer -- which
our loop provides on the C engine.  So rather than write the same logic a
second time, the loop takes asyncio's own functions for them (whatever this
Python version has), and adds what is ours: the transports whose I/O the C
loop does.
"""
import os

from . import _compat
from ._compat import logger
from .transports import SocketTransport

__all__ = ["SocketMethods"]


class SocketMethods:
    """Mixin for the loop: socket methods and stream transport factories."""

    # sock_recv() and sock_recv_into() behave as asyncio's, with less work
    # per wait: the reader removes itself when it has the data, instead of
    # a done-callback of the future doing it one callback later (asyncio's
    # costs a functools.partial, a Handle and a remove_reader() per wait).

    async def sock_recv(self, sock, n):
        self._check_sock(sock)
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_read_when_ready(sock, sock.recv, n)

    async def sock_recv_into(self, sock, buf):
        self._check_sock(sock)
        try:
            return sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_read_when_ready(sock, sock.recv_into, buf)

    def _check_sock(self, sock):
        _compat.check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    async def _sock_read_when_ready(self, sock, read, arg):
        fut = self.create_future()
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_reader(fd, self._sock_read_ready, fut, fd, read,
                                  arg)
        try:
            return await fut
        finally:
            # Cancelled (or failed) before the reader fired: take it away,
            # unless another add_reader() replaced it meanwhile.
            if not handle._cancelled:
                self._remove_reader(fd)

    def _sock_read_ready(self, fut, fd, read, arg):
        if fut.done():
            return
        try:
            result = read(arg)
        except (BlockingIOError, InterruptedError):
            return  # not readable after all: wait on
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._remove_reader(fd)
            fut.set_exception(exc)
        else:
            self._remove_reader(fd)
            fut.set_result(result)

    # `context`: the transport's own (asyncio passes one from 3.15 on).

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
        del self._transports[transp._sock_fd]
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
            self._transports[transp._sock_fd] = transp


# asyncio's own sock_*(), serving and Unix socket methods (the list and why
# they work on our loop: _compat.BORROWED_METHODS).
for _name, _func in _compat.BORROWED_METHODS.items():
    setattr(SocketMethods, _name, _func)
del _name, _func
