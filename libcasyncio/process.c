/*
 * process.c — child processes watched through pidfds.
 *
 * A pidfd becomes readable when its process exits; it sits in the fd table
 * like any fd (kind SLOT_CHILD) and epoll reports it with the rest.  A small
 * array maps pid -> pidfd for loop_child_unwatch and loop_free.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<sys/pidfd.h>)
#include <sys/pidfd.h>
#define HAVE_PIDFD_OPEN 1
#endif
#endif

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434   /* the same number on every architecture */
#endif

/* P_PIDFD is an enum constant in glibc (no #ifdef possible) and missing
 * from old headers; its value is fixed by the kernel ABI. */
#define LOOP_P_PIDFD ((idtype_t)3)

static int open_pidfd(pid_t pid)
{
#ifdef HAVE_PIDFD_OPEN
    return pidfd_open(pid, 0);   /* pidfds are always close-on-exec */
#else
    return (int)syscall(SYS_pidfd_open, pid, 0);
#endif
}

static int waitid_pidfd(int pidfd, siginfo_t *si, int options)
{
    int rc;

    memset(si, 0, sizeof(*si));
    do
        rc = waitid(LOOP_P_PIDFD, (id_t)pidfd, si, options);
    while (rc < 0 && errno == EINTR);
    return rc;
}

static ssize_t child_find(const loop_t *loop, pid_t pid)
{
    size_t i;

    for (i = 0; i < loop->nchildren; i++) {
        if (loop->children[i].pid == pid)
            return (ssize_t)i;
    }
    return -1;
}

static int children_reserve(loop_t *loop)
{
    struct child_ref *c;
    size_t cap;

    if (loop->nchildren < loop->children_cap)
        return 0;
    cap = loop->children_cap ? loop->children_cap * 2 : 8;
    c = realloc(loop->children, cap * sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    loop->children = c;
    loop->children_cap = cap;
    return 0;
}

/* Unregisters and closes the pidfd at list index i. */
static void child_forget(loop_t *loop, size_t i)
{
    int pidfd = loop->children[i].pidfd;
    struct fd_slot *s = io__slot(loop, pidfd);

    if (s != NULL && s->kind == SLOT_CHILD) {
        (void)io__set_events(loop, pidfd, s, 0, false);
        memset(&s->u, 0, sizeof(s->u));
        s->kind = SLOT_FREE;
    }
    close(pidfd);
    loop->children[i] = loop->children[--loop->nchildren];
}

int loop_child_watch(loop_t *loop, pid_t pid, loop_child_cb fn, void *data)
{
    struct fd_slot *s;
    siginfo_t si;
    int pidfd, rc;

    if (loop == NULL || pid <= 0)
        return -EINVAL;
    if (child_find(loop, pid) >= 0)
        return -EEXIST;
    rc = children_reserve(loop);
    if (rc < 0)
        return rc;

    pidfd = open_pidfd(pid);
    if (pidfd < 0)
        return -errno;   /* ESRCH, ENOSYS, EMFILE... */

    /* pidfd_open accepts any process; only our children can be reaped.
     * WNOWAIT leaves an already exited child for the normal path. */
    if (waitid_pidfd(pidfd, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
        rc = -errno;
        goto fail;
    }

    s = io__slot_grow(loop, pidfd);
    if (s == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    if (s->kind != SLOT_FREE) {
        /* The table still holds a registration for an fd number the user
         * closed without telling us (the kernel just reused it).  Move the
         * pidfd out of its way rather than clobber it. */
        int nfd = fcntl(pidfd, F_DUPFD_CLOEXEC, loop->nslots);
        if (nfd < 0) {
            rc = -errno;
            goto fail;
        }
        close(pidfd);
        pidfd = nfd;
        s = io__slot_grow(loop, pidfd);
        if (s == NULL) {
            rc = -ENOMEM;
            goto fail;
        }
    }

    s->kind = SLOT_CHILD;
    memset(&s->u, 0, sizeof(s->u));
    s->u.c.pid = pid;
    s->u.c.fn = fn;
    s->u.c.data = data;
    rc = io__set_events(loop, pidfd, s, EPOLLIN, false);
    if (rc < 0) {
        s->kind = SLOT_FREE;
        goto fail;
    }
    loop->children[loop->nchildren].pid = pid;
    loop->children[loop->nchildren].pidfd = pidfd;
    loop->nchildren++;
    return 0;

fail:
    close(pidfd);
    return rc;
}

int loop_child_unwatch(loop_t *loop, pid_t pid)
{
    ssize_t i;

    if (loop == NULL)
        return -EINVAL;
    i = child_find(loop, pid);
    if (i < 0)
        return -ENOENT;
    child_forget(loop, (size_t)i);
    return 0;
}

void child__dispatch(loop_t *loop, int fd, struct fd_slot *s)
{
    pid_t pid = s->u.c.pid;
    loop_child_cb fn = s->u.c.fn;
    void *data = s->u.c.data;
    siginfo_t si;
    int code, lost = 0;
    ssize_t i;

    if (waitid_pidfd(fd, &si, WEXITED | WNOHANG) < 0) {
        /* ECHILD: reaped by someone else (a waitpid(-1) elsewhere, or
         * SIGCHLD ignored).  The status is lost; asyncio says 255. */
        code = 255;
        lost = 1;
    } else if (si.si_pid == 0) {
        return;   /* not exited after all */
    } else if (si.si_code == CLD_EXITED) {
        code = si.si_status;
    } else {
        code = -si.si_status;   /* CLD_KILLED, CLD_DUMPED */
    }

    /* Forget it before reporting, so fn may watch a new child that gets the
     * same pidfd number. */
    i = child_find(loop, pid);
    if (i >= 0)
        child_forget(loop, (size_t)i);
    if (fn != NULL) {
        loop->stats.callbacks_run++;
        fn(loop, pid, code, data);
    } else {
        loop__emit(loop, LOOP_EV_CHILD, pid, code, lost);
    }
}

void child__free_all(loop_t *loop)
{
    size_t i;

    for (i = 0; i < loop->nchildren; i++)
        close(loop->children[i].pidfd);
    free(loop->children);
    loop->children = NULL;
    loop->nchildren = loop->children_cap = 0;
}
