"""EventLoop: the engine (base_loop) with the socket methods (sockets) and
the Unix-only ones (unix)."""
from .base_loop import BaseLoop
from .sockets import SocketMethods
from .unix import UnixMethods

__all__ = ["EventLoop"]


class EventLoop(SocketMethods, UnixMethods, BaseLoop):
    """An asyncio event loop whose engine is libcasyncio (C, epoll)."""
