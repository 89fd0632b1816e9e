"""asyncpg and psycopg 3 (async, with a pool) against a real PostgreSQL that
the `postgres` fixture starts (initdb into a temporary directory)."""
import asyncio
import ssl

import pytest

from integration_support import assert_our_loop, require, run


# ---- asyncpg ---------------------------------------------------------------

def test_asyncpg_queries_transactions_and_copy(postgres):
    asyncpg = require("asyncpg")

    async def main():
        # Plain TCP (the server offers TLS: the other tests take it).
        conn = await asyncpg.connect(postgres.dsn(), ssl=False)
        try:
            assert await conn.fetchval(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") \
                is False
            await conn.execute("DROP TABLE IF EXISTS t_asyncpg")
            await conn.execute(
                "CREATE TABLE t_asyncpg (id int PRIMARY KEY, name text, "
                "data bytea)")
            await conn.executemany(
                "INSERT INTO t_asyncpg VALUES ($1, $2, $3)",
                [(i, f"n{i}", bytes([i % 256]) * i) for i in range(500)])
            async with conn.transaction():
                await conn.execute("UPDATE t_asyncpg SET name = 'x' "
                                   "WHERE id < 10")
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conn.transaction():
                    await conn.execute("DELETE FROM t_asyncpg WHERE id = 1")
                    await conn.execute(
                        "INSERT INTO t_asyncpg VALUES (2, 'dup', '')")
            count = await conn.fetchval("SELECT count(*) FROM t_asyncpg")
            xs = await conn.fetchval(
                "SELECT count(*) FROM t_asyncpg WHERE name = 'x'")
            big = await conn.fetchval("SELECT data FROM t_asyncpg "
                                      "WHERE id = 499")
            # A cursor inside a transaction, fetched in chunks.
            async with conn.transaction():
                ids = [r["id"] async for r in conn.cursor(
                    "SELECT id FROM t_asyncpg ORDER BY id", prefetch=37)]
            # COPY out of a large result: many reads on our transport.
            rows = await conn.fetch(
                "SELECT g, repeat('y', 200) FROM generate_series(1, 20000) g")
            await conn.execute("DROP TABLE t_asyncpg")
            return count, xs, big, ids, len(rows), rows[-1][0]
        finally:
            await conn.close()

    count, xs, big, ids, nrows, last = run(main)
    assert count == 500           # the failed transaction rolled back
    assert xs == 10
    assert big == bytes([499 % 256]) * 499
    assert ids == list(range(500))
    assert (nrows, last) == (20000, 20000)


def test_asyncpg_pool_concurrent_queries_and_unix_socket(postgres):
    asyncpg = require("asyncpg")

    async def main():
        async with asyncpg.create_pool(postgres.dsn(), min_size=2,
                                       max_size=5) as pool:
            async def one(i):
                async with pool.acquire() as conn:
                    return await conn.fetchval(
                        "SELECT $1::int * 2 FROM pg_sleep(0.01)", i)
            doubled = await asyncio.gather(*(one(i) for i in range(40)))
        # The same server through its Unix socket.
        conn = await asyncpg.connect(host=postgres.dir, port=postgres.port,
                                     user=postgres.user,
                                     database=postgres.database)
        try:
            unix = await conn.fetchval("SELECT 'unix ok'")
        finally:
            await conn.close()
        return doubled, unix

    doubled, unix = run(main)
    assert doubled == [i * 2 for i in range(40)]
    assert unix == "unix ok"


def test_asyncpg_tls_through_start_tls(postgres):
    """asyncpg asks for TLS in the protocol, then upgrades the connection
    with loop.start_tls(): the certificate is checked against the CA."""
    asyncpg = require("asyncpg")
    if postgres.ca_pem is None:
        pytest.skip("trustme is not installed: the test server has no TLS "
                    "certificate (pip install '.[integration]')")

    async def main():
        ctx = ssl.create_default_context(cafile=postgres.ca_pem)
        conn = await asyncpg.connect(postgres.dsn(), ssl=ctx)
        try:
            tls = await conn.fetchrow(
                "SELECT ssl, version FROM pg_stat_ssl "
                "WHERE pid = pg_backend_pid()")
            rows = await conn.fetch(
                "SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
        finally:
            await conn.close()
        # A context that does not trust the CA is refused.
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncpg.connect(postgres.dsn(),
                                  ssl=ssl.create_default_context())
        return tls, len(rows)

    tls, nrows = run(main)
    assert tls["ssl"] is True and tls["version"].startswith("TLS")
    assert nrows == 5000


def test_asyncpg_cancellation_and_notifications(postgres):
    """A query cancelled by wait_for() (asyncpg then sends PostgreSQL a
    cancel request over a second connection) leaves the connection usable;
    LISTEN/NOTIFY reaches the listener callback."""
    asyncpg = require("asyncpg")

    async def main():
        conn = await asyncpg.connect(postgres.dsn())
        other = await asyncpg.connect(postgres.dsn())
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.fetchval("SELECT pg_sleep(30)"),
                                       0.2)
            with pytest.raises(TimeoutError):
                await conn.fetchval("SELECT pg_sleep(30)", timeout=0.2)
            after = await conn.fetchval("SELECT 'usable'")
            got = asyncio.get_running_loop().create_future()
            await conn.add_listener(
                "chan", lambda c, pid, channel, payload: got.set_result(
                    (channel, payload)))
            await other.execute("NOTIFY chan, 'hello'")
            note = await asyncio.wait_for(got, 10)
        finally:
            await other.close()
            await conn.close()
        return after, note

    after, note = run(main)
    assert after == "usable"
    assert note == ("chan", "hello")


# ---- psycopg 3 -------------------------------------------------------------

def test_psycopg_async_connection_and_pool(postgres):
    psycopg = require("psycopg")
    psycopg_pool = require("psycopg_pool")

    async def main():
        # Plain TCP here; the pool below takes libpq's default (TLS when
        # the server offers it).
        async with await psycopg.AsyncConnection.connect(
                postgres.dsn(), autocommit=True, sslmode="disable") as conn:
            await conn.execute("DROP TABLE IF EXISTS t_psycopg")
            await conn.execute("CREATE TABLE t_psycopg (id int, v text)")
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO t_psycopg VALUES (%s, %s)",
                    [(i, f"v{i}") for i in range(300)])
                await cur.execute("SELECT sum(id), count(*) FROM t_psycopg")
                total = await cur.fetchone()
            # COPY FROM STDIN and back.
            async with conn.cursor() as cur:
                async with cur.copy("COPY t_psycopg FROM STDIN") as copy:
                    for i in range(300, 1300):
                        await copy.write_row((i, "c"))
                await cur.execute("SELECT count(*) FROM t_psycopg")
                (after_copy,) = await cur.fetchone()
            # A server-side cursor, fetched in chunks.
            async with conn.transaction():
                async with conn.cursor(name="ss") as cur:
                    cur.itersize = 50
                    await cur.execute("SELECT id FROM t_psycopg ORDER BY id")
                    ids = [r[0] async for r in cur]

        async with psycopg_pool.AsyncConnectionPool(
                postgres.dsn(), min_size=2, max_size=4, open=False) as pool:
            await pool.wait()

            async def one(i):
                async with pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT %s::int + 1000, pg_sleep(0.01)", (i,))
                    return (await cur.fetchone())[0]
            pooled = await asyncio.gather(*(one(i) for i in range(30)))
            stats = pool.get_stats()

        async with await psycopg.AsyncConnection.connect(
                postgres.dsn(), autocommit=True) as conn:
            await conn.execute("DROP TABLE t_psycopg")
        return total, after_copy, ids, pooled, stats

    total, after_copy, ids, pooled, stats = run(main)
    assert total == (sum(range(300)), 300)
    assert after_copy == 1300
    assert ids == list(range(1300))
    assert pooled == [i + 1000 for i in range(30)]
    assert stats["requests_num"] == 30
    assert stats["pool_max"] == 4


