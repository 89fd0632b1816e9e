/* test_core.c — lifecycle, call_soon ring, timeouts, wakeup, loop_run. */
#include "casyncio.h"
#include "ctest.h"

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#define MAXEV 64

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST(test_new_free)
{
    loop_t *loop = NULL;
    char *base = NULL;
    size_t size = 0;

    CHECK_EQ(loop_new(NULL), -EINVAL);
    REQUIRE(loop_new(&loop) == 0 && loop != NULL);
    loop_read_arena(loop, &base, &size);
    CHECK(base != NULL);
    CHECK(size >= 64 * 1024);
    loop_free(loop);
    loop_free(NULL);
}

TEST(test_time)
{
    loop_t *loop;
    double a, b, m;

    REQUIRE(loop_new(&loop) == 0);
    a = loop_time(loop);
    m = mono();
    b = loop_time(loop);
    CHECK(a <= m + 1e-6 && m <= b + 1e-6);   /* same clock */
    CHECK(b >= a);
    loop_free(loop);
}

static int order[4096];
static int norder;

static void record_cb(loop_t *loop, void *data)
{
    (void)loop;
    order[norder++] = (int)(intptr_t)data;
}

TEST(test_call_soon_fifo)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    int i;

    REQUIRE(loop_new(&loop) == 0);
    norder = 0;
    CHECK_EQ(loop_call_soon(loop, NULL, NULL), -EINVAL);
    for (i = 0; i < 5; i++)
        CHECK_EQ(loop_call_soon(loop, record_cb, (void *)(intptr_t)i), 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(norder, 5);
    for (i = 0; i < 5; i++)
        CHECK_EQ(order[i], i);
    loop_free(loop);
}

/* The ring wraps and then grows while wrapped: order must survive. */
TEST(test_call_soon_growth)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    int i, ok = 1;

    REQUIRE(loop_new(&loop) == 0);
    norder = 0;
    for (i = 0; i < 40; i++)
        loop_call_soon(loop, record_cb, (void *)(intptr_t)-1);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    norder = 0;
    for (i = 0; i < 3000; i++)
        CHECK_EQ(loop_call_soon(loop, record_cb, (void *)(intptr_t)i), 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(norder, 3000);
    for (i = 0; i < 3000; i++)
        ok &= order[i] == i;
    CHECK(ok);
    loop_free(loop);
}

static int chain_count;

static void chain_second(loop_t *loop, void *data)
{
    (void)loop;
    (void)data;
    chain_count += 10;
}

static void chain_first(loop_t *loop, void *data)
{
    (void)data;
    chain_count += 1;
    loop_call_soon(loop, chain_second, NULL);
}

/* A callback queued while the loop runs callbacks waits for the next
 * iteration, and that iteration does not block. */
TEST(test_call_soon_next_iteration)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    double t0;

    REQUIRE(loop_new(&loop) == 0);
    chain_count = 0;
    loop_call_soon(loop, chain_first, NULL);
    CHECK_EQ(loop_run_once(loop, -1, ev, MAXEV), 0);
    CHECK_EQ(chain_count, 1);
    t0 = mono();
    CHECK_EQ(loop_run_once(loop, -1, ev, MAXEV), 0);   /* must not block */
    CHECK(mono() - t0 < 0.5);
    CHECK_EQ(chain_count, 11);
    loop_free(loop);
}

static int reentry_rc;

static void reenter_cb(loop_t *loop, void *data)
{
    loop_event_t ev[4];
    (void)data;
    reentry_rc = loop_run_once(loop, 0, ev, 4);
}

TEST(test_run_once_args)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];

    REQUIRE(loop_new(&loop) == 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, 0), -EINVAL);
    CHECK_EQ(loop_run_once(loop, 0, ev, -3), -EINVAL);
    CHECK_EQ(loop_run_once(loop, 0, NULL, 8), -EINVAL);
    CHECK_EQ(loop_run_once(NULL, 0, ev, 8), -EINVAL);
    reentry_rc = 0;
    loop_call_soon(loop, reenter_cb, NULL);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(reentry_rc, -EBUSY);
    loop_free(loop);
}

