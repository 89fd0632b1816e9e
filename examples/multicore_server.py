"""Past one core: N processes, one py_async_lib loop each, one port.

    python examples/multicore_server.py --workers 4 --port 8080

Every worker opens its own listening socket on the same address with
reuse_port=True (SO_REUSEPORT): the kernel spreads new connections over
them, and the workers share nothing.  Each answers HTTP/1.1 keep-alive
requests with a short text body (an asyncio.Protocol, to keep the example
small; an ASGI app under `uvicorn --workers N --loop
py_async_lib:new_event_loop` scales the same way).  The parent starts the
workers, prints "listening HOST PORT PID,PID..." once they all listen, and
stops them on SIGTERM or SIGINT.  benchmarks/multicore.py measures it.
"""
import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys

import py_async_lib

BODY = b"Hello from worker %d\n" % os.getpid()
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


class Http(asyncio.Protocol):
    """Answers every complete request head (pipelined or not) in order."""

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.transport.write(RESPONSE * n)


async def worker(host, port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, host, port, reuse_port=True,
                                      backlog=4096)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    print("ready", flush=True)
    await stop
    server.close()
    await server.wait_closed()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        # The parent blocks both signals (sigwait) and the mask is inherited.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        py_async_lib.run(worker(args.host, args.port))
        return
    port = args.port
    if port == 0:
        # Pick a free port for all workers: bound with SO_REUSEPORT and
        # kept open until they have theirs.
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((args.host, 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, os.path.abspath(__file__), "--worker",
           "--host", args.host, "--port", str(port)]
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE)
               for _ in range(args.workers)]
    for w in workers:
        assert w.stdout.readline() == b"ready\n"
    if args.port == 0:
        probe.close()
    print("listening", args.host, port, ",".join(str(w.pid) for w in workers),
          flush=True)
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
