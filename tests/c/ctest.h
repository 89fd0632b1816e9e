/*
 * ctest.h — a tiny test harness for the libcasyncio C tests.
 *
 *   TEST(name) { CHECK(cond); CHECK_EQ(a, b); ... }
 *   int main(void) { CT_BEGIN(); RUN(name); ...; return CT_END(); }
 *
 * A test passes when none of its checks failed.  CT_END prints
 * "<program>: N passed, M failed" and returns the exit status.  An alarm
 * turns a hang into a failure (generous, for valgrind).
 */
#ifndef CTEST_H
#define CTEST_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ct_checks_failed;   /* in the current test */
static int ct_passed, ct_failed;
static const char *ct_prog = "test";

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

#define RUN(name)                                                           \
    do {                                                                    \
        ct_checks_failed = 0;                                               \
        name();                                                             \
        if (ct_checks_failed == 0) {                                        \
            ct_passed++;                                                    \
        } else {                                                            \
            ct_failed++;                                                    \
            fprintf(stderr, "FAIL %s\n", #name);                            \
        }                                                                   \
    } while (0)

static void ct_on_alarm(int sig)
{
    static const char msg[] = "test timed out\n";
    (void)sig;
    if (write(2, msg, sizeof(msg) - 1) < 0) {
    }
    _exit(2);
}

#define CT_BEGIN(prog)                                                      \
    do {                                                                    \
        ct_prog = (prog);                                                   \
        signal(SIGALRM, ct_on_alarm);                                       \
        alarm(120);                                                         \
    } while (0)

#define CT_END()                                                            \
    (printf("%s: %d passed, %d failed\n", ct_prog, ct_passed, ct_failed),   \
     fflush(stdout), ct_failed ? 1 : 0)

#endif /* CTEST_H */
