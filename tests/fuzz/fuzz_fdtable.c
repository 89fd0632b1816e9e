/*
 * fuzz_fdtable.c — libFuzzer harness for the fd table (io.c) and its epoll
 * registrations, with watchers and streams sharing it.
 *
 * A small pool of real fds per input: two socketpairs, a pipe, an eventfd, a
 * regular file (memfd: epoll refuses it) and a closed fd number.  The input
 * decodes into add/remove reader/writer (event or C-callback watchers,
 * callbacks that remove themselves or drain their fd), one-shot read waits
 * (loop_wait_readable, with and without its peek), stream
 * open/close/read start/stop, making fds readable or draining them, closing
 * an fd or putting another file under its number behind the loop's back,
 * and run_once.  A model of the table and of each fd's readiness predicts:
 *   - every return code (0/1, -EBADF, -EEXIST, -EPERM);
 *   - for each run_once, exactly which fds report which directions (as
 *     LOOP_EV_IO events or callbacks, a writer callback skipped when the
 *     reader callback removed it), and which streams read (DATA of at most
 *     what is pending, EOF only for a gone peer, ERROR only where a read
 *     can fail);
 *   - that a registration made stale behind the loop's back reports nothing
 *     until the next add or interest change re-registers it.
 */
#include "casyncio.h"
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define NPOOL   9
#define MAX_OPS 300
#define MAX_EV  64
#define R LOOP_READABLE
#define W LOOP_WRITABLE

enum { T_SOCK, T_PIPE_R, T_PIPE_W, T_EVENTFD, T_FILE, T_CLOSED };
enum { K_FREE, K_WATCH, K_STREAM };

struct pfd {
    int fd;
    /* the file under the number */
    int type, partner, hup;
    int pending;                 /* bytes to read (eventfd: counter > 0) */
    /* the loop's view */
    int kind, dirs, rcb, wcb;
    int oneshot;                 /* the reader goes after one report */
    uint8_t ract, wact;          /* callback actions */
    int reading, sflags;
    int tbl;                     /* R/W the table believes epoll has */
    int cons;                    /* epoll really has tbl for this file */
};

static struct {
    loop_t *loop;
    struct pfd p[NPOOL];
    int grown;                   /* the table has slots for the pool */
    /* per run_once: what was reported, by pool index */
    int io_mask[NPOOL], cb_mask[NPOOL], ncb[NPOOL];
    int expect[NPOOL];           /* what epoll reports for each fd */
    int fired[NPOOL];            /* its one-shot reader went (model) */
    int in_run;
} F;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int pool_index(int fd)
{
    int i;

    for (i = 0; i < NPOOL; i++)
        if (F.p[i].fd == fd)
            return i;
    return -1;
}

/* ---- the model of io__set_events ----------------------------------------- */

static int epoll_add_result(const struct pfd *p)
{
    if (p->type == T_CLOSED)
        return -EBADF;
    if (p->type == T_FILE)
        return -EPERM;
    return 0;
}

static int model_set_events(struct pfd *p, int want, int force)
{
    int rc;

    if (want == p->tbl && !force)
        return 0;
    if (want == 0) {
        p->tbl = 0;
        p->cons = 1;
        return 0;
    }
    if (p->tbl != 0 && p->cons) {
        p->tbl = want;            /* EPOLL_CTL_MOD */
        return 0;
    }
    /* EPOLL_CTL_ADD, or a MOD that finds the registration gone (the file
     * was closed or replaced) followed by an ADD */
    p->tbl = 0;
    p->cons = 1;
    rc = epoll_add_result(p);
    if (rc == 0)
        p->tbl = want;
    return rc;
}

/* ---- watchers -------------------------------------------------------------- */

static void watch_cb(loop_t *loop, int fd, int mask, void *data);

static int model_add(struct pfd *p, int dir)
{
    int rc;

    if (!F.grown && p->type == T_CLOSED)
        return -EBADF;       /* refused before the table grows */
    if (p->type != T_CLOSED)
        F.grown = 1;
    if (p->kind == K_STREAM)
        return -EEXIST;
    rc = model_set_events(p, (p->kind == K_WATCH ? p->dirs : 0) | dir, 1);
    if (rc < 0) {
        if (p->kind == K_WATCH && p->tbl == 0) {
            p->kind = K_FREE;
            p->dirs = p->rcb = p->wcb = 0;
        }
        return rc;
    }
    p->kind = K_WATCH;
    p->dirs |= dir;
    return 0;
}