TEST(test_timeout_bound)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    double t0, dt;

    REQUIRE(loop_new(&loop) == 0);
    t0 = mono();
    CHECK_EQ(loop_run_once(loop, 50, ev, MAXEV), 0);
    dt = mono() - t0;
    CHECK(dt >= 0.045);
    CHECK(dt < 2.0);
    t0 = mono();
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK(mono() - t0 < 0.5);
    loop_free(loop);
}

struct waker {
    loop_t *loop;
    int delay_ms;
    int rc;
};

static void *waker_main(void *arg)
{
    struct waker *w = arg;
    struct timespec ts = { 0, (long)w->delay_ms * 1000000L };
    nanosleep(&ts, NULL);
    w->rc = loop_wakeup(w->loop);
    return NULL;
}

TEST(test_wakeup_thread)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    pthread_t th;
    struct waker w;
    double t0, dt;

    REQUIRE(loop_new(&loop) == 0);
    w.loop = loop;
    w.delay_ms = 100;
    w.rc = -1;
    REQUIRE(pthread_create(&th, NULL, waker_main, &w) == 0);
    t0 = mono();
    CHECK_EQ(loop_run_once(loop, -1, ev, MAXEV), 0);   /* blocks until woken */
    dt = mono() - t0;
    pthread_join(th, NULL);
    CHECK_EQ(w.rc, 0);
    CHECK(dt >= 0.05);
    CHECK(dt < 10.0);

    /* A wakeup before the call makes it return at once, and is consumed. */
    errno = 1234;
    CHECK_EQ(loop_wakeup(loop), 0);
    CHECK_EQ(errno, 1234);
    CHECK_EQ(loop_wakeup(loop), 0);
    t0 = mono();
    CHECK_EQ(loop_run_once(loop, 5000, ev, MAXEV), 0);
    CHECK(mono() - t0 < 1.0);
    t0 = mono();
    CHECK_EQ(loop_run_once(loop, 50, ev, MAXEV), 0);
    CHECK(mono() - t0 >= 0.045);
    loop_free(loop);
}

/* A signal during a blocking poll: run_once returns normally (EINTR is not
 * an error), and loop_wakeup works from the handler. */
static loop_t *sig_loop;
static volatile sig_atomic_t sig_wakeup_rc = 1;

static void on_usr1(int sig)
{
    (void)sig;
    sig_wakeup_rc = loop_wakeup(sig_loop);
}

struct killer {
    pthread_t target;
    int delay_ms;
};

static void *killer_main(void *arg)
{
    struct killer *k = arg;
    struct timespec ts = { 0, (long)k->delay_ms * 1000000L };
    nanosleep(&ts, NULL);
    pthread_kill(k->target, SIGUSR1);
    return NULL;
}

TEST(test_signal_interrupts)
{
    loop_event_t ev[MAXEV];
    struct sigaction sa;
    struct killer k;
    pthread_t th;
    double t0, dt;

    REQUIRE(loop_new(&sig_loop) == 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0);
    k.target = pthread_self();
    k.delay_ms = 50;
    REQUIRE(pthread_create(&th, NULL, killer_main, &k) == 0);
    t0 = mono();
    CHECK_EQ(loop_run_once(sig_loop, 10000, ev, MAXEV), 0);
    dt = mono() - t0;
    pthread_join(th, NULL);
    CHECK(dt < 5.0);
    CHECK_EQ(sig_wakeup_rc, 0);
    /* if the poll was restarted instead, the wakeup ended it: either way the
     * eventfd is drained now, or on this call */
    CHECK(loop_run_once(sig_loop, 0, ev, MAXEV) == 0);
    signal(SIGUSR1, SIG_DFL);
    loop_free(sig_loop);
}

static int run_ticks;

static void tick_cb(loop_t *loop, void *data)
{
    (void)data;
    if (++run_ticks == 5)
        loop_stop(loop);
    else
        loop_call_soon(loop, tick_cb, NULL);
}

static void stop_timer_cb(loop_t *loop, void *data)
{
    (void)data;
    run_ticks = 100;
    loop_stop(loop);
}

