/* test_process.c — child watching through pidfds. */
#include "casyncio.h"
#include "ctest.h"

#include <dirent.h>
#include <sys/wait.h>

#define MAXEV 64

static pid_t spawn_exit(int code)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(code);
    return pid;
}

static pid_t spawn_sleeper(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

/* The `b` (status lost) of the last event wait_child_event found. */
static int64_t child_lost;

/* Runs until a LOOP_EV_CHILD for pid; returns its returncode, or -1000. */
static int wait_child_event(loop_t *loop, pid_t pid)
{
    loop_event_t ev[MAXEV];
    int iter, i, n;

    for (iter = 0; iter < 40; iter++) {
        n = loop_run_once(loop, 500, ev, MAXEV);
        for (i = 0; i < n; i++) {
            if (ev[i].kind == LOOP_EV_CHILD && ev[i].fd == pid) {
                child_lost = ev[i].b;
                return (int)ev[i].a;
            }
        }
    }
    return -1000;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

TEST(test_exit_code)
{
    loop_t *loop;
    pid_t pid;

    REQUIRE(loop_new(&loop) == 0);
    pid = spawn_exit(3);
    REQUIRE(pid > 0);
    REQUIRE(loop_child_watch(loop, pid, NULL, NULL) == 0);
    CHECK_EQ(loop_child_watch(loop, pid, NULL, NULL), -EEXIST);
    CHECK_EQ(wait_child_event(loop, pid), 3);
    CHECK_EQ(child_lost, 0);
    /* reaped by the loop */
    CHECK_EQ(waitpid(pid, NULL, WNOHANG), -1);
    CHECK_EQ(loop_child_unwatch(loop, pid), -ENOENT);

    /* a real 255 is not a lost status */
    pid = spawn_exit(255);
    REQUIRE(pid > 0);
    REQUIRE(loop_child_watch(loop, pid, NULL, NULL) == 0);
    CHECK_EQ(wait_child_event(loop, pid), 255);
    CHECK_EQ(child_lost, 0);
    loop_free(loop);
}

TEST(test_killed)
{
    loop_t *loop;
    pid_t pid;
    int rc;

    REQUIRE(loop_new(&loop) == 0);
    pid = spawn_sleeper();
    REQUIRE(pid > 0);
    rc = loop_child_watch(loop, pid, NULL, NULL);
    kill(pid, SIGKILL);
    if (rc != 0) {
        waitpid(pid, NULL, 0);
        CHECK_EQ(rc, 0);
        loop_free(loop);
        return;
    }
    CHECK_EQ(wait_child_event(loop, pid), -SIGKILL);
    loop_free(loop);
}

struct child_hit {
    int calls;
    pid_t pid;
    int code;
};

static void child_cb(loop_t *loop, pid_t pid, int returncode, void *data)
{
    struct child_hit *h = data;
    (void)loop;
    h->calls++;
    h->pid = pid;
    h->code = returncode;
}

TEST(test_callback_and_already_exited)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    struct child_hit h = { 0, 0, 0 };
    siginfo_t si;
    pid_t pid;
    int i;

    REQUIRE(loop_new(&loop) == 0);
    pid = spawn_exit(7);
    REQUIRE(pid > 0);
    /* wait until it is a zombie, without reaping it */
    REQUIRE(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) == 0);
    CHECK_EQ(loop_child_watch(loop, pid, child_cb, &h), 0);
    for (i = 0; i < 10 && h.calls == 0; i++)
        CHECK_EQ(loop_run_once(loop, 1000, ev, MAXEV), 0);
    CHECK_EQ(h.calls, 1);
    CHECK_EQ(h.pid, pid);
    CHECK_EQ(h.code, 7);
    loop_free(loop);
}

/* Someone else reaps the child first: returncode 255, as in asyncio, and
 * the event says the status was lost. */
TEST(test_reaped_elsewhere)
{
    loop_t *loop;
    pid_t pid;
    int status;

    REQUIRE(loop_new(&loop) == 0);
    pid = spawn_exit(5);
    REQUIRE(pid > 0);
    CHECK_EQ(loop_child_watch(loop, pid, NULL, NULL), 0);
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK_EQ(wait_child_event(loop, pid), 255);
    CHECK_EQ(child_lost, 1);
    loop_free(loop);
}