static void do_add(int i, int dir, int cb, uint8_t act)
{
    struct pfd *p = &F.p[i];
    loop_io_cb fn = cb ? watch_cb : NULL;
    void *data = (void *)(intptr_t)i;
    int want = model_add(p, dir);
    int rc = dir == R ? loop_add_reader(F.loop, p->fd, fn, data)
                      : loop_add_writer(F.loop, p->fd, fn, data);

    FUZZ_CHECK(rc == want, "add %s fd %d (type %d kind %d): %d, want %d",
               dir == R ? "reader" : "writer", p->fd, p->type, p->kind, rc,
               want);
    if (rc == 0) {
        if (dir == R) {
            p->rcb = cb;
            p->ract = act;
            p->oneshot = 0;
        } else {
            p->wcb = cb;
            p->wact = act;
        }
    }
}

static int model_remove(struct pfd *p, int dir)
{
    int nd;

    if (p->kind != K_WATCH || !(p->dirs & dir))
        return 0;
    nd = p->dirs & ~dir;
    (void)model_set_events(p, nd, 0);
    p->dirs = nd;
    if (dir == R)
        p->rcb = p->oneshot = 0;
    else
        p->wcb = 0;
    if (nd == 0) {
        (void)model_set_events(p, 0, 0);
        p->kind = K_FREE;
    }
    return 1;
}

static void do_remove(int i, int dir)
{
    struct pfd *p = &F.p[i];
    int want = model_remove(p, dir);
    int rc = dir == R ? loop_remove_reader(F.loop, p->fd)
                      : loop_remove_writer(F.loop, p->fd);

    FUZZ_CHECK(rc == want, "remove %s fd %d: %d, want %d",
               dir == R ? "reader" : "writer", p->fd, rc, want);
}

/* What loop_wait_readable's peek (recv MSG_PEEK) finds: 1 unless a socket
 * with nothing to read (EAGAIN); other files fail (ENOTSOCK, EBADF). */
static int model_peek(const struct pfd *p)
{
    return p->type != T_SOCK || p->pending > 0 || p->hup;
}

static void do_wait(int i, int peek)
{
    struct pfd *p = &F.p[i];
    int want, rc;

    want = peek && model_peek(p) ? 1 : model_add(p, R);
    rc = loop_wait_readable(F.loop, p->fd, peek);
    FUZZ_CHECK(rc == want, "wait_readable fd %d peek %d (type %d kind %d): "
               "%d, want %d", p->fd, peek, p->type, p->kind, rc, want);
    if (rc == 0) {
        p->rcb = 0;
        p->oneshot = 1;
    }
}

/* A one-shot reader was reported: it is gone, as if removed. */
static void model_fired(int i)
{
    if (F.fired[i])
        return;
    F.fired[i] = 1;
    (void)model_remove(&F.p[i], R);
}

/* ---- streams --------------------------------------------------------------- */

static void do_stream_open(int i, int flags)
{
    struct pfd *p = &F.p[i];
    int want, rc;

    if (p->type == T_CLOSED)
        want = -EBADF;
    else if (p->kind != K_FREE)
        want = -EEXIST;
    else
        want = 0;
    if (p->type != T_CLOSED)
        F.grown = 1;
    rc = loop_stream_open(F.loop, p->fd, flags);
    FUZZ_CHECK(rc == want, "stream_open fd %d (type %d kind %d): %d, want %d",
               p->fd, p->type, p->kind, rc, want);
    if (rc == 0) {
        p->kind = K_STREAM;
        p->reading = 0;
        p->sflags = flags;
    }
}

static void do_stream_close(int i)
{
    struct pfd *p = &F.p[i];
    int want = p->kind == K_STREAM ? 0 : -EBADF;
    int rc = loop_stream_close(F.loop, p->fd);

    FUZZ_CHECK(rc == want, "stream_close fd %d: %d, want %d", p->fd, rc, want);
    if (rc == 0) {
        (void)model_set_events(p, 0, 0);
        p->kind = K_FREE;
        p->reading = 0;
    }
}

