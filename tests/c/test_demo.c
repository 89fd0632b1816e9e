/*
 * test_demo.c — libcasyncio from plain C, no Python: a few timers scheduled
 * out of order, a pipe whose reader callback echoes what a timer wrote, a
 * call_soon chain, and loop_run() until the last timer calls loop_stop().
 */
#include "casyncio.h"
#include "ctest.h"

#include <fcntl.h>

struct demo {
    loop_t *loop;
    double t0;
    int pipefd[2];
    char log[16][32];
    int nlog;
    char received[64];
    size_t nreceived;
};

static void note(struct demo *d, const char *what)
{
    if (d->nlog < 16) {
        snprintf(d->log[d->nlog], sizeof(d->log[0]), "%s", what);
        d->nlog++;
    }
    printf("  +%5.1f ms  %s\n", (loop_time(d->loop) - d->t0) * 1e3, what);
}

static struct demo demo;

/* The demo's times, in ms of a normal run.  Under valgrind (which slows the
 * program down tens of times, and more on a busy machine) they are ten times
 * as long, or an iteration can be late enough to find the next timer due
 * already and change the order. */
static double ms(double t)
{
    const char *pre = getenv("LD_PRELOAD");
    int valgrind = pre != NULL && strstr(pre, "vgpreload") != NULL;

    return t / 1e3 * (valgrind ? 10 : 1);
}

static void on_readable(loop_t *loop, int fd, int mask, void *data)
{
    struct demo *d = data;
    ssize_t n;
    (void)loop;
    (void)mask;

    n = read(fd, d->received + d->nreceived, sizeof(d->received) - 1 - d->nreceived);
    if (n > 0) {
        d->nreceived += (size_t)n;
        d->received[d->nreceived] = '\0';
        note(d, "reader");
    }
}

static void timer_write(loop_t *loop, void *data)
{
    struct demo *d = data;
    (void)loop;
    note(d, "timer-20ms");
    if (write(d->pipefd[1], "ping", 4) != 4)
        note(d, "write failed");
}

static void timer_10(loop_t *loop, void *data)
{
    (void)loop;
    note(data, "timer-10ms");
}

static void timer_40(loop_t *loop, void *data)
{
    (void)loop;
    note(data, "timer-40ms");
}

static void timer_stop(loop_t *loop, void *data)
{
    note(data, "timer-60ms stop");
    loop_stop(loop);
}

static void soon(loop_t *loop, void *data)
{
    (void)loop;
    note(data, "call_soon");
}

TEST(test_demo)
{
    static const char *expect[] = {
        "call_soon", "timer-10ms", "timer-20ms", "reader",
        "timer-40ms", "timer-60ms stop",
    };
    loop_t *loop;
    loop_stats_t st;
    int i;

    REQUIRE(loop_new(&loop) == 0);
    demo.loop = loop;
    demo.t0 = loop_time(loop);
    REQUIRE(pipe2(demo.pipefd, O_NONBLOCK | O_CLOEXEC) == 0);
    CHECK_EQ(loop_add_reader(loop, demo.pipefd[0], on_readable, &demo), 0);

    /* scheduled out of order on purpose */
    CHECK(loop_call_later(loop, ms(60), timer_stop, &demo) > 0);
    CHECK(loop_call_later(loop, ms(40), timer_40, &demo) > 0);
    CHECK(loop_call_later(loop, ms(10), timer_10, &demo) > 0);
    CHECK(loop_call_later(loop, ms(20), timer_write, &demo) > 0);
    CHECK(loop_call_later(loop, ms(500), timer_40, &demo) > 0);   /* never */
    CHECK_EQ(loop_call_soon(loop, soon, &demo), 0);

    CHECK_EQ(loop_run(loop), 0);

    CHECK_EQ(demo.nlog, 6);
    for (i = 0; i < 6 && i < demo.nlog; i++) {
        if (strcmp(demo.log[i], expect[i]) != 0) {
            fprintf(stderr, "step %d: got %s, want %s\n", i, demo.log[i], expect[i]);
            CHECK(0);
        }
    }
    CHECK(strcmp(demo.received, "ping") == 0);
    CHECK_EQ(loop_timer_count(loop), 1);

    loop_stats(loop, &st);
    printf("  stats: %lld iterations, %lld timers, %lld callbacks, %lld io events\n",
           (long long)st.iterations, (long long)st.timers_fired,
           (long long)st.callbacks_run, (long long)st.io_events);
    CHECK_EQ(st.timers_fired, 4);
    CHECK_EQ(st.callbacks_run, 6);

    CHECK_EQ(loop_remove_reader(loop, demo.pipefd[0]), 1);
    loop_free(loop);
    close(demo.pipefd[0]);
    close(demo.pipefd[1]);
}

int main(void)
{
    CT_BEGIN("test_demo");
    RUN(test_demo);
    return CT_END();
}
