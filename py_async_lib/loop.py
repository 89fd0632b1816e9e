"""EventLoop: the engine (base_loop) with the socket methods (sockets),
processes and pipes (processes), datagrams (datagram) and the Unix-only
ones (unix)."""
from .base_loop import BaseLoop
from .datagram import DatagramMethods
from .processes import ProcessMethods
from .sockets import SocketMethods
from .unix import UnixMethods

__all__ = ["EventLoop"]


class EventLoop(SocketMethods, ProcessMethods, DatagramMethods, UnixMethods,
                BaseLoop):
    """An asyncio event loop whose engine is libcasyncio (C, epoll)."""
