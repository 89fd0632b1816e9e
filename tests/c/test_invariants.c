/*
 * test_invariants.c — what the library does when one of its own invariants
 * breaks (LOOP_UNREACHABLE in internal.h).  Only a bug can get there, so the
 * tests break the invariant by hand, from inside: the program is built from
 * the library's sources, not linked to libcasyncio.so.  It is built twice:
 *   - build/tests/test_invariants (ctest, valgrind) with NDEBUG, as the
 *     release library is: the event is dropped, counted in loop_stats'
 *     events_dropped, and nothing aborts;
 *   - build/asan/tests/test_invariants (ctest-asan) without, as the ASan,
 *     fuzz and DEBUG=1 builds are: assert() stops the process (a child here),
 *     naming the invariant.
 */
#include "internal.h"
#include "ctest.h"

#include <fcntl.h>
#include <sys/wait.h>

#ifndef NDEBUG
/* Runs fn(loop) in a child whose stderr is captured; checks that it died of
 * SIGABRT and that the assertion's text names `what`. */
static void expect_assert(loop_t *loop, void (*fn)(loop_t *), const char *what)
{
    char msg[1024];
    size_t len = 0;
    int p[2], status;
    ssize_t n;
    pid_t pid;

    REQUIRE(pipe(p) == 0);
    fflush(NULL);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        fn(loop);
        _exit(0);   /* the assert did not fire */
    }
    close(p[1]);
    while (len < sizeof(msg) - 1 &&
           (n = read(p[0], msg + len, sizeof(msg) - 1 - len)) > 0)
        len += (size_t)n;
    msg[len] = '\0';
    close(p[0]);
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(strstr(msg, what) != NULL);
    if (strstr(msg, what) == NULL)
        fprintf(stderr, "child's stderr: %s\n", msg);
}
#endif

static int64_t dropped(const loop_t *loop)
{
    loop_stats_t st;

    loop_stats(loop, &st);
    return st.events_dropped;
}

/* ---- loop__emit: the spill is full ---------------------------------------- */

static loop_event_t out[1];

/* As in loop_run_once with a one-event array that is full and a spill that
 * is full too: no place left for an event. */
static void emit_with_no_room(loop_t *loop)
{
    loop->out = out;
    loop->out_max = 1;
    loop->out_n = 1;
    loop->spill_n = LOOP_SPILL_MAX;
    loop__emit(loop, LOOP_EV_TIMER, -1, 42, 0);
}

TEST(test_emit_overflow)
{
    loop_t *loop;

    REQUIRE(loop_new(&loop) == 0);
    CHECK_EQ(dropped(loop), 0);
#ifdef NDEBUG
    out[0].kind = 0;
    emit_with_no_room(loop);
    CHECK_EQ(dropped(loop), 1);
    CHECK_EQ(loop->spill_n, LOOP_SPILL_MAX);   /* nothing overwritten */
    CHECK_EQ(loop->out_n, 1);
    CHECK_EQ(out[0].kind, 0);
    CHECK_EQ(loop->stats.events_emitted, 0);
    loop->out = NULL;
    loop->out_max = loop->out_n = loop->spill_n = 0;
#else
    expect_assert(loop, emit_with_no_room, "event spill overflow");
    CHECK_EQ(dropped(loop), 0);
#endif
    loop_free(loop);
}

/* ---- io__dispatch: an event for a slot that is not registered ------------ */

static int rfd;

static void dispatch_free_slot(loop_t *loop)
{
    struct fd_slot *s = io__slot(loop, rfd);
    struct epoll_event ev;

    s->kind = SLOT_FREE;   /* freed without leaving epoll: the bug */
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = ((uint64_t)s->gen << 32) | (uint32_t)rfd;
    io__dispatch(loop, &ev);
}

TEST(test_dispatch_free_slot)
{
    loop_t *loop;
    int p[2];

    REQUIRE(loop_new(&loop) == 0);
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    rfd = p[0];
    CHECK_EQ(loop_add_reader(loop, rfd, NULL, NULL), 0);
#ifdef NDEBUG
    dispatch_free_slot(loop);
    CHECK_EQ(dropped(loop), 1);
    io__slot(loop, rfd)->kind = SLOT_WATCH;
#else
    expect_assert(loop, dispatch_free_slot, "epoll event for a free slot");
    CHECK_EQ(dropped(loop), 0);
#endif
    CHECK_EQ(loop_remove_reader(loop, rfd), 1);
    loop_free(loop);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    CT_BEGIN("test_invariants");
    RUN(test_emit_overflow);
    RUN(test_dispatch_free_slot);
    return CT_END();
}