static void do_read_start(int i)
{
    struct pfd *p = &F.p[i];
    int want, rc;

    if (p->kind != K_STREAM) {
        want = -EBADF;
    } else if (p->reading) {
        want = 0;
    } else {
        want = model_set_events(p, R, 0);
        p->reading = want == 0;
    }
    rc = loop_stream_read_start(F.loop, p->fd);
    FUZZ_CHECK(rc == want, "read_start fd %d (type %d): %d, want %d", p->fd,
               p->type, rc, want);
}

static void do_read_stop(int i)
{
    struct pfd *p = &F.p[i];
    int want = p->kind == K_STREAM ? 0 : -EBADF;
    int rc;

    if (p->kind == K_STREAM && p->reading) {
        p->reading = 0;
        (void)model_set_events(p, 0, 0);
    }
    rc = loop_stream_read_stop(F.loop, p->fd);
    FUZZ_CHECK(rc == want, "read_stop fd %d: %d, want %d", p->fd, rc, want);
}

/* ---- the files under the numbers --------------------------------------- */

static void make_readable(int i)
{
    struct pfd *p = &F.p[i];
    uint64_t one = 1;

    switch (p->type) {
    case T_SOCK:
    case T_PIPE_R:
        if (p->partner < 0 || p->hup)
            return;
        FUZZ_CHECK(write(F.p[p->partner].fd, "x", 1) == 1, "write: %d", errno);
        p->pending++;
        break;
    case T_EVENTFD:
        FUZZ_CHECK(write(p->fd, &one, 8) == 8, "eventfd write: %d", errno);
        p->pending = 1;
        break;
    default:
        break;
    }
}

static void drain(struct pfd *p)
{
    char buf[512];

    if (p->type == T_SOCK || p->type == T_PIPE_R || p->type == T_EVENTFD) {
        while (read(p->fd, buf, sizeof(buf)) > 0) {
        }
        p->pending = 0;
    }
}

/* The file under p's number goes away: its partner sees a hangup. */
static void file_gone(struct pfd *p)
{
    if (p->partner >= 0) {
        F.p[p->partner].hup = 1;
        F.p[p->partner].partner = -1;
    }
    p->partner = -1;
    p->hup = 0;
    p->pending = 0;
    /* epoll dropped the registration with the file */
    if (p->tbl != 0)
        p->cons = 0;
}

static void close_behind(int i)
{
    struct pfd *p = &F.p[i];

    if (p->type == T_CLOSED)
        return;
    close(p->fd);
    file_gone(p);
    p->type = T_CLOSED;
}

/* Puts a new eventfd under p's number (dup2), as if the fd had been closed
 * and its number reused without the loop being told. */
static void reopen_behind(int i)
{
    struct pfd *p = &F.p[i];
    int e = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    FUZZ_CHECK(e >= 0, "eventfd: %d", errno);
    if (p->type != T_CLOSED)
        file_gone(p);
    else if (p->tbl != 0)
        p->cons = 0;
    if (e != p->fd) {
        FUZZ_CHECK(dup3(e, p->fd, O_CLOEXEC) == p->fd, "dup3: %d", errno);
        close(e);
    }
    p->type = T_EVENTFD;
}

/* What epoll reports for p (as LOOP_READABLE|LOOP_WRITABLE), 0 if nothing. */
static int model_ready(const struct pfd *p)
{
    int in = 0, out = 0, errhup = 0;
    uint32_t ret = 0;

    if (p->tbl == 0 || !p->cons)
        return 0;
    switch (p->type) {
    case T_SOCK:
        in = p->pending > 0 || p->hup;
        out = 1;
        errhup = p->hup;
        break;
    case T_PIPE_R:
        in = p->pending > 0;
        errhup = p->hup;
        break;
    case T_PIPE_W:
        out = 1;
        errhup = p->hup;
        break;
    case T_EVENTFD:
        in = p->pending > 0;
        out = 1;
        break;
    default:
        return 0;
    }
    if ((p->tbl & R) && in)
        ret |= EPOLLIN;
    if ((p->tbl & W) && out)
        ret |= EPOLLOUT;
    if (errhup)
        ret |= EPOLLHUP;
    if (ret == 0)
        return 0;
    return ((ret & ~(uint32_t)EPOLLIN) ? W : 0) |
           ((ret & ~(uint32_t)EPOLLOUT) ? R : 0);
}

