"""aiohttp's server and client, both on our loop, over loopback."""
import asyncio
import hashlib
import os
import ssl

import pytest

from integration_support import assert_our_loop, require, run

aiohttp = require("aiohttp")
from aiohttp import web  # noqa: E402


def make_app():
    async def hello(request):
        assert_our_loop()
        # The client's port: requests on one connection share it.
        peer = request.transport.get_extra_info("peername")
        sslobj = request.transport.get_extra_info("ssl_object")
        return web.json_response({
            "n": int(request.query["n"]), "peer_port": peer[1],
            "scheme": request.scheme,
            "tls": sslobj.version() if sslobj is not None else None})

    async def stream(request):
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(50):
            await resp.write(b"%04d:" % i + b"x" * 1000 + b"\n")
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async def upload(request):
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(65536):
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await sock.send_str("echo:" + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await sock.send_bytes(msg.data[::-1])
        return sock

    async def big(request):
        # 25 MiB through write()'s drain: waits while the client reads late.
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(400):
            await resp.write(bytes([i % 256]) * 65536)
        await resp.write_eof()
        return resp

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/big", big)
    app.router.add_get("/hello", hello)
    app.router.add_get("/stream", stream)
    app.router.add_post("/upload", upload)
    app.router.add_get("/ws", ws)
    return app


def tls_contexts(trustme):
    """Server and client contexts: a CA made here (self-signed) issues the
    server's certificate; only the client context trusts that CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


async def serve(ssl_context=None):
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, port


def test_keepalive_several_requests_one_connection():
    async def main():
        runner, port = await serve()
        try:
            conn = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=conn) as session:
                got = []
                for n in range(10):
                    async with session.get(
                            f"http://127.0.0.1:{port}/hello?n={n}") as r:
                        assert r.status == 200
                        got.append(await r.json())
        finally:
            await runner.cleanup()
        return got

    got = run(main)
    assert [g["n"] for g in got] == list(range(10))
    assert len({g["peer_port"] for g in got}) == 1, got   # one connection
    assert {g["scheme"] for g in got} == {"http"}
    assert {g["tls"] for g in got} == {None}


def test_streaming_response():
    async def main():
        runner, port = await serve()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/stream") as r:
                    assert r.headers["Transfer-Encoding"] == "chunked"
                    lines = []
                    async for line in r.content:
                        lines.append(line)
        finally:
            await runner.cleanup()
        return lines

    lines = run(main)
    assert len(lines) == 50
    assert all(l == b"%04d:" % i + b"x" * 1000 + b"\n"
               for i, l in enumerate(lines))


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_backpressure_with_a_slow_reader(tls):
    """The client reads the first MiB slowly: the server's transport
    pauses its writer, resumes it, and every byte arrives in order."""
    server_ctx = client_ctx = None
    if tls:
        server_ctx, client_ctx = tls_contexts(require("trustme"))
    scheme = "https" if tls else "http"

    async def main():
        runner, port = await serve(server_ctx)
        try:
            conn = aiohttp.TCPConnector(ssl=client_ctx) if tls else None
            async with aiohttp.ClientSession(connector=conn) as session:
                async with session.get(f"{scheme}://127.0.0.1:{port}/big") \
                        as r:
                    digest, total = hashlib.sha256(), 0
                    async for chunk in r.content.iter_chunked(65536):
                        digest.update(chunk)
                        total += len(chunk)
                        if total < 1024 * 1024:
                            await asyncio.sleep(0.01)
        finally:
            await runner.cleanup()
        return total, digest.hexdigest()

    expected = hashlib.sha256(b"".join(bytes([i % 256]) * 65536
                                       for i in range(400))).hexdigest()
    assert run(main) == (400 * 65536, expected)


def test_multi_megabyte_upload():
    body = os.urandom(8 * 1024 * 1024 + 123)

    async def main():
        runner, port = await serve()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{port}/upload",
                                        data=body) as r:
                    assert r.status == 200
                    return await r.json()
        finally:
            await runner.cleanup()

    got = run(main)
    assert got == {"size": len(body),
                   "sha256": hashlib.sha256(body).hexdigest()}


def test_file_response_sendfile(tmp_path):
    """web.FileResponse goes through loop.sendfile() on a plain socket."""
    payload = os.urandom(3 * 1024 * 1024 + 7)
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)

    async def send_file(request):
        return web.FileResponse(path)

    async def main():
        loop = assert_our_loop()
        calls = []
        loop_sendfile = loop.sendfile

        async def counted_sendfile(transport, file, offset=0, count=None, **kw):
            calls.append((offset, count))
            return await loop_sendfile(transport, file, offset, count, **kw)
        loop.sendfile = counted_sendfile
        app = web.Application()
        app.router.add_get("/file", send_file)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            conn = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=conn) as session:
                bodies = []
                for _ in range(3):
                    async with session.get(f"http://127.0.0.1:{port}/file") \
                            as r:
                        bodies.append(await r.read())
                # A range request: sendfile from an offset.
                async with session.get(f"http://127.0.0.1:{port}/file",
                                       headers={"Range": "bytes=1000-1999"}
                                       ) as r:
                    ranged = (r.status, await r.read())
        finally:
            await runner.cleanup()
        return bodies, ranged, calls

    bodies, (status, ranged), calls = run(main)
    assert calls and (1000, 1000) in calls, calls
    assert all(b == payload for b in bodies)
    assert status == 206 and ranged == payload[1000:2000]


def test_websocket_echo():
    async def main():
        runner, port = await serve()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(
                        f"http://127.0.0.1:{port}/ws") as ws:
                    texts = []
                    for i in range(20):
                        await ws.send_str(f"m{i}")
                        texts.append(await ws.receive_str())
                    big = os.urandom(1024 * 1024)
                    await ws.send_bytes(big)
                    back = await ws.receive_bytes()
                    await ws.close()
                    return texts, back == big[::-1], ws.close_code
        finally:
            await runner.cleanup()

    texts, big_ok, code = run(main)
    assert texts == [f"echo:m{i}" for i in range(20)]
    assert big_ok
    assert code == 1000


def test_tls_with_self_signed_certificate():
    server_ctx, client_ctx = tls_contexts(require("trustme"))

    async def main():
        runner, port = await serve(server_ctx)
        try:
            conn = aiohttp.TCPConnector(ssl=client_ctx, limit=1)
            async with aiohttp.ClientSession(connector=conn) as session:
                got = []
                for n in range(3):
                    async with session.get(
                            f"https://127.0.0.1:{port}/hello?n={n}") as r:
                        got.append(await r.json())
                big = os.urandom(2 * 1024 * 1024)
                async with session.post(f"https://127.0.0.1:{port}/upload",
                                        data=big) as r:
                    up = await r.json()
            # A client that does not trust the CA is refused.
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await session.get(f"https://127.0.0.1:{port}/hello?n=0")
        finally:
            await runner.cleanup()
        return got, up, hashlib.sha256(big).hexdigest()

    got, up, digest = run(main)
    assert [g["n"] for g in got] == [0, 1, 2]
    assert {g["scheme"] for g in got} == {"https"}
    assert len({g["peer_port"] for g in got}) == 1
    assert {g["tls"] for g in got} == {"TLSv1.3"}
    assert up == {"size": 2 * 1024 * 1024, "sha256": digest}
