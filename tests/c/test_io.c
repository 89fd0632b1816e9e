/* test_io.c — fd watchers: callbacks, LOOP_EV_IO, errors, stale slots. */
#include "casyncio.h"
#include "ctest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define MAXEV 64

struct hit {
    int calls;
    int fd;
    int mask;
};

static void io_cb(loop_t *loop, int fd, int mask, void *data)
{
    struct hit *h = data;
    (void)loop;
    h->calls++;
    h->fd = fd;
    h->mask |= mask;
}

/* Finds the LOOP_EV_IO event for fd; its mask, or 0. */
static int io_mask(const loop_event_t *ev, int n, int fd)
{
    int i, m = 0, count = 0;

    for (i = 0; i < n; i++) {
        if (ev[i].kind == LOOP_EV_IO && ev[i].fd == fd) {
            m = (int)ev[i].a;
            count++;
        }
    }
    return count > 1 ? -1 : m;   /* -1: more than one event for the fd */
}

static void drain(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

TEST(test_pipe_reader_cb)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    struct hit h = { 0, -1, 0 };
    int p[2];

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    CHECK_EQ(loop_add_reader(loop, p[0], io_cb, &h), 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(h.calls, 0);
    REQUIRE(write(p[1], "x", 1) == 1);
    CHECK_EQ(loop_run_once(loop, 1000, ev, MAXEV), 0);   /* C callback: no events */
    CHECK_EQ(h.calls, 1);
    CHECK_EQ(h.fd, p[0]);
    CHECK_EQ(h.mask, LOOP_READABLE);
    /* level-triggered: still readable, called again */
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(h.calls, 2);
    drain(p[0]);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(h.calls, 2);
    CHECK_EQ(loop_remove_reader(loop, p[0]), 1);
    loop_free(loop);
    close(p[0]);
    close(p[1]);
}

TEST(test_io_events)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    int sv[2], n;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);

    CHECK_EQ(loop_add_writer(loop, sv[0], NULL, NULL), 0);
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(n, 1);
    CHECK_EQ(io_mask(ev, n, sv[0]), LOOP_WRITABLE);

    /* reader + writer, both ready: ONE event with both bits */
    CHECK_EQ(loop_add_reader(loop, sv[0], NULL, NULL), 0);
    REQUIRE(write(sv[1], "hi", 2) == 2);
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(n, 1);
    CHECK_EQ(io_mask(ev, n, sv[0]), LOOP_READABLE | LOOP_WRITABLE);

    CHECK_EQ(loop_remove_writer(loop, sv[0]), 1);
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(io_mask(ev, n, sv[0]), LOOP_READABLE);
    drain(sv[0]);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

/* reader fn == NULL, writer with a C callback: one event with READABLE only,
 * and the writer is called. */
TEST(test_mixed_watchers)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    struct hit h = { 0, -1, 0 };
    int sv[2], n;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    CHECK_EQ(loop_add_reader(loop, sv[0], NULL, NULL), 0);
    CHECK_EQ(loop_add_writer(loop, sv[0], io_cb, &h), 0);
    REQUIRE(write(sv[1], "x", 1) == 1);
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(n, 1);
    CHECK_EQ(io_mask(ev, n, sv[0]), LOOP_READABLE);
    CHECK_EQ(h.calls, 1);
    CHECK_EQ(h.mask, LOOP_WRITABLE);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

TEST(test_replace_watcher)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    struct hit h1 = { 0, -1, 0 }, h2 = { 0, -1, 0 };
    int p[2];

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe2(p, O_NONBLOCK) == 0);
    CHECK_EQ(loop_add_reader(loop, p[0], io_cb, &h1), 0);
    CHECK_EQ(loop_add_reader(loop, p[0], io_cb, &h2), 0);
    REQUIRE(write(p[1], "x", 1) == 1);
    CHECK_EQ(loop_run_once(loop, 1000, ev, MAXEV), 0);
    CHECK_EQ(h1.calls, 0);
    CHECK_EQ(h2.calls, 1);
    /* and to fn == NULL */
    CHECK_EQ(loop_add_reader(loop, p[0], NULL, NULL), 0);
    CHECK_EQ(loop_run_once(loop, 1000, ev, MAXEV), 1);
    CHECK_EQ(h2.calls, 1);
    loop_free(loop);
    close(p[0]);
    close(p[1]);
}

