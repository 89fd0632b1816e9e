/*
 * core.c — loop lifecycle, the ready ring, the wakeup eventfd, polling and
 * the order of one iteration.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441   /* the same number on every architecture */
#endif

/* The kernel's struct __kernel_timespec: 64-bit fields even on 32-bit ABIs,
 * which is why epoll_pwait2 is called through syscall() with our own type. */
struct kernel_ts {
    long long tv_sec;
    long long tv_nsec;
};

/* Whether epoll_pwait2 is worth trying: a property of the kernel (or of a
 * seccomp filter, or valgrind), so learnt once per process.  Relaxed atomics:
 * loops in other threads at worst try it once more. */
static int pwait2_broken;

int64_t loop__now_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- lifecycle ---------------------------------------------------------- */

int loop_new(loop_t **out)
{
    loop_t *loop;
    struct epoll_event ev;
    int err;

    if (out == NULL)
        return -EINVAL;
    *out = NULL;

    loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return -ENOMEM;
    loop->epfd = -1;
    loop->wakefd = -1;
    loop->tfree = TIMER_NO_SLOT;
    loop__sync_hint(loop);

    loop->ready = malloc(LOOP_READY_MIN * sizeof(*loop->ready));
    loop->arena = malloc(LOOP_ARENA_SIZE);
    if (loop->ready == NULL || loop->arena == NULL) {
        err = ENOMEM;
        goto fail;
    }
    loop->ready_cap = LOOP_READY_MIN;
    loop->arena_size = LOOP_ARENA_SIZE;

    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        err = errno;
        goto fail;
    }
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wakefd < 0) {
        err = errno;
        goto fail;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = LOOP_WAKE_TAG;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0) {
        err = errno;
        goto fail;
    }

    *out = loop;
    return 0;

fail:
    loop_free(loop);
    return -err;
}

void loop_free(loop_t *loop)
{
    if (loop == NULL)
        return;
    child__free_all(loop);   /* closes pidfds: they are ours */
    io__free_all(loop);      /* user fds stay open */
    timer__free_all(loop);
    if (loop->wakefd >= 0)
        close(loop->wakefd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop->ready);
    free(loop->arena);
    free(loop);
}

double loop_time(const loop_t *loop)
{
    (void)loop;
    return (double)loop__now_ns() / 1e9;
}

void loop_stats_sized(const loop_t *loop, loop_stats_t *out, size_t size)
{
    loop_stats_t st;

    if (loop == NULL || out == NULL)
        return;
    st = loop->stats;
    st.fds = loop->nwatched;
    st.timers = loop->tlen;
    memcpy(out, &st, size < sizeof(st) ? size : sizeof(st));
}

const int64_t *loop_poll_hint(const loop_t *loop)
{
    return loop != NULL ? loop->hint : NULL;
}

void loop_read_arena(loop_t *loop, char **base, size_t *size)
{
    if (base != NULL)
        *base = loop != NULL ? loop->arena : NULL;
    if (size != NULL)
        *size = loop != NULL ? loop->arena_size : 0;
}

/* ---- wakeup ------------------------------------------------------------- */