/* ---- run_once -------------------------------------------------------------- */

static void watch_cb(loop_t *loop, int fd, int mask, void *data)
{
    int i = (int)(intptr_t)data;
    struct pfd *p = &F.p[i];
    uint8_t act;

    FUZZ_CHECK(loop == F.loop && F.in_run && i >= 0 && i < NPOOL &&
               fd == p->fd && (mask == R || mask == W),
               "callback fd %d mask %d index %d", fd, mask, i);
    FUZZ_CHECK(!(F.cb_mask[i] & mask), "callback fd %d mask %d twice", fd,
               mask);
    FUZZ_CHECK(p->kind == K_WATCH && (p->dirs & mask) &&
               (mask == R ? p->rcb : p->wcb),
               "callback fd %d mask %d without such a watcher", fd, mask);
    /* A one-shot reader of this fd went before the callbacks ran. */
    if (p->oneshot && (F.expect[i] & p->dirs & R))
        model_fired(i);
    F.cb_mask[i] |= mask;
    F.ncb[i]++;
    act = mask == R ? p->ract : p->wact;
    switch (act % 4) {
    case 1:
        do_remove(i, mask);
        break;
    case 2:
        do_remove(i, R);
        do_remove(i, W);
        break;
    case 3:
        drain(p);
        break;
    default:
        break;
    }
}

