"""redis-py's asyncio client against a real redis-server (the `redis_server`
fixture starts it on a loopback port)."""
import asyncio
import os

import pytest

from integration_support import assert_our_loop, require, run

redis_asyncio = require("redis.asyncio")
redis_exceptions = require("redis.exceptions")


def test_commands_pipeline_pubsub_and_large_values(redis_server):
    async def main():
        client = redis_asyncio.Redis.from_url(redis_server.url())
        try:
            await client.flushdb()
            assert await client.set("k", "v") is True
            got = await client.get("k")
            big = os.urandom(5 * 1024 * 1024)
            await client.set("big", big)
            big_back = await client.get("big")
            async with client.pipeline(transaction=True) as pipe:
                for i in range(200):
                    pipe.incr("counter")
                incrs = await pipe.execute()
            # Many concurrent commands over the client's connection pool.
            values = await asyncio.gather(
                *(client.incrby("c2", i) for i in range(100)))
            # Pub/sub: a subscriber and a publisher on two connections.
            pubsub = client.pubsub()
            await pubsub.subscribe("chan")
            assert (await pubsub.get_message(timeout=5))["type"] == \
                "subscribe"
            for i in range(10):
                await client.publish("chan", f"m{i}")
            messages = []
            while len(messages) < 10:
                m = await pubsub.get_message(timeout=5)
                if m is not None and m["type"] == "message":
                    messages.append(m["data"])
            await pubsub.unsubscribe("chan")
            await pubsub.aclose()
            # A blocking pop served by a push from a second task.
            async def push_later():
                await asyncio.sleep(0.05)
                await client.rpush("q", "item")
            pusher = asyncio.ensure_future(push_later())
            popped = await client.blpop(["q"], timeout=10)
            await pusher
            return (got, big_back == big, incrs[-1], sorted(values)[-1],
                    messages, popped)
        finally:
            await client.aclose()

    got, big_ok, last_incr, c2, messages, popped = run(main)
    assert got == b"v"
    assert big_ok
    assert last_incr == 200
    assert c2 == sum(range(100))
    assert messages == [f"m{i}".encode() for i in range(10)]
    assert popped == (b"q", b"item")


@pytest.fixture
def restart_redis(redis_server):
    yield redis_server
    if redis_server.proc.poll() is not None:
        redis_server.start()


def test_server_shut_down_during_a_blocking_command(restart_redis):
    """SHUTDOWN from a second client while the first waits in BLPOP: the
    first gets redis' ConnectionError, and the loop goes on."""
    server = restart_redis

    async def main():
        loop = assert_our_loop()
        client = redis_asyncio.Redis.from_url(server.url())
        admin = redis_asyncio.Redis.from_url(server.url())
        try:
            await client.ping()
            waiting = asyncio.ensure_future(
                client.blpop(["never"], timeout=30))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            # redis-py takes its own link's ConnectionError as success.
            await admin.shutdown(nosave=True)
            with pytest.raises(redis_exceptions.ConnectionError) as info:
                await asyncio.wait_for(waiting, 20)
            await loop.run_in_executor(None, server.wait_stopped)
            # Commands now fail cleanly, with the same type.
            with pytest.raises(redis_exceptions.ConnectionError):
                await client.get("k")
        finally:
            await client.aclose()
            await admin.aclose()
        # The loop keeps working: restart the server and use it again.
        await loop.run_in_executor(None, server.start)
        again = redis_asyncio.Redis.from_url(server.url())
        try:
            await again.set("after", "fault")
            value = await again.get("after")
        finally:
            await again.aclose()
        return info.value, value

    error, value = run(main)
    print(f"redis got {type(error).__name__}: {error}")
    assert value == b"fault"


def test_server_killed_mid_command(restart_redis):
    """The server process killed (SIGKILL) while a command waits."""
    server = restart_redis

    async def main():
        loop = assert_our_loop()
        client = redis_asyncio.Redis.from_url(server.url())
        try:
            await client.ping()
            waiting = asyncio.ensure_future(client.blpop(["never"],
                                                         timeout=30))
            await asyncio.sleep(0.2)
            server.proc.kill()
            await loop.run_in_executor(None, server.wait_stopped)
            with pytest.raises(redis_exceptions.ConnectionError) as info:
                await asyncio.wait_for(waiting, 20)
        finally:
            await client.aclose()
        await asyncio.sleep(0)
        return info.value

    error = run(main)
    print(f"redis got {type(error).__name__}: {error}")
