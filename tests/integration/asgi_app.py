"""A plain ASGI app for the uvicorn tests (served from uvicorn's command line).

Every response says which process served it and on which loop class, so a
test can tell that each worker runs py_async_lib's loop.
"""
import asyncio
import json
import os
import time

_lifespan = {"started": False}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _lifespan["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await _echo(receive, send)
        return
    assert scope["type"] == "http"
    path = scope["path"]
    if path == "/stream":
        await _stream(send)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if path == "/block":
        # Holds this worker's loop, so that the next connection goes to
        # another worker.
        time.sleep(float(scope["query_string"] or b"0.3"))
    loop = asyncio.get_running_loop()
    payload = {
        "pid": os.getpid(),
        "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "lifespan_started": _lifespan["started"],
        "method": scope["method"],
        "body_len": len(body),
        "http_version": scope["http_version"],
    }
    await _json(send, payload)


async def _echo(receive, send):
    """Echoes text frames, prefixed with the loop class's module."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    module = type(asyncio.get_running_loop()).__module__
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send",
                    "text": f"{module}:{message['text']}"})


async def _json(send, payload):
    data = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def _stream(send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for i in range(20):
        await send({"type": "http.response.body",
                    "body": b"chunk %d\n" % i, "more_body": True})
        await asyncio.sleep(0.001)
    await send({"type": "http.response.body", "body": b""})
