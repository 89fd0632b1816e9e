/* test_stream.c — C-side stream reads, writes, back-pressure, shutdown. */
#include "casyncio.h"
#include "ctest.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#define MAXEV 64

/* ---- helpers ---------------------------------------------------------------- */

static loop_event_t evlog[4096];
static int nlog;

/* One iteration; its events are appended to evlog.  Returns the count. */
static int step(loop_t *loop, int timeout_ms, int max)
{
    loop_event_t ev[MAXEV];
    int n = loop_run_once(loop, timeout_ms, ev, max);
    int i;

    for (i = 0; i < n && nlog < 4096; i++)
        evlog[nlog++] = ev[i];
    return n;
}

/* Index of the first logged event of this kind for fd, or -1. */
static int find_ev(int kind, int fd)
{
    int i;
    for (i = 0; i < nlog; i++) {
        if (evlog[i].kind == kind && evlog[i].fd == fd)
            return i;
    }
    return -1;
}

static int count_ev(int kind, int fd)
{
    int i, c = 0;
    for (i = 0; i < nlog; i++)
        c += evlog[i].kind == kind && evlog[i].fd == fd;
    return c;
}

static unsigned char pat(uint64_t i)
{
    return (unsigned char)(i % 251);
}

static void fill_pattern(unsigned char *buf, size_t n, uint64_t start)
{
    size_t i;
    for (i = 0; i < n; i++)
        buf[i] = pat(start + i);
}

/* Reads everything available from fd, checking the pattern; returns bytes
 * read, or -1 on a mismatch.  *eof set when read() returned 0. */
static int64_t read_check(int fd, uint64_t *pos, int *eof)
{
    static unsigned char buf[65536];
    int64_t total = 0;
    ssize_t n, i;

    for (;;) {
        n = read(fd, buf, sizeof(buf));
        if (n == 0) {
            if (eof)
                *eof = 1;
            return total;
        }
        if (n < 0)
            return total;
        for (i = 0; i < n; i++) {
            if (buf[i] != pat(*pos + (uint64_t)i))
                return -1;
        }
        *pos += (uint64_t)n;
        total += n;
    }
}

static int sockpair(int sv[2])
{
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
}

/* Writes pattern chunks until more than `target` bytes are buffered.
 * Returns total bytes handed to loop_write. */
static uint64_t fill_until_buffered(loop_t *loop, int fd, int64_t target)
{
    static unsigned char chunk[16384];
    uint64_t total = 0;
    int64_t r = 0;
    int i;

    for (i = 0; i < 10000 && r <= target; i++) {
        fill_pattern(chunk, sizeof(chunk), total);
        r = loop_write(loop, fd, chunk, sizeof(chunk));
        if (r < 0)
            break;
        total += sizeof(chunk);
    }
    return total;
}

/* ---- reads -------------------------------------------------------------------- */

TEST(test_read_data_eof)
{
    loop_t *loop;
    char *arena;
    size_t asize;
    int sv[2], n, i;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    loop_read_arena(loop, &arena, &asize);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);

    /* reading starts off */
    REQUIRE(write(sv[1], "hello", 5) == 5);
    nlog = 0;
    CHECK_EQ(step(loop, 0, MAXEV), 0);

    CHECK_EQ(loop_stream_read_start(loop, sv[0]), 0);
    CHECK_EQ(loop_stream_read_start(loop, sv[0]), 0);   /* idempotent */
    n = step(loop, 1000, MAXEV);
    CHECK_EQ(n, 1);
    CHECK_EQ(evlog[0].kind, LOOP_EV_DATA);
    CHECK_EQ(evlog[0].fd, sv[0]);
    CHECK_EQ(evlog[0].a, 5);
    CHECK(evlog[0].b >= 0 && (size_t)(evlog[0].b + 5) <= asize);
    CHECK(memcmp(arena + evlog[0].b, "hello", 5) == 0);

    /* read_stop: data waits */
    CHECK_EQ(loop_stream_read_stop(loop, sv[0]), 0);
    REQUIRE(write(sv[1], "again", 5) == 5);
    nlog = 0;
    CHECK_EQ(step(loop, 0, MAXEV), 0);
    CHECK_EQ(loop_stream_read_start(loop, sv[0]), 0);
    CHECK_EQ(step(loop, 1000, MAXEV), 1);
    CHECK_EQ(evlog[0].kind, LOOP_EV_DATA);
    CHECK(memcmp(arena + evlog[0].b, "again", 5) == 0);

    /* EOF, then reading is off */
    shutdown(sv[1], SHUT_WR);
    nlog = 0;
    CHECK_EQ(step(loop, 1000, MAXEV), 1);
    CHECK_EQ(evlog[0].kind, LOOP_EV_EOF);
    CHECK_EQ(evlog[0].fd, sv[0]);
    for (i = 0; i < 3; i++)
        CHECK_EQ(step(loop, 0, MAXEV), 0);

    loop_stats_t st;
    loop_stats(loop, &st);
    CHECK_EQ(st.bytes_read, 10);
    CHECK_EQ(loop_stream_close(loop, sv[0]), 0);
    CHECK_EQ(loop_stream_close(loop, sv[0]), -EBADF);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

