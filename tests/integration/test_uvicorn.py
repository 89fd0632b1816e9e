"""uvicorn started from its command line with `--loop py_async_lib:new_event_loop`,
serving tests/integration/asgi_app.py to httpx (whose client runs on our loop
too).  Each response names the loop class of the worker that served it."""
import asyncio
import contextlib
import os
import signal
import subprocess
import sys

import pytest

from integration_support import (HERE, ROOT, free_port, require, run,
                                 wait_for_port)

require("uvicorn")
httpx = require("httpx")

OUR_LOOP = "py_async_lib.loop.EventLoop"


@contextlib.contextmanager
def uvicorn(*extra):
    port = free_port()
    env = dict(os.environ)      # (under make asan-pytest, ASan's too)
    # Imports the in-place build of py_async_lib and the app module.
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT, HERE] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"),
                            f"py_async_lib-uvicorn-{port}.log"), "w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "asgi_app:app",
         "--loop", "py_async_lib:new_event_loop",
         "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on",
         *extra],
        env=env, cwd=HERE, stdin=subprocess.DEVNULL, stdout=log,
        stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, "uvicorn")
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        proc.output = log.read().decode(errors="replace")
        log.close()
        os.unlink(log.name)


def test_uvicorn_single_worker():
    # uvicorn serves websockets with the websockets library: the client too.
    ws_client = require("websockets.asyncio.client")

    async def main(port):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            gets = [(await client.get("/")).json() for _ in range(5)]
            post = (await client.post("/", content=b"z" * 3_000_000)).json()
            async with client.stream("GET", "/stream") as r:
                chunks = [c async for c in r.aiter_bytes()]
        echoes = []
        async with ws_client.connect(f"ws://127.0.0.1:{port}/") as ws:
            for i in range(5):
                await ws.send(f"m{i}")
                echoes.append(await ws.recv())
        return gets, post, b"".join(chunks), echoes

    with uvicorn() as (port, proc):
        gets, post, streamed, echoes = run(main, port)
    assert proc.returncode == 0, proc.output
    assert {g["loop"] for g in gets} == {OUR_LOOP}
    assert {g["pid"] for g in gets} == {proc.pid}      # no workers: itself
    assert all(g["lifespan_started"] for g in gets)
    assert post["method"] == "POST" and post["body_len"] == 3_000_000
    assert streamed == b"".join(b"chunk %d\n" % i for i in range(20))
    assert echoes == [f"py_async_lib.loop:m{i}" for i in range(5)]
    assert "Application startup complete" in proc.output
    assert "Application shutdown complete" in proc.output


def test_uvicorn_two_workers():
    """With --workers 2 both workers serve, each on our loop: while one is
    held by a blocking request, a new connection is taken by the other."""
    async def main(port):
        base = f"http://127.0.0.1:{port}"
        seen = {}
        for _ in range(20):
            async with httpx.AsyncClient(base_url=base) as a, \
                    httpx.AsyncClient(base_url=base) as b:
                held = asyncio.ensure_future(a.get("/block?0.4"))
                await asyncio.sleep(0.1)
                other = await b.get("/")
                for r in (await held, other):
                    info = r.json()
                    seen[info["pid"]] = info["loop"]
            if len(seen) == 2:
                break
        return seen

    with uvicorn("--workers", "2") as (port, proc):
        seen = run(main, port)
    assert proc.returncode == 0, proc.output
    assert len(seen) == 2, (seen, proc.output)
    assert proc.pid not in seen          # the workers, not the supervisor
    assert set(seen.values()) == {OUR_LOOP}
