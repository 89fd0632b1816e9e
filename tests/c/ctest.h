/*
 * ctest.h — a tiny test harness for the libcasyncio C tests.
 *
 *   TEST(name) { CHECK(cond); CHECK_EQ(a, b); ... }
 *   int main(void) { CT_BEGIN("prog"); RUN(name); ...; return CT_END(); }
 *
 * Each RUN() forks: the test runs in a child process of its own, as libuv's
 * runner does, so a crash or a hang takes only that test down and is
 * reported by name, and the tests after it still run.  A test passes when
 * its child exits normally after no failed check; it fails with
 *   FAIL <name>                      a check failed
 *   FAIL <name> (exit status N ...)  the checks passed but the child did not
 *                                    exit 0: ASan/LSan or valgrind errors,
 *                                    reported above it
 *   CRASH <name> (signal N, ...)     killed by a signal (ASan aborts too)
 *   TIMEOUT <name> (...)             still running after CTEST_TIMEOUT
 *                                    seconds (60, generous for valgrind); its
 *                                    process group is killed
 * CT_END prints "<program>: N passed, M failed" and returns the exit status.
 *
 * The child ends with exit(), not _exit(), so that LeakSanitizer checks it;
 * valgrind follows forks by itself and checks each child as it exits.
 *
 * Environment: CTEST_TIMEOUT=<seconds>; CTEST_ONLY=<name> runs one test;
 * CTEST_NOFORK=1 runs the tests in this process, one after the other (for
 * a debugger; a crash then ends the program).
 */
#ifndef CTEST_H
#define CTEST_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int ct_checks_failed;   /* in the current test */
static int ct_passed, ct_failed;
static const char *ct_prog = "test";
static int ct_nofork;
static sigset_t ct_mask;        /* the signal mask before CT_BEGIN */

/* A child's exit status for "a check failed"; any other non-zero status
 * came from a sanitizer or valgrind. */
#define CT_EXIT_CHECKS 3

#define TEST(name) static void name(void)

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,          \
                    __LINE__, #cond);                                       \
            ct_checks_failed++;                                             \
        }                                                                   \
    } while (0)

#define CHECK_EQ(a, b)                                                      \
    do {                                                                    \
        long long ct_a_ = (long long)(a), ct_b_ = (long long)(b);           \
        if (ct_a_ != ct_b_) {                                               \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", \
                    __FILE__, __LINE__, #a, #b, ct_a_, ct_b_);              \
            ct_checks_failed++;                                             \
        }                                                                   \
    } while (0)

/* For setup steps: a failure makes the rest of the test meaningless. */
#define REQUIRE(cond)                                                       \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s (errno %d)\n",       \
                    __FILE__, __LINE__, #cond, errno);                      \
            ct_checks_failed++;                                             \
            return;                                                         \
        }                                                                   \
    } while (0)

#define RUN(name) ct_run(#name, name)

static double ct_timeout_s(void)
{
    const char *e = getenv("CTEST_TIMEOUT");
    double t = e != NULL ? atof(e) : 0;

    return t > 0 ? t : 60;
}

static double ct_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for the child at most `timeout` seconds (SIGCHLD is blocked in
 * this process, see CT_BEGIN).  1 and *status set, or 0 on timeout. */
static int ct_wait(pid_t pid, int *status, double timeout)
{
    double deadline = ct_now() + timeout;
    sigset_t chld;

    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    for (;;) {
        double left;
        struct timespec ts;
        pid_t r = waitpid(pid, status, WNOHANG);

        if (r == pid)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
        left = deadline - ct_now();
        if (left <= 0)
            return 0;
        ts.tv_sec = (time_t)left;
        ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
        (void)sigtimedwait(&chld, NULL, &ts);   /* EAGAIN: timed out */
    }
}

/* Counts and names a finished test by its child's wait status. */
static void ct_report(const char *name, int status)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        ct_passed++;
        return;
    }
    ct_failed++;
    if (WIFEXITED(status) && WEXITSTATUS(status) == CT_EXIT_CHECKS)
        fprintf(stderr, "FAIL %s\n", name);
    else if (WIFEXITED(status))
        fprintf(stderr, "FAIL %s (exit status %d, no failed check: "
                "sanitizer or valgrind errors above)\n",
                name, WEXITSTATUS(status));
    else
        fprintf(stderr, "CRASH %s (signal %d, %s)\n", name, WTERMSIG(status),
                strsignal(WTERMSIG(status)));
}

static void ct_run(const char *name, void (*fn)(void))
{
    const char *only = getenv("CTEST_ONLY");
    double timeout = ct_timeout_s();
    int status, rc;
    pid_t pid;

    if (only != NULL && *only != '\0' && strcmp(only, name) != 0)
        return;
    if (ct_nofork) {
        ct_checks_failed = 0;
        fn();
        if (ct_checks_failed == 0) {
            ct_passed++;
        } else {
            ct_failed++;
            fprintf(stderr, "FAIL %s\n", name);
        }
        return;
    }
    fflush(NULL);   /* or the child would print the parent's buffer again */
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "FAIL %s (fork: %s)\n", name, strerror(errno));
        ct_failed++;
        return;
    }
    if (pid == 0) {
        /* Its own process group, so a timeout also kills what it forked. */
        setpgid(0, 0);
        sigprocmask(SIG_SETMASK, &ct_mask, NULL);
        ct_checks_failed = 0;
        fn();
        exit(ct_checks_failed ? CT_EXIT_CHECKS : 0);
    }
    setpgid(pid, pid);   /* also here: no race with the kill below */
    rc = ct_wait(pid, &status, timeout);
    if (rc == 1) {
        ct_report(name, status);
        return;
    }
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ct_failed++;
    if (rc == 0)
        fprintf(stderr, "TIMEOUT %s (still running after %g s; killed)\n",
                name, timeout);
    else
        fprintf(stderr, "FAIL %s (waitpid: %s)\n", name, strerror(errno));
}

/* SIGCHLD stays blocked in this process so that ct_wait can sigtimedwait
 * for it; each child gets the mask back.  With casyncio.h included, one
 * empty iteration here lets the children inherit what the library learns
 * once per process (that epoll_pwait2 is missing, under valgrind: one
 * warning, not one per test). */
static void ct_begin(const char *prog)
{
    const char *nofork = getenv("CTEST_NOFORK");
    sigset_t chld;
#ifdef CASYNCIO_H
    loop_t *loop;
    loop_event_t ev[1];

    if (loop_new(&loop) == 0) {
        (void)loop_run_once(loop, 0, ev, 1);
        loop_free(loop);
    }
#endif

    ct_prog = prog;
    ct_nofork = nofork != NULL && *nofork != '\0' && strcmp(nofork, "0") != 0;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, ct_nofork ? NULL : &chld, &ct_mask);
}

#define CT_BEGIN(prog) ct_begin(prog)

#define CT_END()                                                            \
    (printf("%s: %d passed, %d failed\n", ct_prog, ct_passed, ct_failed),   \
     fflush(stdout), ct_failed ? 1 : 0)

#endif /* CTEST_H */
