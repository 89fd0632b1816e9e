/* test_timer.c — timer heap: order, ties, cancel, ids, capacity. */
#include "casyncio.h"
#include "ctest.h"

#include <math.h>
#include <time.h>

#define MAXEV 64

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int order[8192];
static int norder;

static void record_cb(loop_t *loop, void *data)
{
    (void)loop;
    order[norder++] = (int)(intptr_t)data;
}

/* Runs blocking iterations until n LOOP_EV_TIMER events arrived; their ids go
 * to ids[].  Returns the number collected. */
static int collect_timers(loop_t *loop, int64_t *ids, int n)
{
    loop_event_t ev[MAXEV];
    int got = 0, iter, i, k;

    for (iter = 0; iter < 1000 && got < n; iter++) {
        k = loop_run_once(loop, -1, ev, MAXEV);
        if (k < 0)
            return k;
        for (i = 0; i < k; i++) {
            if (ev[i].kind == LOOP_EV_TIMER && got < n)
                ids[got++] = ev[i].a;
        }
    }
    return got;
}

TEST(test_deadline_order)
{
    loop_t *loop;
    int64_t t30, t10, t20, ids[3];

    REQUIRE(loop_new(&loop) == 0);
    t30 = loop_call_later(loop, 0.03, NULL, NULL);
    t10 = loop_call_later(loop, 0.01, NULL, NULL);
    t20 = loop_call_later(loop, 0.02, NULL, NULL);
    CHECK(t30 > 0 && t10 > 0 && t20 > 0);
    CHECK(t30 != t10 && t10 != t20 && t20 != t30);
    CHECK_EQ(loop_timer_count(loop), 3);
    CHECK_EQ(collect_timers(loop, ids, 3), 3);
    CHECK_EQ(ids[0], t10);
    CHECK_EQ(ids[1], t20);
    CHECK_EQ(ids[2], t30);
    CHECK_EQ(loop_timer_count(loop), 0);
    loop_free(loop);
}

TEST(test_equal_deadlines_fifo)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    double when;
    int i;

    REQUIRE(loop_new(&loop) == 0);
    when = loop_time(loop) + 0.01;
    norder = 0;
    for (i = 0; i < 20; i++)
        CHECK(loop_call_at(loop, when, record_cb, (void *)(intptr_t)i) > 0);
    /* an earlier one scheduled last still goes first */
    CHECK(loop_call_at(loop, when - 0.005, record_cb, (void *)(intptr_t)-1) > 0);
    while (norder < 21 && loop_run_once(loop, -1, ev, MAXEV) >= 0) {
    }
    CHECK_EQ(norder, 21);
    CHECK_EQ(order[0], -1);
    for (i = 0; i < 20; i++)
        CHECK_EQ(order[i + 1], i);
    loop_free(loop);
}

TEST(test_fires_not_early)
{
    loop_t *loop;
    int64_t id, ids[1];
    double t0, when;

    REQUIRE(loop_new(&loop) == 0);
    t0 = mono();
    when = loop_time(loop) + 0.05;
    id = loop_call_at(loop, when, NULL, NULL);
    CHECK_EQ(collect_timers(loop, ids, 1), 1);
    CHECK_EQ(ids[0], id);
    CHECK(loop_time(loop) >= when);
    CHECK(mono() - t0 >= 0.049);
    CHECK(mono() - t0 < 2.0);
    loop_free(loop);
}

TEST(test_cancel)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    int64_t a, b, c, ids[2];

    REQUIRE(loop_new(&loop) == 0);
    a = loop_call_later(loop, 0.001, NULL, NULL);
    b = loop_call_later(loop, 0.002, NULL, NULL);
    c = loop_call_later(loop, 0.003, NULL, NULL);
    CHECK_EQ(loop_timer_cancel(loop, b), 0);
    CHECK_EQ(loop_timer_cancel(loop, b), -ENOENT);   /* already cancelled */
    CHECK_EQ(loop_timer_count(loop), 2);
    CHECK_EQ(collect_timers(loop, ids, 2), 2);
    CHECK_EQ(ids[0], a);
    CHECK_EQ(ids[1], c);
    CHECK_EQ(loop_timer_cancel(loop, a), -ENOENT);   /* fired */
    CHECK_EQ(loop_timer_cancel(loop, 0), -ENOENT);
    CHECK_EQ(loop_timer_cancel(loop, -1), -ENOENT);
    CHECK_EQ(loop_timer_cancel(loop, 12345), -ENOENT);
    CHECK_EQ(loop_timer_cancel(loop, INT64_MAX), -ENOENT);
    CHECK_EQ(loop_timer_cancel(loop, (int64_t)1 << 40), -ENOENT);
    /* nothing left: does not block */
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    loop_free(loop);
}