TEST(test_run_stop)
{
    loop_t *loop;

    REQUIRE(loop_new(&loop) == 0);
    run_ticks = 0;
    loop_call_soon(loop, tick_cb, NULL);
    CHECK_EQ(loop_run(loop), 0);
    CHECK_EQ(run_ticks, 5);

    /* Stopped from a timer while blocking. */
    CHECK(loop_call_later(loop, 0.02, stop_timer_cb, NULL) > 0);
    CHECK_EQ(loop_run(loop), 0);
    CHECK_EQ(run_ticks, 100);

    /* Stop before run: one iteration, then return. */
    run_ticks = 0;
    loop_stop(loop);
    loop_call_soon(loop, tick_cb, NULL);
    CHECK_EQ(loop_run(loop), 0);
    CHECK_EQ(run_ticks, 1);
    loop_free(loop);
}

static void nop_cb(loop_t *loop, void *data)
{
    (void)loop;
    (void)data;
}

TEST(test_stats)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    loop_stats_t st;

    REQUIRE(loop_new(&loop) == 0);
    loop_call_soon(loop, nop_cb, NULL);
    loop_call_soon(loop, nop_cb, NULL);
    CHECK(loop_call_later(loop, -1, NULL, NULL) > 0);
    CHECK(loop_call_later(loop, -1, nop_cb, NULL) > 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 1);
    loop_wakeup(loop);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    memset(&st, 0xff, sizeof(st));
    loop_stats(loop, &st);
    CHECK_EQ(st.iterations, 2);
    CHECK_EQ(st.timers_fired, 2);
    CHECK_EQ(st.callbacks_run, 3);
    CHECK_EQ(st.events_emitted, 1);
    CHECK_EQ(st.io_events, 1);
    CHECK_EQ(st.bytes_read, 0);
    CHECK_EQ(st.bytes_written, 0);
    CHECK(st.poll_ns >= 0);
    CHECK_EQ(st.events_dropped, 0);
    loop_free(loop);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t hist_sum(const int64_t *h)
{
    int64_t n = 0;
    for (int i = 0; i < LOOP_HIST_BUCKETS; i++)
        n += h[i];
    return n;
}

/* A C callback that keeps the loop busy for *data ns. */
static void busy_cb(loop_t *loop, void *data)
{
    int64_t until = mono_ns() + *(int64_t *)data;
    (void)loop;
    while (mono_ns() < until) {
    }
}

/* Health: a batch runs from a poll's return to the next poll; the slow one
 * lands in its bucket and is the maximum; a pause leaves the time between
 * runs out; fds and timers are the current counts. */
TEST(test_stats_health)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    loop_stats_t st;
    int64_t busy = 3000000, before, after, slow;
    int p[2];

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe(p) == 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);   /* first poll: no batch yet */
    loop_stats(loop, &st);
    CHECK_EQ(hist_sum(st.batch_hist), 0);
    CHECK_EQ(st.batch_max_end, 0);

    /* The callback runs after this iteration's poll; its batch closes at
     * the next poll. */
    CHECK_EQ(loop_call_soon(loop, busy_cb, &busy), 0);
    before = mono_ns();
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    after = mono_ns();
    loop_stats(loop, &st);
    CHECK_EQ(hist_sum(st.batch_hist), 2);
    CHECK_EQ(hist_sum(st.iter_hist), 2);
    /* 3 ms is in [2^11, 2^12) us: bucket 12 (or later if preempted) */
    slow = 0;
    for (int i = 12; i < LOOP_HIST_BUCKETS; i++)
        slow += st.batch_hist[i];
    CHECK(slow >= 1);
    CHECK(st.batch_max_ns >= busy);
    CHECK(st.batch_max_end > before && st.batch_max_end <= after);
    CHECK(st.batch_ns >= busy);

    /* Paused: the last batch closes, the time until the next call counts
     * nowhere (the next poll closes no batch). */
    loop_stats_pause(loop);
    loop_stats(loop, &st);
    CHECK_EQ(hist_sum(st.batch_hist), 3);
    loop_stats_pause(loop);               /* twice: nothing more */
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    loop_stats(loop, &st);
    CHECK_EQ(hist_sum(st.batch_hist), 3);
    CHECK_EQ(hist_sum(st.iter_hist), 3);
    loop_stats_pause(NULL);

    /* Resumed: a batch is open from now, even before the first poll. */
    loop_stats_pause(loop);
    loop_stats_resume(loop);
    loop_stats_resume(loop);              /* twice: the same batch */
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    loop_stats(loop, &st);
    CHECK_EQ(hist_sum(st.batch_hist), 5);   /* the pause closed one */
    loop_stats_resume(NULL);

    /* gauges */
    CHECK_EQ(st.fds, 0);
    CHECK_EQ(st.timers, 0);
    CHECK_EQ(loop_add_reader(loop, p[0], NULL, NULL), 0);
    CHECK(loop_call_later(loop, 10.0, NULL, NULL) > 0);
    CHECK(loop_call_later(loop, 20.0, NULL, NULL) > 0);
    loop_stats(loop, &st);
    CHECK_EQ(st.fds, 1);
    CHECK_EQ(st.timers, 2);
    CHECK_EQ(loop_remove_reader(loop, p[0]), 1);

    /* A caller built with a shorter struct gets only its part. */
    memset(&st, 0xab, sizeof(st));
    loop_stats_sized(loop, &st, offsetof(loop_stats_t, poll_ns));
    CHECK_EQ(st.iterations, 5);
    CHECK_EQ(st.poll_ns, (int64_t)0xabababababababab);
    loop_stats_sized(NULL, &st, sizeof(st));

    loop_free(loop);
    close(p[0]);
    close(p[1]);
}