int loop_wakeup(loop_t *loop)
{
    /* Called from other threads and from signal handlers: one write(2), and
     * errno is put back so an interrupted thread does not see it change. */
    uint64_t one = 1;
    int saved = errno;
    int rc = 0;

    if (loop == NULL)
        return -EINVAL;
    if (write(loop->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        rc = -errno;   /* EAGAIN: the counter is saturated, already awake */
    errno = saved;
    return rc;
}

static void wake_drain(loop_t *loop)
{
    uint64_t v;
    /* One read resets an eventfd counter to zero. */
    if (read(loop->wakefd, &v, sizeof(v)) < 0) {
        /* EAGAIN: another batch already drained it; nothing to do. */
    }
}

/* ---- ready ring --------------------------------------------------------- */

static int ready_grow(loop_t *loop)
{
    size_t cap = loop->ready_cap * 2;
    struct ready_item *r;
    size_t first;

    if (cap < loop->ready_cap || cap > SIZE_MAX / sizeof(*r))
        return -ENOMEM;
    r = malloc(cap * sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    /* Unwrap so the queue starts at 0 in the new array. */
    first = loop->ready_cap - loop->ready_head;
    if (first > loop->ready_len)
        first = loop->ready_len;
    memcpy(r, loop->ready + loop->ready_head, first * sizeof(*r));
    memcpy(r + first, loop->ready, (loop->ready_len - first) * sizeof(*r));
    free(loop->ready);
    loop->ready = r;
    loop->ready_cap = cap;
    loop->ready_head = 0;
    return 0;
}

int loop_call_soon(loop_t *loop, loop_cb fn, void *data)
{
    size_t tail;
    int rc;

    if (loop == NULL || fn == NULL)
        return -EINVAL;
    if (loop->ready_len == loop->ready_cap) {
        rc = ready_grow(loop);
        if (rc < 0)
            return rc;
    }
    tail = (loop->ready_head + loop->ready_len) & (loop->ready_cap - 1);
    loop->ready[tail].fn = fn;
    loop->ready[tail].data = data;
    loop->ready_len++;
    loop__sync_hint(loop);
    return 0;
}

/* Runs the first n queued callbacks: those queued before this iteration.
 * Each is popped before it runs, so a callback may queue more (and grow the
 * ring) safely; those wait for the next iteration. */
static void ready_run(loop_t *loop, size_t n)
{
    while (n-- > 0 && loop->ready_len > 0) {
        struct ready_item it = loop->ready[loop->ready_head];
        loop->ready_head = (loop->ready_head + 1) & (loop->ready_cap - 1);
        loop->ready_len--;
        loop->stats.callbacks_run++;
        it.fn(loop, it.data);
    }
}

/* ---- events for the binding --------------------------------------------- */

void loop__emit(loop_t *loop, int kind, int64_t fd, int64_t a, int64_t b)
{
    loop_event_t *e;

    if (loop->out_n < loop->out_max) {
        e = &loop->out[loop->out_n++];
        loop->stats.events_emitted++;
    } else if (loop->spill_n < LOOP_SPILL_MAX) {
        /* Only when max < LOOP_EV_PER_FD: see poll_and_dispatch(). */
        e = &loop->spill[loop->spill_n++];
    } else {
        /* poll_and_dispatch() polls only with an empty spill, and takes
         * one epoll event at a time when room is short; one epoll event
         * overflows by at most LOOP_EV_PER_FD - 1 < LOOP_SPILL_MAX. */
        LOOP_UNREACHABLE(loop, "loop__emit: event spill overflow");
        return;
    }
    e->kind = kind;
    e->fd = fd;
    e->a = a;
    e->b = b;
}

/* Moves events left over from the previous call to the front of the array. */
static void spill_deliver(loop_t *loop)
{
    int n = loop->spill_n;
    int room = loop->out_max - loop->out_n;

    if (n == 0)
        return;
    if (n > room)
        n = room;
    memcpy(loop->out + loop->out_n, loop->spill, (size_t)n * sizeof(loop_event_t));
    loop->out_n += n;
    loop->stats.events_emitted += n;
    memmove(loop->spill, loop->spill + n,
            (size_t)(loop->spill_n - n) * sizeof(loop_event_t));
    loop->spill_n -= n;
}

/* ---- health ------------------------------------------------------------- */

static inline int hist_bucket(int64_t ns)
{
    uint64_t us = ns > 0 ? (uint64_t)ns / 1000 : 0;
    int b = us == 0 ? 0 : 64 - __builtin_clzll(us);

    return b < LOOP_HIST_BUCKETS ? b : LOOP_HIST_BUCKETS - 1;
}

/* A poll starts at t: the batch that began at the last poll's return ends,
 * and so does the iteration that began at the last poll's start. */
static void health_poll_starts(loop_t *loop, int64_t t)
{
    loop_stats_t *st = &loop->stats;

    if (loop->batch_start != 0) {
        int64_t batch = t - loop->batch_start;
        st->batch_ns += batch;
        st->batch_hist[hist_bucket(batch)]++;
        st->iter_hist[hist_bucket(t - loop->iter_start)]++;
        if (batch > st->batch_max_ns) {
            st->batch_max_ns = batch;
            st->batch_max_end = t;
        }
    }
    loop->iter_start = t;
}

void loop_stats_resume(loop_t *loop)
{
    if (loop == NULL || loop->batch_start != 0)
        return;
    loop->batch_start = loop->iter_start = loop__now_ns();
}

void loop_stats_pause(loop_t *loop)
{
    if (loop == NULL || loop->batch_start == 0)
        return;
    health_poll_starts(loop, loop__now_ns());
    loop->batch_start = 0;
}

/* ---- polling ------------------------------------------------------------ */

/* How long epoll may block, in ns; -1 means forever. */
static int64_t poll_timeout_ns(const loop_t *loop, int timeout_ms)
{
    int64_t t = -1, deadline;

    /* Something to hand back already, or callbacks waiting: don't block. */
    if (timeout_ms == 0 || loop->out_n > 0 || loop->ready_len > 0)
        return 0;
    if (timer__next(loop, &deadline)) {
        t = deadline - loop__now_ns();
        if (t < 0)
            t = 0;
    }
    if (timeout_ms > 0) {
        int64_t cap = (int64_t)timeout_ms * 1000000;
        if (t < 0 || cap < t)
            t = cap;
    }
    return t;
}

static int do_poll(loop_t *loop, int maxev, int64_t timeout_ns)
{
    int n, ms;

    if (!__atomic_load_n(&pwait2_broken, __ATOMIC_RELAXED)) {
        struct kernel_ts ts, *tp = NULL;
        if (timeout_ns >= 0) {
            ts.tv_sec = timeout_ns / 1000000000;
            ts.tv_nsec = timeout_ns % 1000000000;
            tp = &ts;
        }
        n = (int)syscall(SYS_epoll_pwait2, loop->epfd, loop->pollbuf, maxev,
                         tp, NULL, (size_t)0);
        /* ENOSYS: kernel < 5.11 (or valgrind); EPERM: a seccomp filter that
         * does not know the syscall (epoll never returns EPERM itself). */
        if (n >= 0 || (errno != ENOSYS && errno != EPERM))
            return n;
        __atomic_store_n(&pwait2_broken, 1, __ATOMIC_RELAXED);
    }

    if (timeout_ns < 0) {
        ms = -1;
    } else {
        /* Round up: waking before the timer is due would spin. */
        int64_t m = (timeout_ns + 999999) / 1000000;
        ms = m > INT_MAX ? INT_MAX : (int)m;
    }
    return epoll_wait(loop->epfd, loop->pollbuf, maxev, ms);
}

/* Polls and handles I/O; *now gets the time read after the poll, which is
 * what timers are compared against.  0 or -errno. */
static int poll_and_dispatch(loop_t *loop, int timeout_ms, int64_t *now)
{
    int room = loop->out_max - loop->out_n;
    int maxev, n, i;
    int64_t t0, t1;

    /* Whatever one epoll event produces must fit: with room for fewer than
     * LOOP_EV_PER_FD events we take one epoll event and let the spill keep
     * the overflow.  Unhandled readiness is not lost: epoll is level
     * triggered and reports it again. */
    maxev = room / LOOP_EV_PER_FD;
    if (maxev > LOOP_POLL_MAX)
        maxev = LOOP_POLL_MAX;
    if (maxev < 1)
        maxev = 1;

    t0 = loop__now_ns();
    health_poll_starts(loop, t0);
    n = do_poll(loop, maxev, poll_timeout_ns(loop, timeout_ms));
    t1 = loop__now_ns();
    loop->stats.poll_ns += t1 - t0;
    loop->batch_start = t1;
    *now = t1;
    if (n < 0) {
        if (errno != EINTR)
            return -errno;
        n = 0;   /* a signal: handle timers and callbacks, then return */
    }

    for (i = 0; i < n; i++) {
        const struct epoll_event *ev = &loop->pollbuf[i];
        loop->stats.io_events++;
        if (ev->data.u64 == LOOP_WAKE_TAG)
            wake_drain(loop);
        else
            io__dispatch(loop, ev);
    }
    return 0;
}

/* ---- iterations --------------------------------------------------------- */

int loop_run_once(loop_t *loop, int timeout_ms, loop_event_t *events, int max)
{
    size_t ncallbacks;
    int64_t now;
    int rc = 0;

    if (loop == NULL || events == NULL || max <= 0)
        return -EINVAL;
    if (loop->in_run)
        return -EBUSY;
    loop->in_run = true;
    loop->stats.iterations++;

    loop->out = events;
    loop->out_n = 0;
    loop->out_max = max;
    loop->arena_used = 0;   /* last iteration's DATA offsets expire here */
    ncallbacks = loop->ready_len;

    spill_deliver(loop);
    /* With the array already full there is no room for I/O or timer events:
     * skip both (they wait, and the next call does not block). */
    if (loop->spill_n == 0 && loop__has_room(loop)) {
        rc = poll_and_dispatch(loop, timeout_ms, &now);
        if (rc < 0)
            goto out;
        timer__run(loop, now);
    }
    ready_run(loop, ncallbacks);

out:
    loop__sync_hint(loop);
    loop->in_run = false;
    loop->out = NULL;
    loop->out_max = 0;
    return rc < 0 ? rc : loop->out_n;
}

int loop_run(loop_t *loop)
{
    /* Events of fn == NULL registrations land here and are dropped. */
    loop_event_t sink[64];
    int rc;

    if (loop == NULL)
        return -EINVAL;
    loop_stats_resume(loop);
    for (;;) {
        /* A stop requested before (or during) this call: one last
         * non-blocking iteration, as asyncio's run_forever does. */
        rc = loop_run_once(loop, loop->stop ? 0 : -1, sink, 64);
        if (rc < 0) {
            loop_stats_pause(loop);
            return rc;
        }
        if (loop->stop) {
            loop->stop = false;
            loop_stats_pause(loop);
            return 0;
        }
    }
}

void loop_stop(loop_t *loop)
{
    if (loop != NULL)
        loop->stop = true;
}