/* read_size bounds a read; the next part comes next iteration. Two streams
 * in one iteration get separate arena regions. */
TEST(test_read_size_and_offsets)
{
    loop_t *loop;
    char *arena;
    int a[2], b[2], n;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(a) == 0 && sockpair(b) == 0);
    loop_read_arena(loop, &arena, NULL);
    CHECK_EQ(loop_stream_open(loop, a[0], LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_open(loop, b[0], LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_set_read_size(loop, a[0], 0), -EINVAL);
    CHECK_EQ(loop_stream_set_read_size(loop, a[0], 10), 0);
    CHECK_EQ(loop_stream_read_start(loop, a[0]), 0);
    CHECK_EQ(loop_stream_read_start(loop, b[0]), 0);
    REQUIRE(write(a[1], "0123456789abcdefghijKLMNO", 25) == 25);
    REQUIRE(write(b[1], "other", 5) == 5);

    nlog = 0;
    n = step(loop, 1000, MAXEV);
    CHECK_EQ(n, 2);
    {
        int ia = find_ev(LOOP_EV_DATA, a[0]), ib = find_ev(LOOP_EV_DATA, b[0]);
        REQUIRE(ia >= 0 && ib >= 0);
        CHECK_EQ(evlog[ia].a, 10);
        CHECK_EQ(evlog[ib].a, 5);
        CHECK(memcmp(arena + evlog[ia].b, "0123456789", 10) == 0);
        CHECK(memcmp(arena + evlog[ib].b, "other", 5) == 0);
        CHECK(evlog[ia].b + 10 <= evlog[ib].b || evlog[ib].b + 5 <= evlog[ia].b);
    }
    nlog = 0;
    CHECK_EQ(step(loop, 1000, MAXEV), 1);
    CHECK_EQ(evlog[0].a, 10);
    CHECK(memcmp(arena + evlog[0].b, "abcdefghij", 10) == 0);
    nlog = 0;
    CHECK_EQ(step(loop, 1000, MAXEV), 1);
    CHECK_EQ(evlog[0].a, 5);
    CHECK(memcmp(arena + evlog[0].b, "KLMNO", 5) == 0);
    loop_free(loop);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

/* Reads by the caller: the loop reports LOOP_EV_READABLE (level-triggered,
 * again every iteration until the caller reads) and reads nothing; EOF is
 * the caller's to find too.  Switching back, the loop reads into the arena. */
TEST(test_read_by_caller)
{
    loop_t *loop;
    char *arena, buf[16];
    int sv[2], sv2[2], i;
    loop_stats_t st;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    loop_read_arena(loop, &arena, NULL);
    CHECK_EQ(loop_stream_read_by_caller(loop, sv[0], 1), -EBADF);
    CHECK_EQ(loop_stream_read_by_caller(loop, -1, 1), -EBADF);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_read_by_caller(loop, sv[0], 1), 0);

    /* reading off: nothing reported */
    REQUIRE(write(sv[1], "hello", 5) == 5);
    nlog = 0;
    CHECK_EQ(step(loop, 0, MAXEV), 0);

    CHECK_EQ(loop_stream_read_start(loop, sv[0]), 0);
    for (i = 0; i < 2; i++) {
        nlog = 0;
        CHECK_EQ(step(loop, 1000, MAXEV), 1);
        CHECK_EQ(evlog[0].kind, LOOP_EV_READABLE);
        CHECK_EQ(evlog[0].fd, sv[0]);
        CHECK_EQ(evlog[0].a, 0);   /* the caller sizes its read */
    }
    CHECK_EQ(recv(sv[0], buf, sizeof buf, 0), 5);
    nlog = 0;
    CHECK_EQ(step(loop, 0, MAXEV), 0);

    /* a full event array: the other stream is reported next time */
    REQUIRE(sockpair(sv2) == 0);
    CHECK_EQ(loop_stream_open(loop, sv2[0], LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_read_by_caller(loop, sv2[0], 1), 0);
    CHECK_EQ(loop_stream_read_start(loop, sv2[0]), 0);
    REQUIRE(write(sv[1], "x", 1) == 1);
    REQUIRE(write(sv2[1], "y", 1) == 1);
    nlog = 0;
    CHECK_EQ(step(loop, 1000, 1), 1);
    CHECK_EQ(step(loop, 1000, MAXEV), 2);
    CHECK_EQ(count_ev(LOOP_EV_READABLE, sv[0]) +
             count_ev(LOOP_EV_READABLE, sv2[0]), 3);
    CHECK(count_ev(LOOP_EV_READABLE, sv[0]) >= 1);
    CHECK(count_ev(LOOP_EV_READABLE, sv2[0]) >= 1);
    CHECK_EQ(recv(sv[0], buf, sizeof buf, 0), 1);
    CHECK_EQ(loop_stream_close(loop, sv2[0]), 0);
    close(sv2[0]);
    close(sv2[1]);

    /* back to the loop's reads */
    CHECK_EQ(loop_stream_read_by_caller(loop, sv[0], 0), 0);
    REQUIRE(write(sv[1], "again", 5) == 5);
    nlog = 0;
    CHECK_EQ(step(loop, 1000, MAXEV), 1);
    CHECK_EQ(evlog[0].kind, LOOP_EV_DATA);
    CHECK_EQ(evlog[0].a, 5);
    CHECK(memcmp(arena + evlog[0].b, "again", 5) == 0);

    /* EOF under the caller's reads: readable until the caller stops */
    CHECK_EQ(loop_stream_read_by_caller(loop, sv[0], 1), 0);
    shutdown(sv[1], SHUT_WR);
    nlog = 0;
    CHECK_EQ(step(loop, 1000, MAXEV), 1);
    CHECK_EQ(evlog[0].kind, LOOP_EV_READABLE);
    CHECK_EQ(recv(sv[0], buf, sizeof buf, 0), 0);
    CHECK_EQ(loop_stream_read_stop(loop, sv[0]), 0);
    nlog = 0;
    CHECK_EQ(step(loop, 0, MAXEV), 0);

    /* writes are unaffected */
    CHECK_EQ(loop_write(loop, sv[0], "out", 3), 0);
    CHECK_EQ(recv(sv[1], buf, sizeof buf, 0), 3);

    loop_stats(loop, &st);
    CHECK_EQ(st.bytes_read, 5);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

/* A connection reset by the peer: LOOP_EV_ERROR with ECONNRESET. */
TEST(test_read_error)
{
    loop_t *loop;
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    struct linger lg = { 1, 0 };
    int lsn, cli, srv, i;

    REQUIRE(loop_new(&loop) == 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lsn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(lsn >= 0);
    REQUIRE(bind(lsn, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    REQUIRE(listen(lsn, 1) == 0);
    REQUIRE(getsockname(lsn, (struct sockaddr *)&addr, &alen) == 0);
    cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(cli >= 0);
    REQUIRE(connect(cli, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    srv = accept(lsn, NULL, NULL);
    REQUIRE(srv >= 0);
    REQUIRE(setsockopt(srv, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    close(srv);   /* RST */

    CHECK_EQ(loop_stream_open(loop, cli, LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_read_start(loop, cli), 0);
    nlog = 0;
    for (i = 0; i < 10 && nlog == 0; i++)
        step(loop, 1000, MAXEV);
    CHECK_EQ(nlog, 1);
    CHECK_EQ(evlog[0].kind, LOOP_EV_ERROR);
    CHECK_EQ(evlog[0].a, ECONNRESET);
    CHECK_EQ(evlog[0].b, LOOP_READABLE);
    CHECK_EQ(step(loop, 0, MAXEV), 0);   /* reading stopped */
    loop_free(loop);
    close(cli);
    close(lsn);
}

/* ---- writes -------------------------------------------------------------------- */

TEST(test_write_immediate)
{
    loop_t *loop;
    char buf[16];
    int sv[2], p[2];

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    REQUIRE(pipe(p) == 0);
    CHECK_EQ(loop_write(loop, sv[0], "x", 1), -EBADF);   /* not a stream */
    CHECK_EQ(loop_write_buffer_size(loop, sv[0]), -EBADF);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_write(loop, sv[0], "hello", 5), 0);
    CHECK_EQ(loop_write(loop, sv[0], NULL, 0), 0);
    CHECK_EQ(read(sv[1], buf, sizeof(buf)), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);

    {
        const void *bufs[3] = { "abc", "", "defg" };
        size_t lens[3] = { 3, 0, 4 };
        CHECK_EQ(loop_writev(loop, sv[0], bufs, lens, 3), 0);
        CHECK_EQ(loop_writev(loop, sv[0], bufs, lens, 0), 0);
        CHECK_EQ(loop_writev(loop, sv[0], bufs, lens, -1), -EINVAL);
        CHECK_EQ(read(sv[1], buf, sizeof(buf)), 7);
        CHECK(memcmp(buf, "abcdefg", 7) == 0);
    }

    /* a pipe (non-socket) stream: write(), and made non-blocking */
    CHECK_EQ(loop_stream_open(loop, p[1], 0), 0);
    CHECK(fcntl(p[1], F_GETFL) & O_NONBLOCK);
    CHECK_EQ(loop_write(loop, p[1], "pipe", 4), 0);
    CHECK_EQ(read(p[0], buf, sizeof(buf)), 4);
    CHECK(memcmp(buf, "pipe", 4) == 0);

    loop_stats_t st;
    loop_stats(loop, &st);
    CHECK_EQ(st.bytes_written, 16);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
}

/* Fill past the high-water mark, then let the peer drain: RESUME (once, at
 * or below low) before DRAINED (once), and every byte arrives in order. */
static void backpressure(int max)
{
    loop_t *loop;
    int sv[2], i, eof = 0;
    uint64_t total, rpos = 0;
    int64_t r, got = 0;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    total = fill_until_buffered(loop, sv[0], 64 * 1024);
    CHECK(loop_write_buffer_size(loop, sv[0]) > 64 * 1024);
    CHECK_EQ(loop_write(loop, sv[0], "", 0), loop_write_buffer_size(loop, sv[0]));

    nlog = 0;
    for (i = 0; i < 2000 && find_ev(LOOP_EV_DRAINED, sv[0]) < 0; i++) {
        r = read_check(sv[1], &rpos, &eof);
        CHECK(r >= 0);
        if (r < 0)
            break;
        got += r;
        CHECK(step(loop, 100, max) <= max);
    }
    r = read_check(sv[1], &rpos, &eof);
    CHECK(r >= 0);
    got += r;
    CHECK_EQ(got, (int64_t)total);
    CHECK_EQ(count_ev(LOOP_EV_RESUME, sv[0]), 1);
    CHECK_EQ(count_ev(LOOP_EV_DRAINED, sv[0]), 1);
    CHECK(find_ev(LOOP_EV_RESUME, sv[0]) < find_ev(LOOP_EV_DRAINED, sv[0]));
    CHECK_EQ(count_ev(LOOP_EV_ERROR, sv[0]), 0);
    CHECK_EQ(loop_write_buffer_size(loop, sv[0]), 0);
    CHECK_EQ(step(loop, 0, max), 0);   /* EPOLLOUT disarmed */
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

TEST(test_backpressure)
{
    backpressure(MAXEV);
}

/* Room for one event per call: RESUME and DRAINED from one flush are both
 * delivered, one per call. */
TEST(test_backpressure_max1)
{
    backpressure(1);
}

/* One flush that earns RESUME and DRAINED with room for one event: the
 * second waits in the loop and comes with the next call, which does not
 * block. */
TEST(test_spill_one_flush)
{
    loop_t *loop;
    int sv[2], eof = 0, n;
    uint64_t rpos = 0;
    struct timespec t0, t1;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    fill_until_buffered(loop, sv[0], 64 * 1024);
    CHECK(loop_write_buffer_size(loop, sv[0]) < 128 * 1024);
    CHECK(read_check(sv[1], &rpos, &eof) > 0);   /* socket queue now empty */
    nlog = 0;
    n = step(loop, 1000, 1);
    CHECK_EQ(n, 1);
    CHECK_EQ(evlog[0].kind, LOOP_EV_RESUME);
    CHECK_EQ(loop_write_buffer_size(loop, sv[0]), 0);   /* one send took all */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    n = step(loop, 5000, 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK_EQ(n, 1);
    CHECK_EQ(evlog[1].kind, LOOP_EV_DRAINED);
    CHECK(t1.tv_sec - t0.tv_sec < 2);
    CHECK_EQ(step(loop, 0, 1), 0);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

/* Lowering the limits under a full buffer raises the flag: RESUME later. */
TEST(test_write_limits)
{
    loop_t *loop;
    int sv[2], i, eof = 0;
    uint64_t rpos = 0;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_set_write_limits(loop, sv[0], 10, 20), -EINVAL);
    CHECK_EQ(loop_stream_set_write_limits(loop, sv[0], 1 << 30, 1 << 29), 0);
    fill_until_buffered(loop, sv[0], 0);   /* something buffered, below high */
    CHECK(loop_write_buffer_size(loop, sv[0]) > 0);
    CHECK_EQ(loop_stream_set_write_limits(loop, sv[0], 1, 0), 0);
    nlog = 0;
    for (i = 0; i < 1000 && find_ev(LOOP_EV_DRAINED, sv[0]) < 0; i++) {
        CHECK(read_check(sv[1], &rpos, &eof) >= 0);
        step(loop, 100, MAXEV);
    }
    CHECK_EQ(count_ev(LOOP_EV_RESUME, sv[0]), 1);
    CHECK_EQ(count_ev(LOOP_EV_DRAINED, sv[0]), 1);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

/* writev with more iovecs than one sendmsg takes, partly buffered, and a
 * writev that appends to a non-empty buffer. */
TEST(test_writev_partial)
{
    enum { NB = 150, SZ = 3000 };
    static unsigned char data[NB * SZ];
    const void *bufs[NB];
    size_t lens[NB];
    loop_t *loop;
    int sv[2], i, eof = 0;
    uint64_t rpos = 0;
    int64_t r, got = 0, b1;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    fill_pattern(data, sizeof(data), 0);
    for (i = 0; i < NB / 2; i++) {
        bufs[i] = data + (size_t)i * SZ;
        lens[i] = SZ;
    }
    /* first half: more than the socket takes, with default buffers? make
     * sure by shrinking the send buffer */
    {
        int small = 4096;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    }
    b1 = loop_writev(loop, sv[0], bufs, lens, NB / 2);
    CHECK(b1 > 0);
    for (i = NB / 2; i < NB; i++) {
        bufs[i - NB / 2] = data + (size_t)i * SZ;
        lens[i - NB / 2] = SZ;
    }
    r = loop_writev(loop, sv[0], bufs, lens, NB - NB / 2);
    CHECK_EQ(r, b1 + (int64_t)(NB - NB / 2) * SZ);

    nlog = 0;
    for (i = 0; i < 5000 && got < (int64_t)sizeof(data); i++) {
        r = read_check(sv[1], &rpos, &eof);
        CHECK(r >= 0);
        if (r < 0)
            break;
        got += r;
        step(loop, 10, MAXEV);
    }
    CHECK_EQ(got, (int64_t)sizeof(data));
    CHECK_EQ(count_ev(LOOP_EV_DRAINED, sv[0]), 1);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

TEST(test_write_after_peer_closed)
{
    loop_t *loop;
    int sv[2];
    int64_t r;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    close(sv[1]);
    r = loop_write(loop, sv[0], "x", 1);   /* MSG_NOSIGNAL: no SIGPIPE */
    CHECK(r == -EPIPE || r == -ECONNRESET);
    CHECK(loop_write(loop, sv[0], "y", 1) < 0);   /* writes are over */
    CHECK_EQ(loop_write_buffer_size(loop, sv[0]), 0);
    loop_free(loop);
    close(sv[0]);
}

/* A flush that fails reports LOOP_EV_ERROR and drops the buffer. */
TEST(test_flush_error)
{
    loop_t *loop;
    int sv[2], i;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    fill_until_buffered(loop, sv[0], 0);
    CHECK(loop_write_buffer_size(loop, sv[0]) > 0);
    close(sv[1]);
    nlog = 0;
    for (i = 0; i < 10 && nlog == 0; i++)
        step(loop, 1000, MAXEV);
    CHECK_EQ(nlog, 1);
    CHECK_EQ(evlog[0].kind, LOOP_EV_ERROR);
    CHECK(evlog[0].a == EPIPE || evlog[0].a == ECONNRESET);
    CHECK_EQ(evlog[0].b, LOOP_WRITABLE);
    CHECK_EQ(loop_write_buffer_size(loop, sv[0]), 0);
    CHECK(loop_write(loop, sv[0], "x", 1) < 0);
    CHECK_EQ(step(loop, 0, MAXEV), 0);
    loop_free(loop);
    close(sv[0]);
}

/* loop_stream_write_error: 0 until a write or a flush fails, then that
 * -errno, whichever call asks (loop_write(fd, NULL, 0) says the same). */
TEST(test_write_error)
{
    loop_t *loop;
    int sv[2], p[2], i;
    int64_t r;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    CHECK_EQ(loop_stream_write_error(NULL, sv[0]), -EBADF);
    CHECK_EQ(loop_stream_write_error(loop, -1), -EBADF);
    CHECK_EQ(loop_stream_write_error(loop, sv[0]), -EBADF);   /* not a stream */
    CHECK_EQ(loop_add_reader(loop, sv[0], NULL, NULL), 0);
    CHECK_EQ(loop_stream_write_error(loop, sv[0]), -EBADF);   /* a watcher */
    CHECK_EQ(loop_remove_reader(loop, sv[0]), 1);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_write_error(loop, sv[0]), 0);
    CHECK_EQ(loop_write(loop, sv[0], NULL, 1), -EFAULT);   /* not a failure */
    CHECK_EQ(loop_stream_write_error(loop, sv[0]), 0);

    /* buffered bytes are not an error */
    fill_until_buffered(loop, sv[0], 0);
    CHECK(loop_write_buffer_size(loop, sv[0]) > 0);
    CHECK_EQ(loop_stream_write_error(loop, sv[0]), 0);
    CHECK_EQ(loop_write(loop, sv[0], NULL, 0), loop_write_buffer_size(loop, sv[0]));

    /* a failed flush: the event's errno, stored */
    close(sv[1]);
    nlog = 0;
    for (i = 0; i < 10 && find_ev(LOOP_EV_ERROR, sv[0]) < 0; i++)
        step(loop, 1000, MAXEV);
    REQUIRE(find_ev(LOOP_EV_ERROR, sv[0]) >= 0);
    r = evlog[find_ev(LOOP_EV_ERROR, sv[0])].a;
    CHECK(r == EPIPE || r == ECONNRESET);
    CHECK_EQ(loop_stream_write_error(loop, sv[0]), -r);
    CHECK_EQ(loop_stream_write_error(loop, sv[0]), -r);   /* not cleared */
    CHECK_EQ(loop_write(loop, sv[0], NULL, 0), -r);
    CHECK_EQ(loop_write(loop, sv[0], "x", 1), -r);
    CHECK_EQ(loop_stream_close(loop, sv[0]), 0);
    CHECK_EQ(loop_stream_write_error(loop, sv[0]), -EBADF);   /* forgotten */

    /* a failed write on a pipe (reader gone): what loop_write returned */
    CHECK_EQ(loop_stream_open(loop, p[1], 0), 0);
    close(p[0]);
    CHECK_EQ(loop_write(loop, p[1], "x", 1), -EPIPE);
    CHECK_EQ(loop_stream_write_error(loop, p[1]), -EPIPE);
    loop_free(loop);
    close(sv[0]);
    close(p[1]);

    /* a shut-down write side refuses writes but did not fail */
    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_shutdown_write(loop, sv[0]), 0);
    CHECK_EQ(loop_write(loop, sv[0], NULL, 0), -EPIPE);
    CHECK_EQ(loop_stream_write_error(loop, sv[0]), 0);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

/* shutdown_write waits for the buffer: the peer sees every byte, then EOF. */
TEST(test_shutdown_after_drain)
{
    loop_t *loop;
    int sv[2], i, eof = 0;
    uint64_t total, rpos = 0;
    int64_t r, got = 0;
    char c;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);

    /* empty buffer: at once */
    CHECK_EQ(loop_stream_shutdown_write(loop, sv[0]), 0);
    CHECK_EQ(read(sv[1], &c, 1), 0);
    CHECK_EQ(loop_write(loop, sv[0], "x", 1), -EPIPE);
    CHECK_EQ(loop_stream_close(loop, sv[0]), 0);
    close(sv[0]);
    close(sv[1]);

    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    total = fill_until_buffered(loop, sv[0], 100000);
    CHECK_EQ(loop_stream_shutdown_write(loop, sv[0]), 0);
    CHECK_EQ(loop_stream_shutdown_write(loop, sv[0]), 0);
    CHECK_EQ(loop_write(loop, sv[0], "x", 1), -EPIPE);
    nlog = 0;
    for (i = 0; i < 2000 && !eof; i++) {
        r = read_check(sv[1], &rpos, &eof);
        CHECK(r >= 0);
        if (r < 0)
            break;
        got += r;
        step(loop, 10, MAXEV);
    }
    CHECK(eof);
    CHECK_EQ(got, (int64_t)total);
    CHECK_EQ(count_ev(LOOP_EV_DRAINED, sv[0]), 1);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

/* A pipe stream with a full pipe: buffered, then flushed by the loop. */
TEST(test_pipe_stream_buffered)
{
    loop_t *loop;
    int p[2], i, eof = 0;
    uint64_t total, rpos = 0;
    int64_t r, got = 0;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    CHECK_EQ(loop_stream_open(loop, p[1], 0), 0);
    total = fill_until_buffered(loop, p[1], 0);
    CHECK(loop_write_buffer_size(loop, p[1]) > 0);
    nlog = 0;
    for (i = 0; i < 2000 && find_ev(LOOP_EV_DRAINED, p[1]) < 0; i++) {
        r = read_check(p[0], &rpos, &eof);
        CHECK(r >= 0);
        if (r < 0)
            break;
        got += r;
        step(loop, 10, MAXEV);
    }
    got += read_check(p[0], &rpos, &eof);
    CHECK_EQ(got, (int64_t)total);
    CHECK_EQ(count_ev(LOOP_EV_DRAINED, p[1]), 1);
    loop_free(loop);
    close(p[0]);
    close(p[1]);
}

TEST(test_open_conflicts)
{
    loop_t *loop;
    int sv[2], p[2];

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    REQUIRE(pipe(p) == 0);
    close(p[0]);
    close(p[1]);
    CHECK_EQ(loop_stream_open(loop, -1, 0), -EBADF);
    CHECK_EQ(loop_stream_open(loop, p[0], 0), -EBADF);
    CHECK_EQ(loop_stream_open(loop, sv[0], 0x100), -EINVAL);
    CHECK_EQ(loop_add_reader(loop, sv[0], NULL, NULL), 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), -EEXIST);
    CHECK_EQ(loop_remove_reader(loop, sv[0]), 1);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), -EEXIST);
    CHECK_EQ(loop_add_reader(loop, sv[0], NULL, NULL), -EEXIST);
    CHECK_EQ(loop_add_writer(loop, sv[0], NULL, NULL), -EEXIST);
    CHECK_EQ(loop_remove_reader(loop, sv[0]), 0);
    CHECK_EQ(loop_stream_read_start(loop, sv[1]), -EBADF);
    CHECK_EQ(loop_stream_read_stop(loop, sv[1]), -EBADF);
    CHECK_EQ(loop_stream_shutdown_write(loop, sv[1]), -EBADF);
    CHECK_EQ(loop_stream_set_write_limits(loop, sv[1], 2, 1), -EBADF);
    CHECK_EQ(loop_stream_set_read_size(loop, sv[1], 2), -EBADF);
    /* close with bytes buffered: dropped, and the fd is free again */
    fill_until_buffered(loop, sv[0], 0);
    CHECK_EQ(loop_stream_close(loop, sv[0]), 0);
    CHECK_EQ(loop_add_reader(loop, sv[0], NULL, NULL), 0);
    CHECK_EQ(loop_remove_reader(loop, sv[0]), 1);
    /* loop_free releases a stream's out-buffer */
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    fill_until_buffered(loop, sv[0], 0);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    CT_BEGIN("test_stream");
    signal(SIGPIPE, SIG_IGN);   /* as Python does; pipes use write() */
    RUN(test_read_data_eof);
    RUN(test_read_size_and_offsets);
    RUN(test_read_error);
    RUN(test_read_by_caller);
    RUN(test_write_immediate);
    RUN(test_backpressure);
    RUN(test_backpressure_max1);
    RUN(test_spill_one_flush);
    RUN(test_write_limits);
    RUN(test_writev_partial);
    RUN(test_write_after_peer_closed);
    RUN(test_flush_error);
    RUN(test_write_error);
    RUN(test_shutdown_after_drain);
    RUN(test_pipe_stream_buffered);
    RUN(test_open_conflicts);
    return CT_END();
}