TEST(test_remove_return_values)
{
    loop_t *loop;
    int p[2];

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe2(p, O_NONBLOCK) == 0);
    CHECK_EQ(loop_remove_reader(loop, p[0]), 0);
    CHECK_EQ(loop_add_reader(loop, p[0], NULL, NULL), 0);
    CHECK_EQ(loop_remove_writer(loop, p[0]), 0);
    CHECK_EQ(loop_remove_reader(loop, p[0]), 1);
    CHECK_EQ(loop_remove_reader(loop, p[0]), 0);
    CHECK_EQ(loop_remove_reader(loop, -1), -EBADF);
    CHECK_EQ(loop_remove_writer(loop, -5), -EBADF);
    CHECK_EQ(loop_remove_reader(loop, 100000), 0);
    /* removing after the fd was closed still works */
    CHECK_EQ(loop_add_writer(loop, p[1], NULL, NULL), 0);
    close(p[1]);
    CHECK_EQ(loop_remove_writer(loop, p[1]), 1);
    loop_free(loop);
    close(p[0]);
}

TEST(test_add_errors)
{
    loop_t *loop;
    char path[] = "/tmp/casyncio-test-XXXXXX";
    int p[2], f;

    REQUIRE(loop_new(&loop) == 0);
    CHECK_EQ(loop_add_reader(loop, -1, NULL, NULL), -EBADF);
    CHECK_EQ(loop_add_writer(loop, -1, NULL, NULL), -EBADF);
    REQUIRE(pipe(p) == 0);
    close(p[0]);
    close(p[1]);
    CHECK_EQ(loop_add_reader(loop, p[0], NULL, NULL), -EBADF);
    CHECK_EQ(loop_remove_reader(loop, p[0]), 0);   /* nothing was added */

    f = mkstemp(path);
    REQUIRE(f >= 0);
    unlink(path);
    CHECK_EQ(loop_add_reader(loop, f, NULL, NULL), -EPERM);
    CHECK_EQ(loop_add_writer(loop, f, NULL, NULL), -EPERM);
    CHECK_EQ(loop_remove_reader(loop, f), 0);
    close(f);
    loop_free(loop);
}

/* A watcher whose fd was closed behind the loop's back, and whose number
 * now belongs to a new pipe: add_reader must register the new file. */
TEST(test_reopened_fd)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    struct hit h = { 0, -1, 0 };
    int p[2], q[2], n;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe2(p, O_NONBLOCK) == 0);
    CHECK_EQ(loop_add_reader(loop, p[0], NULL, NULL), 0);
    REQUIRE(pipe2(q, O_NONBLOCK) == 0);
    /* put q's read end at p[0]'s number (closing the old file) */
    REQUIRE(dup2(q[0], p[0]) == p[0]);
    close(q[0]);
    CHECK_EQ(loop_add_reader(loop, p[0], io_cb, &h), 0);
    REQUIRE(write(q[1], "x", 1) == 1);
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(n, 0);
    CHECK_EQ(h.calls, 1);
    CHECK_EQ(loop_remove_reader(loop, p[0]), 1);
    loop_free(loop);
    close(p[0]);
    close(p[1]);
    close(q[1]);
}

/* A watched fd closed behind the loop's back while a dup keeps its file
 * open: epoll keeps the registration (it is keyed by file and fd number),
 * so removing the watcher cannot take it out, and once the number is the
 * same file again add_reader's EPOLL_CTL_ADD says EEXIST.  The loop takes
 * the registration over; the stale one's events are ignored meanwhile. */
TEST(test_registration_left_in_epoll)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    loop_stats_t st;
    struct hit h = { 0, -1, 0 };
    int p[2], keep;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe2(p, O_NONBLOCK) == 0);
    REQUIRE((keep = dup(p[0])) >= 0);
    CHECK_EQ(loop_add_reader(loop, p[0], NULL, NULL), 0);
    close(p[0]);
    CHECK_EQ(loop_remove_reader(loop, p[0]), 1);
    REQUIRE(write(p[1], "x", 1) == 1);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);   /* stale: ignored */
    REQUIRE(dup2(keep, p[0]) == p[0]);
    CHECK_EQ(loop_add_reader(loop, p[0], io_cb, &h), 0);
    CHECK_EQ(loop_run_once(loop, 1000, ev, MAXEV), 0);
    CHECK_EQ(h.calls, 1);
    CHECK_EQ(h.mask, LOOP_READABLE);
    loop_stats(loop, &st);
    CHECK_EQ(st.events_dropped, 0);
    CHECK_EQ(loop_remove_reader(loop, p[0]), 1);
    loop_free(loop);
    close(keep);
    close(p[0]);
    close(p[1]);
}

