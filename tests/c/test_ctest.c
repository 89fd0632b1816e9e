/*
 * test_ctest.c — the runner in ctest.h, tested: a crash, a hang, a failed
 * check and (under ASan or valgrind) a leak are each reported by the name
 * of their test, and the tests after them still run.
 *
 * The program runs itself a second time (CTEST_SELFTEST_INNER set) with a
 * short timeout and its output captured; that inner run holds the bad
 * tests, and fails, as it should.  The outer run checks what the inner
 * printed and passes, so that `make check` stays green.
 */
#include "ctest.h"

#include <fcntl.h>

#define INNER_PROG    "test_ctest_inner"
#define INNER_TIMEOUT "3"

/* ---- the inner run: tests that misbehave ----------------------------------- */

static void *volatile sink;

TEST(test_passes_first)
{
    CHECK(1);
}

TEST(test_check_fails)
{
    CHECK_EQ(1 + 1, 3);
}

TEST(test_crashes)
{
    *(volatile int *)sink = 1;   /* NULL */
}

TEST(test_hangs)
{
    for (;;)
        pause();
}

__attribute__((noinline)) static void leak(void)
{
    sink = malloc(4096);
    memset(sink, 1, 4096);
    sink = NULL;
}

/* A definite leak: passes in a plain build, fails where the child's leaks
 * are checked (LeakSanitizer at exit(), valgrind as each child exits). */
TEST(test_leaks)
{
    leak();
}

TEST(test_passes_last)
{
    CHECK(1);
}

/* Whether this process's leaks are checked: ASan, or a traced valgrind
 * client (valgrind preloads its core into those only). */
static int leaks_checked(void)
{
    const char *pre = getenv("LD_PRELOAD");

#ifdef __SANITIZE_ADDRESS__
    return 1;
#endif
    return pre != NULL && strstr(pre, "vgpreload") != NULL;
}

static int inner_main(void)
{
    printf("leaks checked: %s\n", leaks_checked() ? "yes" : "no");
    CT_BEGIN(INNER_PROG);
    RUN(test_passes_first);
    RUN(test_check_fails);
    RUN(test_crashes);
    RUN(test_hangs);
    RUN(test_leaks);
    RUN(test_passes_last);
    return CT_END();
}

/* ---- the outer run: what the inner one reported ----------------------------- */

static char out[65536];

/* Runs this program again as the inner run; its stdout and stderr go to
 * out[], its wait status to *status. */
static int run_inner(int *status)
{
    char asan[512], self[4096];
    const char *prev = getenv("ASAN_OPTIONS");
    size_t len = 0;
    ssize_t n;
    int p[2];
    pid_t pid;

    /* The path, not /proc/self/exe itself: under valgrind that would be
     * valgrind's own binary (it answers the readlink with ours). */
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';

    /* A sanitizer's SEGV report ends in abort(), a signal, as in make
     * ctest-asan; leaks are checked. */
    snprintf(asan, sizeof(asan), "%s%sabort_on_error=1:detect_leaks=1",
             prev ? prev : "", prev ? ":" : "");
    if (pipe(p) < 0)
        return -1;
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        setenv("CTEST_SELFTEST_INNER", "1", 1);
        setenv("CTEST_TIMEOUT", INNER_TIMEOUT, 1);
        setenv("ASAN_OPTIONS", asan, 1);
        unsetenv("CTEST_ONLY");
        unsetenv("CTEST_NOFORK");
        execl(self, "test_ctest", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    while (len < sizeof(out) - 1 &&
           (n = read(p[0], out + len, sizeof(out) - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    close(p[0]);
    while (waitpid(pid, status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return 0;
}

static int has(const char *s)
{
    return strstr(out, s) != NULL;
}

TEST(test_runner_names_what_failed)
{
    int status, checked;

    REQUIRE(run_inner(&status) == 0);
    checked = has("leaks checked: yes");
    CHECK(checked || has("leaks checked: no"));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);

    CHECK(has("CHECK_EQ failed: 1 + 1 == 3"));
    CHECK(has("FAIL test_check_fails\n"));
#ifdef __SANITIZE_ADDRESS__
    /* ASan catches the SEGV, reports it and exits 1 */
    CHECK(has("CRASH test_crashes (signal ") ||
          has("FAIL test_crashes (exit status "));
#else
    CHECK(has("CRASH test_crashes (signal "));
#endif
    CHECK(has("TIMEOUT test_hangs (still running after " INNER_TIMEOUT " s"));
    if (checked)   /* LeakSanitizer aborts with abort_on_error=1 */
        CHECK(has("FAIL test_leaks (exit status ") ||
              has("CRASH test_leaks (signal "));
    else
        CHECK(!has("test_leaks"));
    CHECK(!has("test_passes_first"));
    CHECK(!has("test_passes_last"));
    /* every test ran, the last one after the crash and the hang */
    CHECK(has(checked ? INNER_PROG ": 2 passed, 4 failed\n"
                      : INNER_PROG ": 3 passed, 3 failed\n"));
    if (ct_checks_failed)
        fprintf(stderr, "---- the inner run printed:\n%s----\n", out);
}

int main(void)
{
    if (getenv("CTEST_SELFTEST_INNER") != NULL)
        return inner_main();
    CT_BEGIN("test_ctest");
    RUN(test_runner_names_what_failed);
    return CT_END();
}
