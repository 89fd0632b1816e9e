"""What users install: the sdist and wheel (`python -m build`) in a new
virtual environment, and `make install` for C programs with pkg-config.

Marked `packaging` (part of the ordinary run; `-m "not packaging"` leaves
them out).  They build from a copy of the source tree, never into it, and run
the installed copies from outside it, with no LD_LIBRARY_PATH or LD_PRELOAD
(the ASan run sets both), so what is found is what was installed.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile

import pytest

import py_async_lib

pytestmark = pytest.mark.packaging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONPATH",
                        "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env.update(extra)
    return env


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env=kw.pop("env", clean_env()), **kw)
    assert proc.returncode == 0, (
        f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


# ---- sdist and wheel ------------------------------------------------------

@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """`python -m build` of a copy of the tree: the sdist, then the wheel
    built from the unpacked sdist (so the wheel proves the sdist builds)."""
    tmp = tmp_path_factory.mktemp("dist")
    # Looked for from outside the tree, whose build/ directory would pass
    # for the module.
    if subprocess.run([sys.executable, "-c", "import build.__main__"], cwd=tmp,
                      env=clean_env(), capture_output=True).returncode:
        pytest.skip("the build module is not installed (the test extra has it)")
    src = tmp / "src"
    if os.path.isdir(os.path.join(ROOT, ".git")) or os.path.isfile(os.path.join(ROOT, ".git")):
        # The tracked files only, as a fresh checkout has them.
        files = run(["git", "-C", ROOT, "ls-files", "-z"]).split("\0")
        for name in filter(None, files):
            if os.path.exists(os.path.join(ROOT, name)):
                os.makedirs(src / os.path.dirname(name), exist_ok=True)
                shutil.copy2(os.path.join(ROOT, name), src / name)
    else:   # an unpacked sdist
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
            "build", "*.so", "*.so.*", "*.o", "__pycache__", "*.egg-info"))
    # No build isolation: the build needs no network (setuptools, wheel and
    # cffi are the test extra's and this interpreter's).
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
         str(tmp / "out"), str(src)], cwd=tmp)
    names = os.listdir(tmp / "out")
    sdist = [n for n in names if n.endswith(".tar.gz")]
    wheel = [n for n in names if n.endswith(".whl")]
    assert len(sdist) == 1 and len(wheel) == 1, names
    return tmp / "out" / sdist[0], tmp / "out" / wheel[0]


def test_sdist_has_the_sources_and_nothing_built(dist):
    sdist, _ = dist
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("Makefile", "setup.py", "pyproject.toml", "build_ffi.py",
                   "libcasyncio/casyncio.h", "libcasyncio/core.c",
                   "libcasyncio/casyncio.pc.in", "benchmarks/loadgen.mk",
                   "py_async_lib/_casyncio_cdef.h", "py_async_lib/py.typed",
                   "examples/echo_server.c", "README.md"):
        assert needed in names
    assert not [n for n in names if n.endswith((".so", ".o")) or ".so." in n]


def test_wheel_carries_the_library_and_the_extension(dist):
    _, wheel = dist
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "py_async_lib/libcasyncio.so.0" in names
    assert "py_async_lib/py.typed" in names
    assert [n for n in names if n.startswith("py_async_lib/_casyncio.")
            and n.endswith(".so")]
    assert f"-{py_async_lib.__version__}-" in os.path.basename(wheel)


def test_wheel_in_a_new_venv_runs_a_loop(dist, tmp_path):
    _, wheel = dist
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / "bin" / "python")
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
         "--no-deps", "--no-index", str(wheel)])
    # cffi is a dependency pip would fetch; without a network it comes from
    # this interpreter's site-packages, added after the venv's own (and
    # after the install, which would otherwise find a copy installed there).
    import _cffi_backend
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip()
    with open(os.path.join(site, "cffi_from_outside.pth"), "w") as f:
        f.write(os.path.dirname(_cffi_backend.__file__) + "\n")
    check = textwrap.dedent("""
        import asyncio, importlib.metadata, os, sys
        import py_async_lib

        async def main():
            async def echo(reader, writer):
                writer.write(await reader.read(100))
                await writer.drain()
                writer.close()
            server = await asyncio.start_server(echo, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            data = await reader.read(100)
            writer.close()
            server.close()
            await server.wait_closed()
            return type(asyncio.get_running_loop()).__name__, data

        print(py_async_lib.run(main()))
        print(os.path.dirname(py_async_lib.__file__))
        print(py_async_lib.__version__, importlib.metadata.version("py_async_lib"))
        maps = open("/proc/self/maps").read()
        print(sorted({line.split()[-1] for line in maps.splitlines()
                      if "libcasyncio" in line}))
    """)
    out = run([python, "-c", check], cwd=tmp_path).splitlines()
    assert out[0] == "('EventLoop', b'ping')"
    package = out[1]
    assert package == os.path.join(site, "py_async_lib")
    assert out[2] == f"{py_async_lib.__version__} {py_async_lib.__version__}"
    # Found through the extension's $ORIGIN rpath: the copy in the wheel.
    assert out[3] == repr([os.path.join(package, "libcasyncio.so.0")])
    assert os.path.exists(os.path.join(package, "py.typed"))


def test_version_has_one_home():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        pyproject = f.read()
    assert 'dynamic = ["version"]' in pyproject
    assert "__version__" in pyproject
    out = run(["make", "-s", "--no-print-directory", "-C", ROOT,
               "-f", "Makefile", "-f", "-", "print-version"],
              input="print-version:\n\t@echo $(VERSION)\n")
    assert out.strip() == py_async_lib.__version__


def test_public_api_is_annotated():
    import typing
    for fn in (py_async_lib.new_event_loop, py_async_lib.install, py_async_lib.run,
               py_async_lib.EventLoop.stats,
               py_async_lib.EventLoop.report_slow_iterations):
        assert "return" in typing.get_type_hints(fn), fn
    assert os.path.exists(os.path.join(os.path.dirname(py_async_lib.__file__), "py.typed"))


# ---- make install, pkg-config, a C program --------------------------------

@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("prefix")
    run(["make", "-s", "--no-print-directory", "-C", ROOT, "install",
         f"PREFIX={prefix}"])
    return prefix


def test_make_install_layout(prefix):
    version = py_async_lib.__version__
    lib = prefix / "lib"
    assert os.readlink(lib / "libcasyncio.so") == "libcasyncio.so.0"
    assert os.readlink(lib / "libcasyncio.so.0") == f"libcasyncio.so.{version}"
    assert (lib / f"libcasyncio.so.{version}").is_file()
    assert (prefix / "include" / "casyncio.h").is_file()
    dynamic = run(["readelf", "-d", str(lib / f"libcasyncio.so.{version}")]) \
        if shutil.which("readelf") else "[libcasyncio.so.0]"
    assert "[libcasyncio.so.0]" in dynamic
    pc = (lib / "pkgconfig" / "casyncio.pc").read_text()
    assert f"prefix={prefix}\n" in pc and f"Version: {version}\n" in pc


def test_make_install_destdir(tmp_path):
    stage = tmp_path / "stage"
    run(["make", "-s", "--no-print-directory", "-C", ROOT, "install",
         f"DESTDIR={stage}", "PREFIX=/opt/casyncio"])
    pc = (stage / "opt/casyncio/lib/pkgconfig/casyncio.pc").read_text()
    # The staged files say where they will live, not where they are staged.
    assert "prefix=/opt/casyncio\n" in pc and str(stage) not in pc
    assert (stage / "opt/casyncio/include/casyncio.h").is_file()
    run(["make", "-s", "--no-print-directory", "-C", ROOT, "uninstall",
         f"DESTDIR={stage}", "PREFIX=/opt/casyncio"])
    assert not [f for _, _, fs in os.walk(stage) for f in fs]


@pytest.mark.skipif(shutil.which("pkg-config") is None,
                    reason="pkg-config is not installed (.ci/run installs it)")
def test_c_echo_example_builds_against_the_installed_copy(prefix, tmp_path):
    env = clean_env(PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    flags = run(["pkg-config", "--cflags", "--libs", "casyncio"], env=env)
    assert str(prefix) in flags
    exe = tmp_path / "echo_server"
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0]
    run([cc, "-O2", "-Wall", "-Werror", os.path.join(ROOT, "examples", "echo_server.c"),
         *flags.split(), "-o", str(exe)], env=env)
    # An installed library outside the loader's paths is found the usual way.
    server = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True,
                              env=clean_env(LD_LIBRARY_PATH=str(prefix / "lib")))
    try:
        line = server.stdout.readline().split()
        assert line[:2] == ["listening", "127.0.0.1"], line
        with open(f"/proc/{server.pid}/maps") as f:
            mapped = {ln.split()[-1] for ln in f if "libcasyncio" in ln}
        assert mapped == {str(prefix / "lib" / f"libcasyncio.so.{py_async_lib.__version__}")}
        with socket.create_connection(("127.0.0.1", int(line[2])), timeout=10) as s:
            s.sendall(b"hello, C")
            got = b""
            while len(got) < 8:
                chunk = s.recv(100)
                assert chunk
                got += chunk
        assert got == b"hello, C"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()