/* Each callback removes the other pipe's reader and closes it: whichever
 * runs first, the other must not be called with a stale slot. */
static int pa[2], pb[2];
static loop_t *stale_loop;
static int stale_calls;

static void stale_cb(loop_t *loop, int fd, int mask, void *data)
{
    int *other = data;
    (void)mask;
    (void)fd;
    stale_calls++;
    CHECK_EQ(loop_remove_reader(loop, other[0]), 1);
    close(other[0]);
    other[0] = -1;
}

TEST(test_stale_in_batch)
{
    loop_event_t ev[MAXEV];

    REQUIRE(loop_new(&stale_loop) == 0);
    REQUIRE(pipe2(pa, O_NONBLOCK) == 0 && pipe2(pb, O_NONBLOCK) == 0);
    CHECK_EQ(loop_add_reader(stale_loop, pa[0], stale_cb, pb), 0);
    CHECK_EQ(loop_add_reader(stale_loop, pb[0], stale_cb, pa), 0);
    REQUIRE(write(pa[1], "x", 1) == 1 && write(pb[1], "x", 1) == 1);
    stale_calls = 0;
    CHECK_EQ(loop_run_once(stale_loop, 1000, ev, MAXEV), 0);
    CHECK_EQ(stale_calls, 1);
    loop_free(stale_loop);
    if (pa[0] >= 0) {
        close(pa[0]);
    }
    if (pb[0] >= 0) {
        close(pb[0]);
    }
    close(pa[1]);
    close(pb[1]);
}

/* A callback registers an fd far above the table: the table moves while the
 * dispatch of the current fd is in progress (ASan checks the re-lookup). */
static int high_fd;

static void grow_cb(loop_t *loop, int fd, int mask, void *data)
{
    struct hit *h = data;
    (void)mask;
    h->calls++;
    CHECK_EQ(loop_add_reader(loop, high_fd, NULL, NULL), 0);
    drain(fd);
}

TEST(test_table_grows_in_callback)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    struct hit h = { 0, -1, 0 }, w = { 0, -1, 0 };
    int sv[2], q[2];

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    REQUIRE(pipe2(q, O_NONBLOCK) == 0);
    high_fd = fcntl(q[0], F_DUPFD_CLOEXEC, 900);
    REQUIRE(high_fd >= 900);
    CHECK_EQ(loop_add_reader(loop, sv[0], grow_cb, &h), 0);
    CHECK_EQ(loop_add_writer(loop, sv[0], io_cb, &w), 0);
    REQUIRE(write(sv[1], "x", 1) == 1);
    CHECK_EQ(loop_run_once(loop, 1000, ev, MAXEV), 0);
    CHECK_EQ(h.calls, 1);
    CHECK_EQ(w.calls, 1);
    REQUIRE(write(q[1], "x", 1) == 1);
    CHECK_EQ(loop_run_once(loop, 1000, ev, MAXEV), 1);
    CHECK_EQ(ev[0].kind, LOOP_EV_IO);
    CHECK_EQ(ev[0].fd, high_fd);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
    close(q[0]);
    close(q[1]);
    close(high_fd);
}

/* A C watcher closes (and reopens) a stream whose events are later in the
 * same epoll batch: the stale event must not be used (ASan checks the freed
 * out-buffer is not touched). */
static int victim_fd;

