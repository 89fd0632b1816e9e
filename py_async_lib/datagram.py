"""Datagram transports: what create_datagram_endpoint() returns.

Datagrams keep their boundaries and their addresses, which the C streams do
not, so this transport does its own recvfrom()/sendto() on the loop's fd
watchers (_add_reader/_add_writer, C-side epoll).  Behaviour follows
asyncio's selector datagram transport: sends go out at once and are only
queued (with flow control on the queue's size) when the kernel refuses them;
OSErrors of a send or receive (ICMP errors on a connected socket:
ConnectionRefusedError...) go to protocol.error_received() and the transport
stays open; anything else is fatal.
"""
import collections

from asyncio import transports

from . import _compat
from ._compat import logger
from .transports import BYTES_LIKE, TransportBase

__all__ = ["DatagramTransport", "DatagramMethods"]


# From 3.13 on asyncio sends empty datagrams, and counts 8 bytes of header
# per queued datagram in the write buffer size (so that a queue of empty
# datagrams still reaches the high-water mark).
_SEND_EMPTY = _compat.SEND_EMPTY_DATAGRAMS
_HEADER_SIZE = 8 if _SEND_EMPTY else 0

# Datagrams received per readiness callback, at most: a busy socket is
# drained in fewer iterations, and other callbacks still get their turn.
_RECV_BATCH = 16


class DatagramTransport(TransportBase, transports.DatagramTransport):
    """A UDP (or Unix datagram) socket transport."""

    max_size = 256 * 1024   # the largest datagram received

    def __init__(self, loop, sock, protocol, address=None, waiter=None,
                 extra=None):
        super().__init__(extra, loop)
        self._set_socket_extra(sock)
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._protocol = protocol
        self._protocol_connected = True
        self._address = address
        self._buffer = collections.deque()   # (bytes, addr) not yet sent
        self._buffer_size = 0
        self._conn_lost = 0      # connection_lost() is scheduled (+ drops)
        self._closing = False    # close() or a fatal error
        self._paused = False     # pause_reading()
        self._reading = False    # the reader is registered
        self._writing = False    # the writer is registered
        loop._transports[self._sock_fd] = self
        loop.call_soon(self._protocol.connection_made, self)
        # Receiving starts once connection_made() has run.
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_compat.set_result_unless_cancelled, waiter, None)

    def _repr_state(self):
        if self._loop is None or self._loop.is_closed():
            return []
        state = "polling" if self._writing else "idle"
        return ["read=polling" if self._reading else "read=idle",
                f"write=<{state}, bufsize={self.get_write_buffer_size()}>"]

    # ---- fd watchers -----------------------------------------------------

    def _start_reading(self):
        if not self._reading and self.is_reading() and self._sock is not None:
            self._loop._add_reader(self._sock_fd, self._read_ready)
            self._reading = True

    def _stop_reading(self):
        if self._reading:
            self._reading = False
            self._loop._remove_reader(self._sock_fd)

    def _start_writing(self):
        if not self._writing:
            self._loop._add_writer(self._sock_fd, self._sendto_ready)
            self._writing = True

    def _stop_writing(self):
        if self._writing:
            self._writing = False
            self._loop._remove_writer(self._sock_fd)

    # ---- the protocol ----------------------------------------------------

    def set_protocol(self, protocol):
        self._protocol = protocol
        self._protocol_connected = True

    # ---- receiving -------------------------------------------------------

    def _read_ready(self):
        recvfrom = self._sock.recvfrom
        for _ in range(_RECV_BATCH):
            if self._conn_lost or not self.is_reading():
                return
            try:
                data, addr = recvfrom(self.max_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # An ICMP error reported on the socket, a truncated
                # datagram...: the socket itself is fine.
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal read error on datagram "
                                       "transport")
                return
            self._protocol.datagram_received(data, addr)

    # ---- sending ---------------------------------------------------------

    def get_write_buffer_size(self):
        return self._buffer_size

    def sendto(self, data, addr=None):
        if not isinstance(data, BYTES_LIKE):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if not data and not _SEND_EMPTY:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(
                    f"Invalid address: must be None or {self._address}")
            addr = self._address
        if (self._conn_lost and self._address) or self._sock is None:
            if self._conn_lost >= _compat.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return

        if not self._buffer:
            # Try now; queue only what the kernel refuses.
            try:
                if self._extra["peername"]:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._start_writing()
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram "
                                       "transport")
                return

        # Queued bytes must not change under us.
        self._buffer.append((bytes(data), addr))
        self._buffer_size += len(data) + _HEADER_SIZE
        self._maybe_pause_protocol()

    def _sendto_ready(self):
        buffer = self._buffer
        connected = bool(self._extra["peername"])
        while buffer:
            data, addr = buffer.popleft()
            self._buffer_size -= len(data) + _HEADER_SIZE
            try:
                if connected:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                buffer.appendleft((data, addr))   # the next time
                self._buffer_size += len(data) + _HEADER_SIZE
                break
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram "
                                       "transport")
                return

        self._maybe_resume_protocol()   # may queue more
        if not buffer:
            self._stop_writing()
            if self._closing and not self._conn_lost:
                self._conn_lost += 1
                self._call_connection_lost(None)

    # ---- closing ---------------------------------------------------------

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._conn_lost += 1
            self._stop_writing()
            self._loop.call_soon(self._call_connection_lost, None)

    def _force_close(self, exc):
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
        self._stop_writing()
        self._closing = True
        self._stop_reading()
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)


class DatagramMethods:
    """Mixin for the loop: the datagram transport factory, which
    BaseEventLoop.create_datagram_endpoint() calls."""

    def _make_datagram_transport(self, sock, protocol, address=None,
                                 waiter=None, extra=None):
        return DatagramTransport(self, sock, protocol, address, waiter, extra)