TEST(test_invalid_times)
{
    loop_t *loop;

    REQUIRE(loop_new(&loop) == 0);
    CHECK_EQ(loop_call_later(loop, NAN, NULL, NULL), -EINVAL);
    CHECK_EQ(loop_call_later(loop, INFINITY, NULL, NULL), -EINVAL);
    CHECK_EQ(loop_call_later(loop, -INFINITY, NULL, NULL), -EINVAL);
    CHECK_EQ(loop_call_at(loop, NAN, NULL, NULL), -EINVAL);
    CHECK_EQ(loop_call_at(loop, INFINITY, NULL, NULL), -EINVAL);
    CHECK_EQ(loop_timer_count(loop), 0);
    /* huge but finite: accepted, never due */
    CHECK(loop_call_later(loop, 1e300, NULL, NULL) > 0);
    CHECK(loop_call_at(loop, 1e300, NULL, NULL) > 0);
    CHECK_EQ(loop_timer_count(loop), 2);
    loop_free(loop);   /* frees pending timers */
}

TEST(test_negative_delay_is_now)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    int64_t a, b;
    int n;

    REQUIRE(loop_new(&loop) == 0);
    a = loop_call_later(loop, -5.0, NULL, NULL);
    b = loop_call_at(loop, 0.0, NULL, NULL);   /* long past */
    CHECK(a > 0 && b > 0);
    n = loop_run_once(loop, 0, ev, MAXEV);
    CHECK_EQ(n, 2);
    CHECK_EQ(ev[0].kind, LOOP_EV_TIMER);
    CHECK_EQ(ev[1].kind, LOOP_EV_TIMER);
    /* b's deadline (0) is earlier than a's (now) */
    CHECK_EQ(ev[0].a, b);
    CHECK_EQ(ev[1].a, a);
    loop_free(loop);
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* Slots are reused, ids are not; an old id never cancels a newer timer. */
TEST(test_ids_unique)
{
    enum { N = 5000 };
    static int64_t ids[N];
    loop_t *loop;
    int64_t live;
    int i, dup = 0, pos = 1;

    REQUIRE(loop_new(&loop) == 0);
    for (i = 0; i < N; i++) {
        ids[i] = loop_call_later(loop, 10.0, NULL, NULL);
        pos &= ids[i] > 0;
        if (i % 3 != 2)
            CHECK_EQ(loop_timer_cancel(loop, ids[i]), 0);
    }
    CHECK(pos);
    live = loop_call_later(loop, 10.0, NULL, NULL);
    for (i = 0; i < N; i++) {
        if (i % 3 != 2)
            dup |= loop_timer_cancel(loop, ids[i]) != -ENOENT;
    }
    CHECK(!dup);
    CHECK_EQ(loop_timer_cancel(loop, live), 0);
    qsort(ids, N, sizeof(ids[0]), cmp_i64);
    for (i = 1; i < N; i++)
        dup |= ids[i] == ids[i - 1];
    CHECK(!dup);
    CHECK_EQ(loop_timer_count(loop), N / 3);
    loop_free(loop);
}

/* 100 due timers, room for 7 events per call: never more than 7, in order,
 * and the calls that still have due timers do not block. */
TEST(test_capacity)
{
    enum { N = 100, MAX = 7 };
    loop_t *loop;
    loop_event_t ev[MAX + 1];
    int64_t ids[N];
    int i, got = 0, calls = 0, inorder = 1, over = 0;
    double t0;

    REQUIRE(loop_new(&loop) == 0);
    for (i = 0; i < N; i++)
        ids[i] = loop_call_later(loop, -1, NULL, NULL);
    t0 = mono();
    while (got < N && calls < 100) {
        int k;
        ev[MAX].kind = 999;   /* sentinel past max */
        k = loop_run_once(loop, -1, ev, MAX);
        calls++;
        over |= k > MAX || ev[MAX].kind != 999;
        for (i = 0; i < k; i++) {
            inorder &= ev[i].kind == LOOP_EV_TIMER && ev[i].a == ids[got];
            got++;
        }
    }
    CHECK(!over);
    CHECK(inorder);
    CHECK_EQ(got, N);
    CHECK_EQ(calls, (N + MAX - 1) / MAX);
    CHECK(mono() - t0 < 1.0);
    CHECK_EQ(loop_timer_count(loop), 0);
    loop_free(loop);
}

/* C timers ahead of a fn == NULL one that has no room wait for it: order is
 * kept across calls. */