static void close_stream_cb(loop_t *loop, int fd, int mask, void *data)
{
    struct hit *h = data;
    (void)mask;
    h->calls++;
    drain(fd);
    CHECK_EQ(loop_stream_close(loop, victim_fd), 0);
    CHECK_EQ(loop_stream_open(loop, victim_fd, LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_read_start(loop, victim_fd), 0);
}

TEST(test_close_stream_in_batch)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    struct hit h = { 0, -1, 0 };
    static char big[1 << 20];
    int p[2], sv[2], n, i, data = 0;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe2(p, O_NONBLOCK) == 0);
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    victim_fd = sv[0];
    CHECK_EQ(loop_add_reader(loop, p[0], close_stream_cb, &h), 0);
    CHECK_EQ(loop_stream_open(loop, sv[0], LOOP_STREAM_SOCKET), 0);
    /* victim has an out-buffer (EPOLLOUT armed) and is reading */
    CHECK(loop_write(loop, sv[0], big, sizeof(big)) > 0);
    CHECK_EQ(loop_stream_read_start(loop, sv[0]), 0);
    /* make the pipe ready first, then the victim: epoll reports in order */
    REQUIRE(write(p[1], "x", 1) == 1);
    REQUIRE(write(sv[1], "y", 1) == 1);
    {
        char tmp[65536];
        while (read(sv[1], tmp, sizeof(tmp)) > 0) {
        }
    }
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(h.calls, 1);
    for (i = 0; i < n; i++)
        data += ev[i].kind == LOOP_EV_DATA;
    CHECK_EQ(data, 0);   /* its event in this batch was stale */
    CHECK_EQ(loop_write_buffer_size(loop, sv[0]), 0);
    /* the re-opened stream works: the byte comes next time */
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(n, 1);
    CHECK_EQ(ev[0].kind, LOOP_EV_DATA);
    CHECK_EQ(ev[0].a, 1);
    loop_free(loop);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

/* EPOLLHUP: a reader sees the hang-up as readable (and reads EOF). */
TEST(test_hup_is_readable)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    int p[2], n;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe2(p, O_NONBLOCK) == 0);
    CHECK_EQ(loop_add_reader(loop, p[0], NULL, NULL), 0);
    close(p[1]);
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(n, 1);
    CHECK_EQ(io_mask(ev, n, p[0]), LOOP_READABLE);
    loop_free(loop);
    close(p[0]);
}

/* EPOLLERR on a pipe's write end (reader gone) counts as writable. */
TEST(test_err_is_writable)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    int p[2], n;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe2(p, O_NONBLOCK) == 0);
    close(p[0]);
    CHECK_EQ(loop_add_writer(loop, p[1], NULL, NULL), 0);
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(n, 1);
    CHECK_EQ(io_mask(ev, n, p[1]), LOOP_WRITABLE);
    loop_free(loop);
    close(p[1]);
}

/* Many ready fds, little room: at most max events per call, none lost. */
TEST(test_io_capacity)
{
    enum { N = 20, MAX = 4 };
    loop_t *loop;
    loop_event_t ev[MAX];
    int p[N][2], seen[N], i, k, total = 0, calls = 0, over = 0;

    REQUIRE(loop_new(&loop) == 0);
    for (i = 0; i < N; i++) {
        REQUIRE(pipe2(p[i], O_NONBLOCK) == 0);
        REQUIRE(write(p[i][1], "x", 1) == 1);
        CHECK_EQ(loop_add_reader(loop, p[i][0], NULL, NULL), 0);
        seen[i] = 0;
    }
    while (total < N && calls < 100) {
        k = loop_run_once(loop, 1000, ev, MAX);
        calls++;
        over |= k > MAX;
        for (i = 0; i < k; i++) {
            int j;
            for (j = 0; j < N; j++) {
                if (ev[i].kind == LOOP_EV_IO && ev[i].fd == p[j][0] && !seen[j]) {
                    seen[j] = 1;
                    total++;
                    CHECK_EQ(loop_remove_reader(loop, p[j][0]), 1);
                }
            }
        }
    }
    CHECK(!over);
    CHECK_EQ(total, N);
    loop_free(loop);
    for (i = 0; i < N; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
}

/* The slot table doubles up to 4096 fds and grows by an eighth beyond:
 * streams opened on fds climbing past that keep their slots across every
 * growth (open again is EEXIST), and each still reads. */
TEST(test_table_grows_past_doubling)
{
    enum { N = 6 };
    static const int want[N] = { 100, 4095, 4096, 4700, 5300, 9000 };
    loop_t *loop;
    loop_event_t ev[MAXEV];
    struct rlimit rl;
    int sv[2], fds[N], got[N], i, k, n;

    REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur <= 9000) {
        rl.rlim_cur = rl.rlim_max > 9100 ? 9100 : rl.rlim_max;
        if (rl.rlim_cur <= 9000 || setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            fprintf(stderr, "  (skipped: RLIMIT_NOFILE too low)\n");
            return;
        }
    }
    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    for (i = 0; i < N; i++) {
        fds[i] = fcntl(sv[0], F_DUPFD_CLOEXEC, want[i]);
        REQUIRE(fds[i] == want[i]);
        CHECK_EQ(loop_stream_open(loop, fds[i], LOOP_STREAM_SOCKET), 0);
        CHECK_EQ(loop_stream_set_write_limits(loop, fds[i], 1000 + i, i), 0);
        got[i] = 0;
    }
    /* All dups share one socket: start reading on one at a time. */
    for (i = 0; i < N; i++) {
        CHECK_EQ(loop_stream_read_start(loop, fds[i]), 0);
        REQUIRE(write(sv[1], "x", 1) == 1);
        n = loop_run_once(loop, 1000, ev, MAXEV);
        for (k = 0; k < n; k++)
            if (ev[k].kind == LOOP_EV_DATA && ev[k].fd == fds[i])
                got[i] += (int)ev[k].a;
        CHECK_EQ(got[i], 1);
        CHECK_EQ(loop_stream_read_stop(loop, fds[i]), 0);
        CHECK_EQ(loop_stream_open(loop, fds[i], LOOP_STREAM_SOCKET), -EEXIST);
    }
    for (i = 0; i < N; i++) {
        CHECK_EQ(loop_stream_close(loop, fds[i]), 0);
        close(fds[i]);
    }
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

/* ---- one-shot read waits (loop_wait_readable) ---------------------------- */

static int sockpair(int sv[2])
{
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                      sv);
}

