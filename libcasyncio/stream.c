/*
 * stream.c — C-side stream I/O: reads into the loop's read arena, writes that
 * go out at once when possible, an out-buffer for the rest, and back-pressure
 * events (RESUME / DRAINED) for the binding.
 *
 * The epoll interest of a stream follows its state: EPOLLIN while reading is
 * on, EPOLLOUT while the out-buffer holds bytes.  An idle stream is not in
 * epoll at all, so a hung-up peer cannot make the loop spin on EPOLLHUP.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define SEND_FLAGS (MSG_NOSIGNAL | MSG_DONTWAIT)
#define WRITEV_CHUNK 64   /* iovecs per sendmsg/writev, on the stack */

static inline bool is_again(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

static struct fd_slot *stream_slot(loop_t *loop, int fd)
{
    struct fd_slot *s;

    if (loop == NULL || fd < 0)
        return NULL;
    s = io__slot(loop, fd);
    return (s != NULL && s->kind == SLOT_STREAM) ? s : NULL;
}

/* Brings epoll in line with the stream's state. */
static int stream_sync(loop_t *loop, int fd, struct fd_slot *s)
{
    const struct stream_state *st = &s->u.s;
    uint32_t want = (st->reading ? EPOLLIN : 0u) |
                    (st->olen > 0 ? EPOLLOUT : 0u);

    return io__set_events(loop, fd, s, want, false);
}

/* ---- out-buffer ---------------------------------------------------------- */

/* Appends n bytes.  The buffer is allocated on the first partial write and
 * then kept: a stream that hits back-pressure once usually does again. */
static int obuf_append(struct stream_state *st, const char *p, size_t n)
{
    size_t need;

    if (n == 0)
        return 0;
    if (st->ocap - st->ostart - st->olen >= n)
        goto copy;

    /* Slide the pending bytes to the front first; grow only if that is not
     * enough. */
    if (st->ostart > 0) {
        memmove(st->obuf, st->obuf + st->ostart, st->olen);
        st->ostart = 0;
    }
    if (st->ocap - st->olen < n) {
        size_t cap = st->ocap ? st->ocap : LOOP_OBUF_MIN;
        char *b;

        if (n > SIZE_MAX - st->olen)
            return -ENOMEM;
        need = st->olen + n;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) {
                cap = need;
                break;
            }
            cap *= 2;
        }
        b = realloc(st->obuf, cap);
        if (b == NULL)
            return -ENOMEM;
        st->obuf = b;
        st->ocap = cap;
    }
copy:
    memcpy(st->obuf + st->ostart + st->olen, p, n);
    st->olen += n;
    return 0;
}

static void obuf_consume(struct stream_state *st, size_t n)
{
    st->ostart += n;
    st->olen -= n;
    if (st->olen == 0)
        st->ostart = 0;
}

/* A write failed: nothing more will be written. */
static void stream_write_failed(loop_t *loop, int fd, struct fd_slot *s, int err)
{
    struct stream_state *st = &s->u.s;

    st->write_err = err;
    st->olen = 0;
    st->ostart = 0;
    st->above_high = 0;
    st->shut_pending = 0;
    free(st->obuf);
    st->obuf = NULL;
    st->ocap = 0;
    (void)stream_sync(loop, fd, s);
}

static int stream_do_shutdown(int fd, struct stream_state *st)
{
    st->shut_pending = 0;
    st->shut_done = 1;
    /* Pipes have no half-close; the binding closes them itself. */
    if (!(st->flags & LOOP_STREAM_SOCKET))
        return 0;
    if (shutdown(fd, SHUT_WR) < 0 && errno != ENOTCONN)
        return -errno;
    return 0;
}

static ssize_t stream_send(int fd, const struct stream_state *st,
                           const void *p, size_t n)
{
    if (st->flags & LOOP_STREAM_SOCKET)
        return send(fd, p, n, SEND_FLAGS);
    return write(fd, p, n);
}

/* EPOLLOUT: one send of the whole pending region, then the events it
 * earns. */
