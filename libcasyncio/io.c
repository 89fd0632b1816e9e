/*
 * io.c — the fd table, epoll registration and dispatch of epoll events to
 * watchers, streams and child pidfds.
 *
 * The table is an array indexed by fd, grown on demand.  It can move when it
 * grows, and a watcher callback may register a higher fd, so no slot pointer
 * is kept across a callback: slots are looked up again by fd afterwards.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static inline uint64_t slot_tag(const struct fd_slot *s, int fd)
{
    return ((uint64_t)s->gen << 32) | (uint32_t)fd;
}

#define SLOTS_DOUBLING_MAX 4096

struct fd_slot *io__slot_grow(loop_t *loop, int fd)
{
    struct fd_slot *slots;
    int n;

    if (fd < loop->nslots)
        return &loop->slots[fd];
    /* Doubling while the array is small, then an eighth more than fd
     * needs: a server's fds climb one at a time, and a doubled array would
     * carry (and zero, so touch) up to as many slots again for nothing --
     * 6k slots, 55 bytes per connection, at 10k connections (issue 12). */
    n = loop->nslots ? loop->nslots : 64;
    if (fd < SLOTS_DOUBLING_MAX) {
        while (n <= fd)
            n *= 2;
    } else {
        int64_t want = (int64_t)fd + 1 + fd / 8;
        n = want > INT32_MAX ? INT32_MAX : (int)want;
    }
    slots = realloc(loop->slots, (size_t)n * sizeof(*slots));
    if (slots == NULL)
        return NULL;
    memset(slots + loop->nslots, 0,
           (size_t)(n - loop->nslots) * sizeof(*slots));
    loop->slots = slots;
    loop->nslots = n;
    return &slots[fd];
}

