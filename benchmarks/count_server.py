"""Instructions an echo server spends per round trip, counted by callgrind:
the figure to compare loops and floors on a machine too busy for timing.

    python -m benchmarks.count_server LOOP API [--size BYTES] [--connections N]
    python -m benchmarks.count_server --serve LOOP API     (the server alone)

LOOP is asyncio, uvloop, py_async_lib or floor; API is protocol, streams or
sock (workloads.py's start_protocol_echo, start_streams_echo,
start_sock_echo; the floor is benchmarks/floor_server.py with --api).  The
server runs under ``valgrind --tool=callgrind`` twice, serving N1 and then N2
round trips of BYTES on one connection from a client in this process that
waits 2 ms before each request, so that every read of the server finds
nothing at first and waits, as under the load generator (a server slowed
down 50x by valgrind would otherwise find each request already there);
(I2 - I1) / (N2 - N1) leaves start-up and shutdown out.  PYTHONHASHSEED=0
keeps the counts the same from run to run.  User-space instructions only:
the kernel's part of each syscall is not counted.

With --connections N (N > 1) each round sends one message on each of N
connections while the server is stopped (SIGSTOP, then SIGCONT once all
are sent), so that one poll finds all N, as under the load generator's
16 connections; the figure is then per message.  (The heap's layout moves
malloc's cost for the messages' bytes by about 100 instructions between
builds: compare changes bigger than that.)
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import List

N1, N2 = 500, 2500
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def serve(loop_name: str, api: str) -> int:
    """Run API's echo server on loop_name until SIGTERM (prints "listening")."""
    from benchmarks import workloads
    from benchmarks.loops import get_loop_factory

    loop = get_loop_factory(loop_name)()
    try:
        workloads.serve_until_signalled(loop, {
            "protocol": workloads.start_protocol_echo,
            "streams": workloads.start_streams_echo,
            "sock": workloads.start_sock_echo}[api])
    finally:
        loop.close()
    return 0


def server_argv(loop_name: str, api: str) -> List[str]:
    if loop_name == "floor":
        return [sys.executable, "-m", "benchmarks.floor_server", "--api", api]
    return [sys.executable, "-m", "benchmarks.count_server", "--serve", loop_name, api]


def _stop(pid: int) -> None:
    """SIGSTOP pid and wait until it is stopped."""
    os.kill(pid, signal.SIGSTOP)
    while True:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.0001)


def count(argv: List[str], round_trips: int, size: int, connections: int = 1) -> int:
    """Callgrind's instruction total for argv serving round_trips rounds of
    one message per connection."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": ROOT}
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
                            + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    words = proc.stdout.readline().split()
    if words[:1] != ["listening"]:
        proc.kill()
        raise RuntimeError(f"server did not start: {proc.communicate()[1][-2000:]}")
    message = b"x" * size
    conns = [socket.create_connection((words[1], int(words[2])))
             for _ in range(connections)]
    try:
        for _ in range(round_trips):
            if connections == 1:
                time.sleep(0.002)
            else:
                time.sleep(0.0005)
                _stop(proc.pid)
            for conn in conns:
                conn.sendall(message)
            if connections > 1:
                time.sleep(0.0002)   # loopback delivers within the send
                os.kill(proc.pid, signal.SIGCONT)
            for conn in conns:
                got = 0
                while got < size:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        raise RuntimeError("server closed the connection")
                    got += len(chunk)
    finally:
        for conn in conns:
            conn.close()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    m = re.search(r"Collected : (\d+)", err)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"server exited {proc.returncode}: {err[-2000:]}")
    return int(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.count_server")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("loop", choices=("asyncio", "uvloop", "py_async_lib", "floor"))
    p.add_argument("api", choices=("protocol", "streams", "sock"))
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--connections", type=int, default=1)
    args = p.parse_args()
    if args.serve:
        return serve(args.loop, args.api)
    if args.connections < 1:
        p.error("--connections must be >= 1")
    argv = server_argv(args.loop, args.api)
    c = args.connections
    low, high = count(argv, N1, args.size, c), count(argv, N2, args.size, c)
    if c == 1:
        print(f"{args.loop} {args.api} {args.size} B: {(high - low) / (N2 - N1):.0f} "
              f"instructions per round trip")
    else:
        print(f"{args.loop} {args.api} {args.size} B, {c} connections: "
              f"{(high - low) / (N2 - N1) / c:.0f} instructions per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