TEST(test_capacity_mixed)
{
    loop_t *loop;
    loop_event_t ev[1];
    int64_t a, b;
    double when;

    REQUIRE(loop_new(&loop) == 0);
    norder = 0;
    when = loop_time(loop) - 1.0;
    a = loop_call_at(loop, when, NULL, NULL);
    b = loop_call_at(loop, when, NULL, NULL);
    CHECK(loop_call_at(loop, when, record_cb, (void *)(intptr_t)7) > 0);
    CHECK_EQ(loop_run_once(loop, -1, ev, 1), 1);
    CHECK_EQ(ev[0].a, a);
    CHECK_EQ(norder, 0);   /* still behind b */
    CHECK_EQ(loop_run_once(loop, -1, ev, 1), 1);
    CHECK_EQ(ev[0].a, b);
    CHECK_EQ(norder, 1);
    loop_free(loop);
}

static int rearm_count;

static void rearm_cb(loop_t *loop, void *data)
{
    (void)data;
    rearm_count++;
    loop_call_later(loop, 0, rearm_cb, NULL);
}

/* A timer that re-arms itself at once fires once per iteration. */
TEST(test_rearm_no_livelock)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];

    REQUIRE(loop_new(&loop) == 0);
    rearm_count = 0;
    loop_call_later(loop, 0, rearm_cb, NULL);
    CHECK_EQ(loop_run_once(loop, -1, ev, MAXEV), 0);
    CHECK_EQ(rearm_count, 1);
    CHECK_EQ(loop_run_once(loop, -1, ev, MAXEV), 0);
    CHECK_EQ(rearm_count, 2);
    CHECK_EQ(loop_timer_count(loop), 1);
    loop_free(loop);
}

struct rec {
    int64_t deadline_key;
    int seq;
};
static struct rec fired[4096];
static int nfired;
static struct rec recs[4096];

static void heap_cb(loop_t *loop, void *data)
{
    (void)loop;
    fired[nfired++] = *(struct rec *)data;
}

/* Random deadlines with many ties and random cancels: what fires is exactly
 * what was not cancelled, sorted by (deadline, scheduling order). */
TEST(test_heap_stress)
{
    enum { N = 3000 };
    static int64_t ids[N];
    static char cancelled[N];
    loop_t *loop;
    loop_event_t ev[MAXEV];
    int i, expect = 0, ok = 1;
    unsigned seed = 12345;

    REQUIRE(loop_new(&loop) == 0);
    nfired = 0;
    for (i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        recs[i].deadline_key = (seed >> 16) % 50;
        recs[i].seq = i;
        /* all in the past: key ms after the start of the clock */
        ids[i] = loop_call_at(loop, 0.001 + (double)recs[i].deadline_key / 1000.0,
                              heap_cb, &recs[i]);
        cancelled[i] = 0;
    }
    for (i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 3 == 0) {
            CHECK_EQ(loop_timer_cancel(loop, ids[i]), 0);
            cancelled[i] = 1;
        } else {
            expect++;
        }
    }
    CHECK_EQ(loop_timer_count(loop), expect);
    CHECK_EQ(loop_run_once(loop, 0, ev, MAXEV), 0);
    CHECK_EQ(nfired, expect);
    for (i = 1; i < nfired; i++) {
        ok &= fired[i - 1].deadline_key < fired[i].deadline_key ||
              (fired[i - 1].deadline_key == fired[i].deadline_key &&
               fired[i - 1].seq < fired[i].seq);
    }
    for (i = 0; i < nfired; i++)
        ok &= !cancelled[fired[i].seq];
    CHECK(ok);
    loop_free(loop);
}

TEST(test_timeout_shorter_than_timer)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    double t0, dt;

    REQUIRE(loop_new(&loop) == 0);
    CHECK(loop_call_later(loop, 5.0, NULL, NULL) > 0);
    t0 = mono();
    CHECK_EQ(loop_run_once(loop, 20, ev, MAXEV), 0);
    dt = mono() - t0;
    CHECK(dt >= 0.015 && dt < 2.0);
    loop_free(loop);
}

int main(void)
{
    CT_BEGIN("test_timer");
    RUN(test_deadline_order);
    RUN(test_equal_deadlines_fifo);
    RUN(test_fires_not_early);
    RUN(test_cancel);
    RUN(test_invalid_times);
    RUN(test_negative_delay_is_now);
    RUN(test_ids_unique);
    RUN(test_capacity);
    RUN(test_capacity_mixed);
    RUN(test_rearm_no_livelock);
    RUN(test_heap_stress);
    RUN(test_timeout_shorter_than_timer);
    return CT_END();
}