/* A wait reports fd once and is gone; the next one re-arms it; the peek
 * arms nothing while there is something to read. */
TEST(test_wait_readable_once)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    const int64_t *hint;
    int sv[2], i;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    hint = loop_poll_hint(loop);
    for (i = 0; i < 3; i++) {
        CHECK_EQ(loop_wait_readable(loop, sv[0], 1), 0);
        CHECK_EQ(hint[0], 1);
        CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
        REQUIRE(write(sv[1], "x", 1) == 1);
        CHECK_EQ(loop_run_once(loop, 1000, ev, MAXEV), 1);
        CHECK_EQ(io_mask(ev, 1, sv[0]), LOOP_READABLE);
        /* Gone: still readable, but nothing more is reported. */
        CHECK_EQ(hint[0], 0);
        CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
        CHECK_EQ(loop_remove_reader(loop, sv[0]), 0);
        /* Something to read: the peek arms nothing. */
        CHECK_EQ(loop_wait_readable(loop, sv[0], 1), 1);
        CHECK_EQ(hint[0], 0);
        drain(sv[0]);
    }
    /* peek == 0 arms even when there is something to read. */
    REQUIRE(write(sv[1], "x", 1) == 1);
    CHECK_EQ(loop_wait_readable(loop, sv[0], 0), 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 1);
    CHECK_EQ(io_mask(ev, 1, sv[0]), LOOP_READABLE);
    /* EOF is something to read. */
    drain(sv[0]);
    close(sv[1]);
    CHECK_EQ(loop_wait_readable(loop, sv[0], 1), 1);
    loop_free(loop);
    close(sv[0]);
}

/* Removed before it fires: nothing is reported.  A plain reader after a
 * fired wait (whose registration is parked in epoll) is level-triggered as
 * ever, and a wait replaces a plain reader. */
