"""examples/echo_server.c, the C ABI's example program (build/echo_server,
built by `make`): it echoes over TCP and over a Unix socket, serves several
connections at once, and stops cleanly on SIGTERM and SIGINT."""
import os
import signal
import socket
import subprocess
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ECHO_SERVER = os.path.join(ROOT, "build", "echo_server")

pytestmark = pytest.mark.skipif(not os.access(ECHO_SERVER, os.X_OK),
                                reason="build/echo_server not built (make)")


def start(*args):
    proc = subprocess.Popen([ECHO_SERVER, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    assert line[0] == "listening", line
    return proc, line


def stop(proc, sig):
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert err == ""


def echo(sock, payload):
    # Sent from a thread while this one reads: a server that stops reading
    # while its out-buffer is full must not deadlock the test.
    sender = threading.Thread(target=sock.sendall, args=(payload,))
    sender.start()
    got = b""
    try:
        while len(got) < len(payload):
            chunk = sock.recv(1 << 20)
            assert chunk, "connection closed before the whole echo came back"
            got += chunk
    finally:
        sender.join()
    assert got == payload


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_tcp_echo_and_clean_stop(sig):
    proc, line = start()
    try:
        host, port = line[1], int(line[2])
        conns = [socket.create_connection((host, port), timeout=10) for _ in range(3)]
        for i, c in enumerate(conns):
            echo(c, b"hello %d" % i)
        # larger than the socket buffers: partial writes, out-buffer, resume
        echo(conns[0], os.urandom(4 << 20))
        conns[1].close()          # EOF on one; the others go on
        echo(conns[2], b"still here")
        for c in conns:
            c.close()
    finally:
        stop(proc, sig)


def test_unix_echo(tmp_path):
    path = str(tmp_path / "echo.sock")
    proc, line = start("-U", path)
    try:
        assert line[1:] == ["unix", path]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(10)
            c.connect(path)
            echo(c, b"x" * 100_000)
    finally:
        stop(proc, signal.SIGTERM)
    assert not os.path.exists(path)


def test_stop_with_connections_open():
    proc, line = start()
    conn = socket.create_connection((line[1], int(line[2])), timeout=10)
    try:
        echo(conn, b"ping")
        stop(proc, signal.SIGTERM)
        assert conn.recv(10) == b""   # the server closed it on the way out
    finally:
        conn.close()