/* loop_poll_hint follows fds, timers and C callbacks as they come and go. */
TEST(test_poll_hint)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    const int64_t *hint;
    int64_t id, t0;
    int p[2];

    CHECK(loop_poll_hint(NULL) == NULL);
    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe(p) == 0);
    hint = loop_poll_hint(loop);
    REQUIRE(hint != NULL);
    CHECK_EQ(hint[0], 0);
    CHECK_EQ(hint[1], INT64_MAX);

    /* a watched fd counts; a failed registration does not */
    CHECK_EQ(loop_add_reader(loop, p[0], NULL, NULL), 0);
    CHECK_EQ(hint[0], 1);
    CHECK_EQ(loop_add_writer(loop, p[0], NULL, NULL), 0);   /* same fd */
    CHECK_EQ(hint[0], 1);
    CHECK_EQ(loop_add_writer(loop, 12345, NULL, NULL), -EBADF);
    CHECK_EQ(hint[0], 1);
    CHECK_EQ(loop_remove_reader(loop, p[0]), 1);
    CHECK_EQ(hint[0], 1);
    CHECK_EQ(loop_remove_writer(loop, p[0]), 1);
    CHECK_EQ(hint[0], 0);

    /* a stream counts while it reads (or has bytes to write) */
    CHECK_EQ(loop_stream_open(loop, p[0], 0), 0);
    CHECK_EQ(hint[0], 0);
    CHECK_EQ(loop_stream_read_start(loop, p[0]), 0);
    CHECK_EQ(hint[0], 1);
    CHECK_EQ(loop_stream_close(loop, p[0]), 0);
    CHECK_EQ(hint[0], 0);

    /* the earliest timer's deadline */
    t0 = mono_ns();
    id = loop_call_later(loop, 10.0, NULL, NULL);
    CHECK(id > 0);
    CHECK(hint[1] >= t0 + 10 * 1000000000LL);
    CHECK(hint[1] <= mono_ns() + 10 * 1000000000LL);
    CHECK(loop_call_later(loop, 0.0, NULL, NULL) > 0);
    CHECK(hint[1] <= mono_ns());
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 1);   /* fires */
    CHECK(hint[1] >= t0 + 10 * 1000000000LL);
    CHECK_EQ(loop_timer_cancel(loop, id), 0);
    CHECK_EQ(hint[1], INT64_MAX);

    /* C callbacks count until they ran */
    CHECK_EQ(loop_call_soon(loop, nop_cb, NULL), 0);
    CHECK_EQ(hint[0], 1);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(hint[0], 0);

    loop_free(loop);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    CT_BEGIN("test_core");
    RUN(test_new_free);
    RUN(test_time);
    RUN(test_call_soon_fifo);
    RUN(test_call_soon_growth);
    RUN(test_call_soon_next_iteration);
    RUN(test_run_once_args);
    RUN(test_timeout_bound);
    RUN(test_wakeup_thread);
    RUN(test_signal_interrupts);
    RUN(test_run_stop);
    RUN(test_stats);
    RUN(test_stats_health);
    RUN(test_poll_hint);
    return CT_END();
}
