"""The Python examples in examples/ do what their docstrings say."""
import os
import signal
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_multicore_server_spreads_connections_over_its_workers():
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "examples", "multicore_server.py"),
         "--workers", "2", "--port", "0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        _, host, port, pids = server.stdout.readline().split()
        seen = set()
        # Twenty connections from twenty source ports: the kernel's
        # SO_REUSEPORT hash sends them all to one worker with p = 2**-19.
        for _ in range(20):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
                data = b""
                while data.count(b"Hello from worker") < 2:
                    chunk = s.recv(4096)
                    assert chunk, data
                    data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            seen.add(data.split(b"Hello from worker ")[1].split()[0].decode())
        assert seen == set(pids.split(","))
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        server.stdout.close()