def test_psycopg_cancel_and_notifies(postgres):
    psycopg = require("psycopg")

    async def main():
        async with await psycopg.AsyncConnection.connect(
                postgres.dsn(), autocommit=True) as conn, \
                await psycopg.AsyncConnection.connect(
                    postgres.dsn(), autocommit=True) as other:
            query = asyncio.ensure_future(conn.execute("SELECT pg_sleep(30)"))
            await asyncio.sleep(0.2)
            await conn.cancel_safe()
            with pytest.raises(psycopg.errors.QueryCanceled):
                await query
            after = await (await conn.execute("SELECT 'usable'")).fetchone()

            await conn.execute("LISTEN chan")

            async def notify():
                await asyncio.sleep(0.05)
                await other.execute("NOTIFY chan, 'hi'")
            sender = asyncio.ensure_future(notify())
            gen = conn.notifies(timeout=10)
            async for note in gen:
                break
            await gen.aclose()
            await sender
        return after[0], (note.channel, note.payload)

    after, note = run(main)
    assert after == "usable"
    assert note == ("chan", "hi")


# ---- faults: the server stopped in the middle of a query --------------------

async def stop_server_during(postgres, query_task):
    """Lets `query_task` start its pg_sleep, then stops the server at once
    (pg_ctl stop -m immediate, run in a thread so that the loop goes on)."""
    loop = assert_our_loop()
    await asyncio.sleep(0.3)
    assert not query_task.done()
    await loop.run_in_executor(None, postgres.stop, "immediate")