static void stream_flush(loop_t *loop, int fd, struct fd_slot *s)
{
    struct stream_state *st = &s->u.s;
    ssize_t n;

    n = stream_send(fd, st, st->obuf + st->ostart, st->olen);
    if (n < 0) {
        int err = errno;
        if (is_again(err))
            return;
        stream_write_failed(loop, fd, s, err);
        loop__emit(loop, LOOP_EV_ERROR, fd, err, LOOP_WRITABLE);
        return;
    }
    loop->stats.bytes_written += n;
    obuf_consume(st, (size_t)n);

    if (st->above_high && st->olen <= st->low) {
        st->above_high = 0;
        loop__emit(loop, LOOP_EV_RESUME, fd, 0, 0);
    }
    if (st->olen == 0) {
        (void)stream_sync(loop, fd, s);   /* drop EPOLLOUT */
        if (st->shut_pending) {
            /* An error here (peer already gone) shows up on the read side
             * or the next write; there is no write left to fail. */
            (void)stream_do_shutdown(fd, st);
        }
        loop__emit(loop, LOOP_EV_DRAINED, fd, 0, 0);
    }
}

/* ---- reading -------------------------------------------------------------- */

static void stream_read(loop_t *loop, int fd, struct fd_slot *s)
{
    struct stream_state *st = &s->u.s;
    size_t left = loop->arena_size - loop->arena_used;
    size_t min = st->read_size < LOOP_READ_MIN ? st->read_size : LOOP_READ_MIN;
    size_t want = st->read_size < left ? st->read_size : left;
    char *p = loop->arena + loop->arena_used;
    ssize_t n;
    int err;

    /* Arena (nearly) used up by this iteration, or no room to report: let
     * level-triggered epoll report the fd again next time. */
    if (left < min || !loop__has_room(loop))
        return;

    if (st->flags & LOOP_STREAM_SOCKET)
        n = recv(fd, p, want, MSG_DONTWAIT);
    else
        n = read(fd, p, want);

    if (n > 0) {
        loop__emit(loop, LOOP_EV_DATA, fd, n, (int64_t)loop->arena_used);
        loop->arena_used += (size_t)n;
        loop->stats.bytes_read += n;
        return;
    }
    err = n == 0 ? 0 : errno;
    if (n < 0 && is_again(err))
        return;
    st->reading = 0;
    (void)stream_sync(loop, fd, s);
    if (n == 0)
        loop__emit(loop, LOOP_EV_EOF, fd, 0, 0);
    else
        loop__emit(loop, LOOP_EV_ERROR, fd, err, LOOP_READABLE);
}

void stream__dispatch(loop_t *loop, int fd, struct fd_slot *s, int ready)
{
    /* No user code runs in here, so s stays valid throughout. */
    if ((ready & LOOP_READABLE) && s->u.s.reading) {
        if (!s->u.s.by_caller)
            stream_read(loop, fd, s);
        else if (loop__has_room(loop))
            /* No FIONREAD to tell the caller how much: that is one more
             * syscall per read, 0.26 us here (issue 12). */
            loop__emit(loop, LOOP_EV_READABLE, fd, 0, 0);
    }
    if ((ready & LOOP_WRITABLE) && s->u.s.olen > 0)
        stream_flush(loop, fd, s);
}

void stream__release(struct fd_slot *s)
{
    free(s->u.s.obuf);
    memset(&s->u, 0, sizeof(s->u));
    s->kind = SLOT_FREE;
}

/* ---- public API ------------------------------------------------------------ */