static void run_once(void)
{
    loop_event_t ev[MAX_EV];
    int expect[NPOOL], before_kind[NPOOL], before_dirs[NPOOL];
    int before_rcb[NPOOL], before_wcb[NPOOL], before_reading[NPOOL];
    int before_pending[NPOOL], before_type[NPOOL], before_hup[NPOOL];
    uint8_t before_ract[NPOOL];
    int before_oneshot[NPOOL];
    int data_len[NPOOL], eof[NPOOL], err[NPOOL];
    int n, i;

    for (i = 0; i < NPOOL; i++) {
        struct pfd *p = &F.p[i];
        expect[i] = model_ready(p);
        before_kind[i] = p->kind;
        before_dirs[i] = p->dirs;
        before_rcb[i] = p->rcb;
        before_wcb[i] = p->wcb;
        before_ract[i] = p->ract;
        before_oneshot[i] = p->oneshot;
        F.expect[i] = expect[i];
        F.fired[i] = 0;
        before_reading[i] = p->reading;
        before_pending[i] = p->pending;
        before_type[i] = p->type;
        before_hup[i] = p->hup;
        F.io_mask[i] = F.cb_mask[i] = F.ncb[i] = 0;
        data_len[i] = eof[i] = err[i] = 0;
    }
    F.in_run = 1;
    n = loop_run_once(F.loop, 0, ev, MAX_EV);
    F.in_run = 0;
    FUZZ_CHECK(n >= 0, "run_once: %d", n);

    for (int k = 0; k < n; k++) {
        const loop_event_t *e = &ev[k];
        i = pool_index((int)e->fd);
        FUZZ_CHECK(i >= 0, "event kind %lld for fd %lld outside the pool",
                   (long long)e->kind, (long long)e->fd);
        switch (e->kind) {
        case LOOP_EV_IO:
            FUZZ_CHECK(F.io_mask[i] == 0 && e->a > 0 && (e->a & ~(R | W)) == 0,
                       "IO event fd %lld mask %lld (twice?)",
                       (long long)e->fd, (long long)e->a);
            F.io_mask[i] = (int)e->a;
            break;
        case LOOP_EV_DATA:
            FUZZ_CHECK(data_len[i] == 0 && e->a > 0, "DATA fd %lld len %lld",
                       (long long)e->fd, (long long)e->a);
            data_len[i] = (int)e->a;
            break;
        case LOOP_EV_EOF:
            eof[i]++;
            break;
        case LOOP_EV_ERROR:
            FUZZ_CHECK(e->a > 0 && e->b == R, "ERROR fd %lld: %lld/%lld",
                       (long long)e->fd, (long long)e->a, (long long)e->b);
            err[i]++;
            break;
        default:
            FUZZ_CHECK(0, "unexpected event kind %lld", (long long)e->kind);
        }
    }

    for (i = 0; i < NPOOL; i++) {
        struct pfd *p = &F.p[i];
        int ready = expect[i];

        if (before_kind[i] == K_WATCH) {
            int got = ready & before_dirs[i];
            int want_io = 0, want_cb = 0;
            if ((got & R) && !before_rcb[i])
                want_io |= R;
            if ((got & W) && !before_wcb[i])
                want_io |= W;
            if ((got & R) && before_rcb[i])
                want_cb |= R;
            /* the writer callback runs unless the reader callback removed
             * it (actions 1 and 2 of a reader remove the reader / both) */
            if ((got & W) && before_wcb[i] &&
                !((got & R) && before_rcb[i] && before_ract[i] % 4 == 2))
                want_cb |= W;
            FUZZ_CHECK(F.io_mask[i] == want_io && F.cb_mask[i] == want_cb,
                       "fd %d (type %d dirs %d): io %d cb %d, model io %d "
                       "cb %d", p->fd, before_type[i], before_dirs[i],
                       F.io_mask[i], F.cb_mask[i], want_io, want_cb);
            FUZZ_CHECK(!data_len[i] && !eof[i] && !err[i],
                       "stream event on watched fd %d", p->fd);
            if (before_oneshot[i] && (got & R))
                model_fired(i);
        } else {
            FUZZ_CHECK(!F.io_mask[i] && !F.cb_mask[i],
                       "watcher report for fd %d (kind %d)", p->fd,
                       before_kind[i]);
        }

        if (before_kind[i] == K_STREAM) {
            int reads = before_reading[i] && (ready & R);
            FUZZ_CHECK((data_len[i] > 0) + eof[i] + err[i] == reads,
                       "stream fd %d (type %d flags %d ready %d): data %d "
                       "eof %d err %d", p->fd, before_type[i], p->sflags,
                       ready, data_len[i], eof[i], err[i]);
            if (data_len[i]) {
                if (before_type[i] == T_EVENTFD) {
                    FUZZ_CHECK(data_len[i] == 8 && !(p->sflags &
                               LOOP_STREAM_SOCKET), "eventfd DATA %d",
                               data_len[i]);
                    p->pending = 0;
                } else {
                    FUZZ_CHECK(data_len[i] <= before_pending[i],
                               "DATA %d, pending %d", data_len[i],
                               before_pending[i]);
                    p->pending -= data_len[i];
                }
            }
            if (eof[i]) {
                FUZZ_CHECK(before_hup[i] && before_pending[i] == 0 &&
                           (before_type[i] == T_SOCK ||
                            before_type[i] == T_PIPE_R),
                           "EOF on fd %d (type %d hup %d pending %d)", p->fd,
                           before_type[i], before_hup[i], before_pending[i]);
            }
            if (err[i]) {
                /* recv on a non-socket, read on a pipe's write end, or a
                 * peer that went away */
                FUZZ_CHECK((p->sflags & LOOP_STREAM_SOCKET &&
                            before_type[i] != T_SOCK) ||
                           before_type[i] == T_PIPE_W || before_hup[i],
                           "read ERROR on fd %d (type %d)", p->fd,
                           before_type[i]);
            }
            if (eof[i] || err[i]) {
                p->reading = 0;
                (void)model_set_events(p, 0, 0);
            }
        } else {
            FUZZ_CHECK(!data_len[i] && !eof[i] && !err[i],
                       "stream event for fd %d (kind %d)", p->fd,
                       before_kind[i]);
        }
    }
}

/* ---- setup ----------------------------------------------------------------- */