TEST(test_watch_errors)
{
    loop_t *loop;
    pid_t pid;

    REQUIRE(loop_new(&loop) == 0);
    /* a pid that no longer exists */
    pid = spawn_exit(0);
    REQUIRE(pid > 0);
    REQUIRE(waitpid(pid, NULL, 0) == pid);
    CHECK_EQ(loop_child_watch(loop, pid, NULL, NULL), -ESRCH);
    /* a process that is not our child */
    CHECK_EQ(loop_child_watch(loop, getppid(), NULL, NULL), -ECHILD);
    CHECK_EQ(loop_child_watch(loop, 0, NULL, NULL), -EINVAL);
    CHECK_EQ(loop_child_watch(loop, -1, NULL, NULL), -EINVAL);
    CHECK_EQ(loop_child_unwatch(loop, 12345678), -ENOENT);
    loop_free(loop);
}

TEST(test_unwatch_and_free)
{
    loop_t *loop;
    loop_event_t ev[MAXEV];
    pid_t a, b;
    int fds0, status;

    fds0 = count_fds();
    REQUIRE(loop_new(&loop) == 0);
    a = spawn_sleeper();
    b = spawn_sleeper();
    REQUIRE(a > 0 && b > 0);
    CHECK_EQ(loop_child_watch(loop, a, NULL, NULL), 0);
    CHECK_EQ(loop_child_watch(loop, b, NULL, NULL), 0);
    CHECK_EQ(loop_child_unwatch(loop, a), 0);
    CHECK_EQ(loop_child_unwatch(loop, a), -ENOENT);
    kill(a, SIGKILL);
    CHECK_EQ(waitpid(a, &status, 0), a);   /* not reaped by the loop */
    CHECK(WIFSIGNALED(status));
    CHECK_EQ(loop_run_once(loop, 50, ev, MAXEV), 0);   /* nothing for a */
    loop_free(loop);   /* closes b's pidfd */
    CHECK_EQ(count_fds(), fds0);
    kill(b, SIGKILL);
    CHECK_EQ(waitpid(b, &status, 0), b);
}

/* Many children at once, mixed exit codes. */
TEST(test_many_children)
{
    enum { N = 20 };
    loop_t *loop;
    loop_event_t ev[MAXEV];
    pid_t pids[N];
    int codes[N], got = 0, iter, i, j, n, ok = 1;

    REQUIRE(loop_new(&loop) == 0);
    for (i = 0; i < N; i++) {
        pids[i] = spawn_exit(i);
        REQUIRE(pids[i] > 0);
        CHECK_EQ(loop_child_watch(loop, pids[i], NULL, NULL), 0);
        codes[i] = -1;
    }
    for (iter = 0; iter < 200 && got < N; iter++) {
        n = loop_run_once(loop, 1000, ev, MAXEV);
        for (i = 0; i < n; i++) {
            for (j = 0; j < N; j++) {
                if (ev[i].kind == LOOP_EV_CHILD && ev[i].fd == pids[j]) {
                    ok &= codes[j] == -1;
                    codes[j] = (int)ev[i].a;
                    got++;
                }
            }
        }
    }
    CHECK_EQ(got, N);
    for (i = 0; i < N; i++)
        ok &= codes[i] == i;
    CHECK(ok);
    loop_free(loop);
}

/* Without pidfds (kernel < 5.3, or valgrind < 3.20 which does not know
 * pidfd_open) loop_child_watch says -ENOSYS and leaves nothing behind. */
static int probe_pidfd(void)
{
    loop_t *loop;
    pid_t pid;
    int rc, fds0 = count_fds();

    if (loop_new(&loop) != 0)
        return -1;
    pid = spawn_exit(0);
    rc = loop_child_watch(loop, pid, NULL, NULL);
    loop_free(loop);
    waitpid(pid, NULL, 0);   /* ECHILD if the loop reaped it: fine */
    if (rc == -ENOSYS && count_fds() != fds0)
        return -1;
    return rc;
}

int main(void)
{
    int rc;

    CT_BEGIN("test_process");
    rc = probe_pidfd();
    if (rc == -ENOSYS) {
        printf("test_process: no pidfd support here (loop_child_watch -> "
               "-ENOSYS); child tests skipped\n");
        printf("test_process: 1 passed, 0 failed, 7 skipped\n");
        return 0;
    }
    if (rc != 0) {
        printf("test_process: probe failed (%d)\n", rc);
        ct_failed++;
    } else {
        ct_passed++;
    }
    RUN(test_exit_code);
    RUN(test_killed);
    RUN(test_callback_and_already_exited);
    RUN(test_reaped_elsewhere);
    RUN(test_watch_errors);
    RUN(test_unwatch_and_free);
    RUN(test_many_children);
    return CT_END();
}