TEST(test_wait_readable_and_readers)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    struct hit h = { 0, -1, 0 };
    int sv[2];

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_wait_readable(loop, sv[0], 1), 0);
    CHECK_EQ(loop_remove_reader(loop, sv[0]), 1);
    REQUIRE(write(sv[1], "x", 1) == 1);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);

    CHECK_EQ(loop_wait_readable(loop, sv[0], 0), 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 1);
    CHECK_EQ(loop_add_reader(loop, sv[0], io_cb, &h), 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(h.calls, 2);

    /* The wait replaces the callback reader, and goes after one event. */
    CHECK_EQ(loop_wait_readable(loop, sv[0], 0), 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 1);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(h.calls, 2);
    CHECK_EQ(loop_remove_reader(loop, sv[0]), 0);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

/* With a writer beside it the registration stays armed for the writer:
 * the wait still goes after one event, the writer stays; and a wait left
 * alone after the writer goes is one-shot again. */
TEST(test_wait_readable_with_writer)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    int sv[2], n;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    CHECK_EQ(loop_add_writer(loop, sv[0], NULL, NULL), 0);
    CHECK_EQ(loop_wait_readable(loop, sv[0], 1), 0);
    REQUIRE(write(sv[1], "x", 1) == 1);
    n = loop_run_once(loop, 0, ev, MAXEV);
    CHECK_EQ(n, 1);
    CHECK_EQ(io_mask(ev, n, sv[0]), LOOP_READABLE | LOOP_WRITABLE);
    n = loop_run_once(loop, 0, ev, MAXEV);
    CHECK_EQ(io_mask(ev, n, sv[0]), LOOP_WRITABLE);
    CHECK_EQ(loop_remove_reader(loop, sv[0]), 0);

    CHECK_EQ(loop_wait_readable(loop, sv[0], 0), 0);
    CHECK_EQ(loop_remove_writer(loop, sv[0]), 1);
    n = loop_run_once(loop, 0, ev, MAXEV);
    CHECK_EQ(io_mask(ev, n, sv[0]), LOOP_READABLE);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}

/* The fd of a fired wait closed and its number reused by another socket:
 * the re-arm's EPOLL_CTL_MOD finds no registration and adds one; a stream
 * opened on a parked number works; a closed fd says EBADF, and to the peek
 * it is something to read (the caller's read reports the error), as is a
 * pipe (not a socket). */
TEST(test_wait_readable_fd_reuse)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    int sv[2], sw[2], p[2], fd, n;

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(sockpair(sv) == 0);
    fd = sv[0];
    CHECK_EQ(loop_wait_readable(loop, fd, 0), 0);
    REQUIRE(write(sv[1], "x", 1) == 1);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 1);
    close(sv[0]);
    close(sv[1]);
    CHECK_EQ(loop_wait_readable(loop, fd, 0), -EBADF);
    CHECK_EQ(loop_wait_readable(loop, fd, 1), 1);
    REQUIRE(sockpair(sw) == 0);
    if (sw[0] != fd) {
        REQUIRE(dup2(sw[0], fd) == fd);
        close(sw[0]);
    }
    CHECK_EQ(loop_wait_readable(loop, fd, 1), 0);
    REQUIRE(write(sw[1], "y", 1) == 1);
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(n, 1);
    CHECK_EQ(io_mask(ev, n, fd), LOOP_READABLE);

    /* fd's registration is parked: a stream takes the number over. */
    CHECK_EQ(loop_stream_open(loop, fd, LOOP_STREAM_SOCKET), 0);
    CHECK_EQ(loop_stream_read_start(loop, fd), 0);
    n = loop_run_once(loop, 1000, ev, MAXEV);
    CHECK_EQ(n, 1);
    CHECK_EQ(ev[0].kind, LOOP_EV_DATA);
    CHECK_EQ(ev[0].a, 1);
    CHECK_EQ(loop_stream_close(loop, fd), 0);

    REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    CHECK_EQ(loop_wait_readable(loop, p[0], 1), 1);
    CHECK_EQ(loop_wait_readable(loop, -1, 1), -EBADF);
    CHECK_EQ(loop_wait_readable(NULL, fd, 1), -EINVAL);
    loop_free(loop);
    close(fd);
    close(sw[1]);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    CT_BEGIN("test_io");
    RUN(test_pipe_reader_cb);
    RUN(test_io_events);
    RUN(test_mixed_watchers);
    RUN(test_replace_watcher);
    RUN(test_remove_return_values);
    RUN(test_add_errors);
    RUN(test_reopened_fd);
    RUN(test_registration_left_in_epoll);
    RUN(test_stale_in_batch);
    RUN(test_table_grows_in_callback);
    RUN(test_close_stream_in_batch);
    RUN(test_hup_is_readable);
    RUN(test_err_is_writable);
    RUN(test_io_capacity);
    RUN(test_table_grows_past_doubling);
    RUN(test_wait_readable_once);
    RUN(test_wait_readable_and_readers);
    RUN(test_wait_readable_with_writer);
    RUN(test_wait_readable_fd_reuse);
    return CT_END();
}
