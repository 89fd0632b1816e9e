"""A fixed amount of work, for instruction counts (not timing): a call_soon
chain of N steps, or N round trips of 100 bytes echoed over a socketpair
(two polls each).

    python -m benchmarks.fixed_work chain|echo N

Instructions per operation: the callgrind total for N minus that for 0,
divided by N; PYTHONHASHSEED=0 keeps dict layouts, and so the counts, the
same from run to run:

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=cg.out \
        python -m benchmarks.fixed_work echo 20000
"""
import asyncio
import socket
import sys

import py_async_lib

kind, n = sys.argv[1], int(sys.argv[2])
loop = py_async_lib.new_event_loop()

if kind == "chain":
    def step(i):
        if i:
            loop.call_soon(step, i - 1)
        else:
            loop.stop()
    loop.call_soon(step, n)
    loop.run_forever()
else:
    class Echo(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
        def data_received(self, data):
            self.t.write(data)

    class Client(asyncio.Protocol):
        def __init__(self, done):
            self.left = n
            self.done = done
        def connection_made(self, t):
            self.t = t
            if self.left:
                t.write(b"x" * 100)
            else:
                self.done.set_result(None)
        def data_received(self, data):
            self.left -= 1
            if self.left:
                self.t.write(data)
            else:
                self.done.set_result(None)

    async def main():
        a, b = socket.socketpair()
        await loop.connect_accepted_socket(Echo, a)
        done = loop.create_future()
        t, _ = await loop.connect_accepted_socket(lambda: Client(done), b)
        await done
        t.close()
    loop.run_until_complete(main())
loop.close()
