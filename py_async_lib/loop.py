"""EventLoop: the engine (base_loop) with the socket methods (sockets)."""
from .base_loop import BaseLoop
from .sockets import SocketMethods

__all__ = ["EventLoop"]


class EventLoop(SocketMethods, BaseLoop):
    """An asyncio event loop whose engine is libcasyncio (C, epoll)."""