async def work_after_the_fault():
    """The loop still runs timers, tasks, executor jobs and sockets."""
    loop = assert_our_loop()
    await asyncio.sleep(0.01)
    assert await loop.run_in_executor(None, sum, [1, 2, 3]) == 6
    server = await asyncio.start_server(
        lambda r, w: (w.write(b"still here"), w.close()), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return data


@pytest.fixture
def restart_postgres(postgres):
    yield postgres
    if not postgres.running():
        postgres.start()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_asyncpg_server_stopped_mid_query(restart_postgres, tls):
    asyncpg = require("asyncpg")
    postgres = restart_postgres
    if tls and postgres.ca_pem is None:
        pytest.skip("trustme is not installed: the test server has no TLS "
                    "certificate (pip install '.[integration]')")

    async def main():
        ssl_arg = (ssl.create_default_context(cafile=postgres.ca_pem)
                   if tls else False)
        conn = await asyncpg.connect(postgres.dsn(), ssl=ssl_arg)
        query = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))
        await stop_server_during(postgres, query)
        # ConnectionDoesNotExistError (an InterfaceError), or the server's
        # own shutdown error if it got one out first (a PostgresError); a
        # bare OSError from the transport would not be clean.
        with pytest.raises((asyncpg.InterfaceError,
                            asyncpg.PostgresError)) as info:
            await asyncio.wait_for(query, 20)
        assert conn.is_closed()
        await conn.close()
        return info.value, await work_after_the_fault()

    error, after = run(main)
    print(f"asyncpg got {type(error).__name__}: {error}")
    assert after == b"still here"


def test_psycopg_server_stopped_mid_query(restart_postgres):
    psycopg = require("psycopg")
    postgres = restart_postgres

    async def main():
        conn = await psycopg.AsyncConnection.connect(postgres.dsn(),
                                                     autocommit=True)
        query = asyncio.ensure_future(conn.execute("SELECT pg_sleep(30)"))
        await stop_server_during(postgres, query)
        with pytest.raises(psycopg.OperationalError) as info:
            await asyncio.wait_for(query, 20)
        assert conn.closed or conn.broken
        await conn.close()
        return info.value, await work_after_the_fault()

    error, after = run(main)
    print(f"psycopg got {type(error).__name__}: {error}")
    assert after == b"still here"