static void setup(void)
{
    int sv[2], i;

    memset(&F, 0, sizeof(F));
    FUZZ_CHECK(loop_new(&F.loop) == 0, "loop_new");
    for (i = 0; i < 4; i += 2) {
        FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
                              SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        F.p[i].fd = sv[0];
        F.p[i + 1].fd = sv[1];
        F.p[i].type = F.p[i + 1].type = T_SOCK;
        F.p[i].partner = i + 1;
        F.p[i + 1].partner = i;
    }
    FUZZ_CHECK(pipe2(sv, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    F.p[4].fd = sv[0];
    F.p[4].type = T_PIPE_R;
    F.p[4].partner = 5;
    F.p[5].fd = sv[1];
    F.p[5].type = T_PIPE_W;
    F.p[5].partner = 4;
    F.p[6].fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    F.p[6].type = T_EVENTFD;
    F.p[6].partner = -1;
    F.p[7].fd = memfd_create("fuzz", MFD_CLOEXEC);
    F.p[7].type = T_FILE;
    F.p[7].partner = -1;
    /* a number that was open and is not any more */
    F.p[8].fd = eventfd(0, EFD_CLOEXEC);
    F.p[8].type = T_CLOSED;
    F.p[8].partner = -1;
    for (i = 0; i < NPOOL; i++) {
        FUZZ_CHECK(F.p[i].fd >= 0, "pool fd %d: %d", i, errno);
        F.p[i].cons = 1;
    }
    close(F.p[8].fd);
}

static void teardown(void)
{
    int i;

    loop_free(F.loop);
    for (i = 0; i < NPOOL; i++)
        if (F.p[i].type != T_CLOSED)
            close(F.p[i].fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fin in = {data, size};
    int ops = 0;

    setup();
    while (fin_more(&in) && ops++ < MAX_OPS) {
        uint8_t op = fin_u8(&in);
        uint8_t b = fin_u8(&in);
        int i = b % NPOOL;
        uint8_t act = (uint8_t)(b / NPOOL);

        switch (op % 16) {
        case 0:
        case 1:
            do_add(i, R, act & 1, (uint8_t)(act >> 1));
            break;
        case 2:
            do_add(i, W, act & 1, (uint8_t)(act >> 1));
            break;
        case 3:
            do_remove(i, R);
            break;
        case 4:
            do_remove(i, W);
            break;
        case 5:
            do_stream_open(i, act & 1 ? LOOP_STREAM_SOCKET : 0);
            break;
        case 6:
            do_stream_close(i);
            break;
        case 7:
            do_read_start(i);
            break;
        case 8:
            do_read_stop(i);
            break;
        case 9:
        case 10:
            make_readable(i);
            break;
        case 11:
            drain(&F.p[i]);
            break;
        case 12:
            if ((act & 3) == 0)
                close_behind(i);
            else if ((act & 3) == 1)
                reopen_behind(i);
            break;
        case 13:
            run_once();
            break;
        case 14:
            do_wait(i, act & 1);
            break;
        case 15: {
            /* numbers the pool does not have: negative, closed, huge */
            static const int bad[] = {-1, -100, 9999, 100000000, 0x7fffffff};
            int fd = bad[act % 5];
            FUZZ_CHECK(loop_add_reader(F.loop, fd, NULL, NULL) == -EBADF,
                       "add_reader(%d)", fd);
            FUZZ_CHECK(loop_add_writer(F.loop, fd, watch_cb, NULL) == -EBADF,
                       "add_writer(%d)", fd);
            FUZZ_CHECK(loop_remove_reader(F.loop, fd) == (fd < 0 ? -EBADF : 0),
                       "remove_reader(%d)", fd);
            FUZZ_CHECK(loop_stream_open(F.loop, fd, 0) == -EBADF,
                       "stream_open(%d)", fd);
            FUZZ_CHECK(loop_stream_close(F.loop, fd) == -EBADF,
                       "stream_close(%d)", fd);
            FUZZ_CHECK(loop_stream_read_start(F.loop, fd) == -EBADF,
                       "read_start(%d)", fd);
            FUZZ_CHECK(loop_stream_open(F.loop, fd, 0x40) == -EINVAL,
                       "stream_open(%d, bad flags)", fd);
            break;
        }
        }
    }
    run_once();
    teardown();
    return 0;
}
