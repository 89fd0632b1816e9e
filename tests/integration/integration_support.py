"""Helpers of the integration tests (tests/integration/conftest.py has
the fixtures): run a coroutine on our loop with its checks, skip when a
library or binary is missing, throwaway PostgreSQL and Redis servers."""
import asyncio
import contextlib
import importlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import py_async_lib

from fdcheck import leaked_fds, open_fds   # noqa: F401 (the tests use them from here)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

INSTALL_HINT = ("pip install '.[integration]'; .ci/install-integration "
                "installs it on CI's Python 3.11")


def require(module):
    """Imports `module` or skips the test, naming what is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{module} is not installed for Python "
                    f"{sys.version.split()[0]} ({exc}); {INSTALL_HINT}",
                    allow_module_level=True)


def require_binary(name, package):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package}; "
                    ".ci/install-integration installs it)",
                    allow_module_level=True)
    return path


# ---- running a coroutine on our loop, with the checks every test makes ----

def assert_our_loop():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, py_async_lib.EventLoop), type(loop)
    return loop


def run(main, *args):
    """Runs main(*args) on a fresh py_async_lib loop and returns its result.

    Checks that the running loop is ours, and that no fd is left open once
    the loop is closed.
    """
    async def checked():
        assert_our_loop()
        return await main(*args)

    before = open_fds()
    with asyncio.Runner(loop_factory=py_async_lib.new_event_loop) as runner:
        result = runner.run(checked())
    assert not leaked_fds(before), f"fds leaked: {leaked_fds(before)}"
    return result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, what, timeout=30.0):
    """Waits until something accepts on 127.0.0.1:port (`proc` still alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), \
                socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} in {timeout} s")


def server_env():
    """The environment for server processes: without the ASan preload of
    `make asan-pytest`, which is for our library, not for PostgreSQL."""
    env = dict(os.environ)
    for name in ("LD_PRELOAD", "LD_LIBRARY_PATH", "ASAN_OPTIONS",
                 "UBSAN_OPTIONS"):
        env.pop(name, None)
    return env


# ---- PostgreSQL ------------------------------------------------------------

def pg_bindir():
    """Debian keeps initdb and pg_ctl in /usr/lib/postgresql/N/bin."""
    path = shutil.which("pg_ctl")
    if path:
        return os.path.dirname(os.path.realpath(path))
    base = "/usr/lib/postgresql"
    versions = sorted((d for d in os.listdir(base) if d.isdigit()), key=int) \
        if os.path.isdir(base) else []
    for v in reversed(versions):
        if os.path.exists(os.path.join(base, v, "bin", "pg_ctl")):
            return os.path.join(base, v, "bin")
    return None


class PostgresServer:
    """A throwaway cluster: initdb into a temporary directory, pg_ctl start
    and stop.  PostgreSQL refuses to run as root, so as root it runs as the
    unprivileged `nobody` (the directory is chowned to it)."""

    user = "postgres"          # the database superuser (initdb -U)
    database = "postgres"

    def __init__(self, bindir):
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="py_async_lib-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "log")
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self.as_user = ["runuser", "-u", "nobody", "--"]
        self.ca_pem = None      # set by enable_tls()

    def _run(self, *argv):
        subprocess.run(self.as_user + [os.path.join(self.bindir, argv[0]),
                                       *argv[1:]],
                       check=True, env=server_env(), cwd=self.dir,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    def init(self):
        self._run("initdb", "-D", self.data, "-U", self.user,
                  "--auth=trust", "--no-sync", "-E", "UTF8",
                  "--locale=C")

    def enable_tls(self, trustme):
        """Serves TLS too, with a certificate for 127.0.0.1 and localhost
        from a CA made here (its PEM in self.ca_pem)."""
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_pem = os.path.join(self.dir, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_pem)
        files = {"server.crt": cert.cert_chain_pems[0],
                 "server.key": cert.private_key_pem}
        for name, blob in files.items():
            path = os.path.join(self.dir, name)
            blob.write_to_path(path)
            os.chmod(path, 0o600)       # postgres wants its key private
            if self.as_user:
                nobody = pwd.getpwnam("nobody")
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        self.tls_opts = (f" -c ssl=on -c ssl_cert_file={self.dir}/server.crt"
                         f" -c ssl_key_file={self.dir}/server.key")

    tls_opts = ""

    def start(self):
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                f"-c unix_socket_directories={self.dir} -c fsync=off"
                + self.tls_opts)
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", opts,
                  "-w", "-t", "60", "start")

    def running(self):
        try:
            self._run("pg_ctl", "-D", self.data, "status")
        except subprocess.CalledProcessError:
            return False
        return True

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def dsn(self):
        return (f"postgresql://{self.user}@127.0.0.1:{self.port}/"
                f"{self.database}")

    def cleanup(self):
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- Redis -----------------------------------------------------------------

class RedisServer:
    """redis-server on a loopback port, no persistence, in a temp dir."""

    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="py_async_lib-redis-")
        self.port = free_port()
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            env=server_env(), stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT)
        self.log.close()
        wait_for_port(self.port, self.proc, "redis-server")

    def wait_stopped(self):
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