static int set_events(loop_t *loop, int fd, struct fd_slot *s, uint32_t want,
                      bool force)
{
    struct epoll_event ev;
    int op, rc;

    if (want == s->events && !force)
        return 0;

    if (want == 0) {
        /* ENOENT/EBADF: the fd was closed, and epoll dropped it with its last
         * reference.  Either way it is gone from our point of view; the new
         * gen makes any event still in this batch for it stale.  (A parked
         * registration stays: it reports nothing.) */
        if (s->events != 0)
            (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
        s->events = 0;
        s->gen++;
        return 0;
    }

    memset(&ev, 0, sizeof(ev));
    ev.events = want;
    ev.data.u64 = slot_tag(s, fd);
    op = (s->events == 0 && !s->parked) ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    rc = epoll_ctl(loop->epfd, op, fd, &ev);
    if (rc < 0 && op == EPOLL_CTL_MOD && (errno == ENOENT || errno == EBADF)) {
        /* The registration is gone: the fd was closed (EBADF), or closed
         * and its number reused (ENOENT: epoll forgot the old file with its
         * last reference).  Record that, then register what is there now,
         * under a new gen so a lingering event of the old registration is
         * not taken for the new one. */
        s->events = 0;
        s->parked = 0;
        s->gen++;
        ev.data.u64 = slot_tag(s, fd);
        op = EPOLL_CTL_ADD;
        rc = epoll_ctl(loop->epfd, op, fd, &ev);
    } else if (rc < 0 && op == EPOLL_CTL_ADD && errno == EEXIST) {
        /* epoll still has a registration we gave up on: the fd was closed
         * behind our back while a dup kept its file open (so our
         * EPOLL_CTL_DEL failed with EBADF and epoll kept it), and the
         * number is that file again.  Take it over (test_io.c). */
        rc = epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    if (rc < 0)
        return -errno;
    s->events = want;
    s->parked = 0;
    return 0;
}

int io__set_events(loop_t *loop, int fd, struct fd_slot *s, uint32_t want,
                   bool force)
{
    int was = s->events != 0;
    int rc = set_events(loop, fd, s, want, force);

    loop->nwatched += (s->events != 0) - was;
    loop__sync_hint(loop);
    return rc;
}

/* ---- watchers ------------------------------------------------------------ */

static uint32_t dirs_to_epoll(int dirs)
{
    return ((dirs & LOOP_READABLE) ? EPOLLIN : 0u) |
           ((dirs & LOOP_WRITABLE) ? EPOLLOUT : 0u);
}

/* epoll's mask for a watcher: a one-shot reader alone is EPOLLONESHOT, so
 * that the kernel disarms it as it reports it (no EPOLL_CTL_DEL).  With a
 * writer beside it the registration must stay armed for the writer, and
 * the reader is taken out of the mask when it fires. */
static uint32_t watch_mask(int dirs, bool roneshot)
{
    uint32_t mask = dirs_to_epoll(dirs);

    if (roneshot && dirs == LOOP_READABLE)
        mask |= EPOLLONESHOT;
    return mask;
}

static int watch_add(loop_t *loop, int fd, int dir, loop_io_cb fn, void *data,
                     bool oneshot)
{
    struct fd_slot *s;
    int dirs, rc;
    bool roneshot;

    if (loop == NULL)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    /* The table is sized by fd number: grow it only for an fd that is open,
     * or a closed number like 10**8 would allocate (and zero) gigabytes
     * before epoll said EBADF. */
    if (fd >= loop->nslots && fcntl(fd, F_GETFD) < 0)
        return -errno;
    s = io__slot_grow(loop, fd);
    if (s == NULL)
        return -ENOMEM;
    if (s->kind != SLOT_FREE && s->kind != SLOT_WATCH)
        return -EEXIST;

    assert(!oneshot || (dir == LOOP_READABLE && fn == NULL));
    dirs = (s->kind == SLOT_WATCH ? s->u.w.dirs : 0) | dir;
    roneshot = dir == LOOP_READABLE ? oneshot
               : (s->kind == SLOT_WATCH && s->u.w.roneshot);
    /* Always ask epoll, even when the mask is unchanged: this is where a
     * closed fd (-EBADF), a regular file (-EPERM) or a reopened fd number is
     * noticed. */
    rc = io__set_events(loop, fd, s, watch_mask(dirs, roneshot), true);
    if (rc < 0) {
        if (s->kind == SLOT_WATCH && s->events == 0) {
            /* The fd died under an existing watcher: forget it entirely. */
            memset(&s->u, 0, sizeof(s->u));
            s->kind = SLOT_FREE;
        }
        return rc;
    }
    if (s->kind == SLOT_FREE) {
        memset(&s->u, 0, sizeof(s->u));
        s->kind = SLOT_WATCH;
    }
    if (dir == LOOP_READABLE) {
        s->u.w.rfn = fn;
        s->u.w.rdata = data;
    } else {
        s->u.w.wfn = fn;
        s->u.w.wdata = data;
    }
    s->u.w.dirs = (uint8_t)dirs;
    s->u.w.roneshot = roneshot;
    return 0;
}

static int watch_remove(loop_t *loop, int fd, int dir)
{
    struct fd_slot *s;
    int dirs;

    if (loop == NULL)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    s = io__slot(loop, fd);
    if (s == NULL || s->kind != SLOT_WATCH || !(s->u.w.dirs & dir))
        return 0;

    dirs = s->u.w.dirs & ~dir;
    if (dir == LOOP_READABLE)
        s->u.w.roneshot = 0;
    /* Failure means the fd was closed; io__set_events then already marked
     * it unregistered, which is all that removing needs. */
    (void)io__set_events(loop, fd, s, watch_mask(dirs, s->u.w.roneshot),
                         false);
    if (dir == LOOP_READABLE) {
        s->u.w.rfn = NULL;
        s->u.w.rdata = NULL;
    } else {
        s->u.w.wfn = NULL;
        s->u.w.wdata = NULL;
    }
    s->u.w.dirs = (uint8_t)dirs;
    if (dirs == 0) {
        if (s->events != 0)
            (void)io__set_events(loop, fd, s, 0, false);
        s->kind = SLOT_FREE;
    }
    return 1;
}

int loop_add_reader(loop_t *loop, int fd, loop_io_cb fn, void *data)
{
    return watch_add(loop, fd, LOOP_READABLE, fn, data, false);
}

int loop_add_writer(loop_t *loop, int fd, loop_io_cb fn, void *data)
{
    return watch_add(loop, fd, LOOP_WRITABLE, fn, data, false);
}

int loop_wait_readable(loop_t *loop, int fd, int peek)
{
    char byte;

    if (loop == NULL)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    /* Anything but "nothing yet" (bytes, EOF, an error, not a socket):
     * the caller's read will say what. */
    if (peek && (recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 ||
                 (errno != EAGAIN && errno != EWOULDBLOCK)))
        return 1;
    return watch_add(loop, fd, LOOP_READABLE, NULL, NULL, true);
}

/* A one-shot reader fired: it goes, as loop_remove_reader() would take it,
 * but without a syscall when the kernel already disarmed the registration
 * (then parked, for the next wait to re-arm). */
static void watch_fired_once(loop_t *loop, int fd, struct fd_slot *s)
{
    if (!(s->events & EPOLLONESHOT)) {
        (void)watch_remove(loop, fd, LOOP_READABLE);
        return;
    }
    assert(s->u.w.dirs == LOOP_READABLE && s->u.w.rfn == NULL);
    memset(&s->u, 0, sizeof(s->u));
    s->kind = SLOT_FREE;
    s->events = 0;
    s->parked = 1;
    s->gen++;
    loop->nwatched--;
    loop__sync_hint(loop);
}

int loop_remove_reader(loop_t *loop, int fd)
{
    return watch_remove(loop, fd, LOOP_READABLE);
}

int loop_remove_writer(loop_t *loop, int fd)
{
    return watch_remove(loop, fd, LOOP_WRITABLE);
}

/* ---- dispatch ------------------------------------------------------------ */

/* Readiness as Python's selectors.EpollSelector sees it: EPOLLERR/EPOLLHUP
 * wake both directions, so the reader or writer finds the error itself. */
static int epoll_to_ready(uint32_t ev)
{
    int r = 0;

    if (ev & ~(uint32_t)EPOLLIN)
        r |= LOOP_WRITABLE;
    if (ev & ~(uint32_t)EPOLLOUT)
        r |= LOOP_READABLE;
    return r;
}

/* Re-finds fd's watcher after a callback ran; NULL if it is not the same
 * registration any more. */
static struct fd_slot *watch_again(loop_t *loop, int fd, uint32_t gen)
{
    struct fd_slot *s = io__slot(loop, fd);

    if (s == NULL || s->kind != SLOT_WATCH || s->gen != gen)
        return NULL;
    return s;
}

static void watch_dispatch(loop_t *loop, int fd, struct fd_slot *s, int ready)
{
    uint32_t gen = s->gen;
    int evmask = 0;

    ready &= s->u.w.dirs;
    /* fn == NULL directions share one LOOP_EV_IO. */
    if ((ready & LOOP_READABLE) && s->u.w.rfn == NULL)
        evmask |= LOOP_READABLE;
    if ((ready & LOOP_WRITABLE) && s->u.w.wfn == NULL)
        evmask |= LOOP_WRITABLE;
    if (evmask != 0)
        loop__emit(loop, LOOP_EV_IO, fd, evmask, 0);
    if ((ready & LOOP_READABLE) && s->u.w.roneshot) {
        watch_fired_once(loop, fd, s);
        if (s->kind != SLOT_WATCH)
            return;
    }

    if ((ready & LOOP_READABLE) && s->u.w.rfn != NULL) {
        loop_io_cb fn = s->u.w.rfn;
        loop->stats.callbacks_run++;
        fn(loop, fd, LOOP_READABLE, s->u.w.rdata);
        /* The callback may have removed the writer, closed things, or
         * grown the table (moving it). */
        s = watch_again(loop, fd, gen);
        if (s == NULL)
            return;
    }
    if ((ready & LOOP_WRITABLE) && (s->u.w.dirs & LOOP_WRITABLE) &&
        s->u.w.wfn != NULL) {
        loop_io_cb fn = s->u.w.wfn;
        loop->stats.callbacks_run++;
        fn(loop, fd, LOOP_WRITABLE, s->u.w.wdata);
    }
}

void io__dispatch(loop_t *loop, const struct epoll_event *ev)
{
    int fd = (int)(uint32_t)ev->data.u64;
    uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
    struct fd_slot *s = io__slot(loop, fd);
    int ready;

    /* Stale: removed (maybe re-added) by a callback earlier in this batch. */
    if (s == NULL || s->gen != gen || s->events == 0)
        return;
    ready = epoll_to_ready(ev->events);

    switch (s->kind) {
    case SLOT_WATCH:
        watch_dispatch(loop, fd, s, ready);
        break;
    case SLOT_STREAM:
        stream__dispatch(loop, fd, s, ready);
        break;
    case SLOT_CHILD:
        if (ready & LOOP_READABLE)
            child__dispatch(loop, fd, s);
        break;
    default:
        /* Every path that frees a slot takes it out of epoll first. */
        LOOP_UNREACHABLE(loop, "io__dispatch: epoll event for a free slot");
        break;
    }
}

void io__free_all(loop_t *loop)
{
    int fd;

    for (fd = 0; fd < loop->nslots; fd++) {
        if (loop->slots[fd].kind == SLOT_STREAM)
            stream__release(&loop->slots[fd]);
    }
    free(loop->slots);
    loop->slots = NULL;
    loop->nslots = 0;
}