int loop_stream_open(loop_t *loop, int fd, int flags)
{
    struct fd_slot *s;
    struct stream_state *st;
    int fl;

    if (loop == NULL || (flags & ~LOOP_STREAM_SOCKET) != 0)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    s = io__slot_grow(loop, fd);
    if (s == NULL)
        return -ENOMEM;
    if (s->kind != SLOT_FREE)
        return -EEXIST;
    /* Sockets get MSG_DONTWAIT per call; read()/write() need the fd itself
     * non-blocking, or one large write would stall the loop. */
    if (!(flags & LOOP_STREAM_SOCKET) && !(fl & O_NONBLOCK) &&
        fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;

    memset(&s->u, 0, sizeof(s->u));
    s->kind = SLOT_STREAM;
    st = &s->u.s;
    st->flags = (uint8_t)flags;
    st->read_size = (uint32_t)(LOOP_READ_SIZE_DEFAULT < loop->arena_size
                                   ? LOOP_READ_SIZE_DEFAULT : loop->arena_size);
    st->high = LOOP_HIGH_DEFAULT;
    st->low = LOOP_LOW_DEFAULT;
    return 0;
}

int loop_stream_close(loop_t *loop, int fd)
{
    struct fd_slot *s = stream_slot(loop, fd);

    if (s == NULL)
        return -EBADF;
    (void)io__set_events(loop, fd, s, 0, false);
    stream__release(s);
    return 0;
}

int loop_stream_read_start(loop_t *loop, int fd)
{
    struct fd_slot *s = stream_slot(loop, fd);
    int rc;

    if (s == NULL)
        return -EBADF;
    if (s->u.s.reading)
        return 0;
    s->u.s.reading = 1;
    rc = stream_sync(loop, fd, s);
    if (rc < 0)
        s->u.s.reading = 0;
    return rc;
}

int loop_stream_read_stop(loop_t *loop, int fd)
{
    struct fd_slot *s = stream_slot(loop, fd);

    if (s == NULL)
        return -EBADF;
    if (!s->u.s.reading)
        return 0;
    s->u.s.reading = 0;
    /* Can only fail for a closed fd, which is not reading either way. */
    (void)stream_sync(loop, fd, s);
    return 0;
}

int loop_stream_set_read_size(loop_t *loop, int fd, size_t size)
{
    struct fd_slot *s = stream_slot(loop, fd);

    if (s == NULL)
        return -EBADF;
    if (size == 0)
        return -EINVAL;
    s->u.s.read_size = (uint32_t)(size < loop->arena_size ? size
                                                          : loop->arena_size);
    return 0;
}

int loop_stream_read_by_caller(loop_t *loop, int fd, int on)
{
    struct fd_slot *s = stream_slot(loop, fd);

    if (s == NULL)
        return -EBADF;
    s->u.s.by_caller = on != 0;
    return 0;
}

int loop_stream_set_write_limits(loop_t *loop, int fd, size_t high, size_t low)
{
    struct fd_slot *s = stream_slot(loop, fd);

    if (s == NULL)
        return -EBADF;
    if (high < low)
        return -EINVAL;
    s->u.s.high = high;
    s->u.s.low = low;
    /* Only a flush reports RESUME, so the flag is only ever raised here. */
    if (s->u.s.olen > high)
        s->u.s.above_high = 1;
    return 0;
}

int64_t loop_write_buffer_size(loop_t *loop, int fd)
{
    struct fd_slot *s = stream_slot(loop, fd);

    return s != NULL ? (int64_t)s->u.s.olen : -EBADF;
}

int loop_stream_write_error(loop_t *loop, int fd)
{
    struct fd_slot *s = stream_slot(loop, fd);

    return s != NULL ? -s->u.s.write_err : -EBADF;
}

int loop_stream_shutdown_write(loop_t *loop, int fd)
{
    struct fd_slot *s = stream_slot(loop, fd);
    struct stream_state *st;

    if (s == NULL)
        return -EBADF;
    st = &s->u.s;
    if (st->write_err)
        return -st->write_err;
    if (st->shut_pending || st->shut_done)
        return 0;
    if (st->olen > 0) {
        st->shut_pending = 1;   /* stream_flush does it when empty */
        return 0;
    }
    return stream_do_shutdown(fd, st);
}

/* Checks shared by loop_write and loop_writev; 1: go on, else the result. */
static int64_t write_precheck(struct fd_slot *s)
{
    const struct stream_state *st;

    if (s == NULL)
        return -EBADF;
    st = &s->u.s;
    if (st->write_err)
        return -st->write_err;
    if (st->shut_pending || st->shut_done)
        return -EPIPE;
    return 1;
}

/* After bytes were appended: arm EPOLLOUT, note the high-water mark. */
static int64_t write_buffered(loop_t *loop, int fd, struct fd_slot *s)
{
    struct stream_state *st = &s->u.s;
    int rc = stream_sync(loop, fd, s);

    if (rc < 0) {
        stream_write_failed(loop, fd, s, -rc);
        return rc;
    }
    if (st->olen > st->high)
        st->above_high = 1;
    return (int64_t)st->olen;
}

int64_t loop_write(loop_t *loop, int fd, const void *buf, size_t len)
{
    struct fd_slot *s = stream_slot(loop, fd);
    struct stream_state *st;
    size_t off = 0;
    int64_t rc = write_precheck(s);
    int err;

    if (rc != 1)
        return rc;
    st = &s->u.s;
    if (len == 0)
        return (int64_t)st->olen;
    if (buf == NULL)
        return -EFAULT;

    if (st->olen == 0) {
        ssize_t n = stream_send(fd, st, buf, len);
        if (n < 0) {
            err = errno;
            if (!is_again(err)) {
                stream_write_failed(loop, fd, s, err);
                return -err;
            }
            n = 0;
        }
        loop->stats.bytes_written += n;
        off = (size_t)n;
        if (off == len)
            return 0;
    }
    err = obuf_append(st, (const char *)buf + off, len - off);
    if (err < 0) {
        /* Part of the data may be gone already: the stream is broken. */
        stream_write_failed(loop, fd, s, -err);
        return err;
    }
    return write_buffered(loop, fd, s);
}

/* Sends bufs[i..] straight to the fd, WRITEV_CHUNK at a time, while the
 * kernel takes whole chunks.  Returns how many bytes went out (count from
 * bufs[0]), or -errno for a real error. */
static int64_t writev_now(int fd, const struct stream_state *st,
                          const void *const *bufs, const size_t *lens, int count)
{
    struct iovec iov[WRITEV_CHUNK];
    int64_t total = 0;
    int i = 0;

    while (i < count) {
        size_t chunk_bytes = 0;
        int k = 0;
        ssize_t n;

        for (; i < count && k < WRITEV_CHUNK; i++) {
            if (lens[i] == 0)
                continue;
            if (lens[i] > SSIZE_MAX - chunk_bytes)
                break;
            iov[k].iov_base = (void *)bufs[i];
            iov[k].iov_len = lens[i];
            chunk_bytes += lens[i];
            k++;
        }
        if (k == 0)
            break;
        if (st->flags & LOOP_STREAM_SOCKET) {
            struct msghdr msg;
            memset(&msg, 0, sizeof(msg));
            msg.msg_iov = iov;
            msg.msg_iovlen = (size_t)k;
            n = sendmsg(fd, &msg, SEND_FLAGS);
        } else {
            n = writev(fd, iov, k);
        }
        if (n < 0)
            return is_again(errno) ? total : -errno;
        total += n;
        if ((size_t)n < chunk_bytes)
            break;
    }
    return total;
}

int64_t loop_writev(loop_t *loop, int fd, const void *const *bufs,
                    const size_t *lens, int count)
{
    struct fd_slot *s = stream_slot(loop, fd);
    struct stream_state *st;
    int64_t rc = write_precheck(s);
    int64_t skip = 0;
    size_t before;
    int i;

    if (rc != 1)
        return rc;
    if (count < 0 || (count > 0 && (bufs == NULL || lens == NULL)))
        return -EINVAL;
    st = &s->u.s;
    before = st->olen;

    if (st->olen == 0) {
        skip = writev_now(fd, st, bufs, lens, count);
        if (skip < 0) {
            stream_write_failed(loop, fd, s, (int)-skip);
            return skip;
        }
        loop->stats.bytes_written += skip;
    }
    /* Buffer whatever the kernel did not take, skipping the sent prefix. */
    for (i = 0; i < count; i++) {
        size_t l = lens[i];
        const char *p = bufs[i];
        int err;

        if ((int64_t)l <= skip) {
            skip -= (int64_t)l;
            continue;
        }
        err = obuf_append(st, p + skip, l - (size_t)skip);
        skip = 0;
        if (err < 0) {
            stream_write_failed(loop, fd, s, -err);
            return err;
        }
    }
    if (st->olen == before)
        return (int64_t)st->olen;   /* all sent, or nothing to send */
    return write_buffered(loop, fd, s);
}
