/*
 * internal.h — private structures shared by the libcasyncio .c files.
 *
 * Nothing here is part of the ABI: the binding sees only casyncio.h and an
 * opaque loop_t.  Every struct is sized for the hot path: the per-iteration
 * work (poll, dispatch, timers, ready queue) touches only memory that was
 * allocated when a registration was made, never malloc()s.
 */
#ifndef CASYNCIO_INTERNAL_H
#define CASYNCIO_INTERNAL_H

/* Every .c file includes this header first, so this comes before any system
 * header: pidfd_open, P_PIDFD, syscall(), pipe2 and friends are GNU. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "casyncio.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/types.h>

/* ---- sizes ------------------------------------------------------------- */

#define LOOP_ARENA_SIZE        (1u << 20)     /* read arena, one per loop     */
#define LOOP_READ_MIN          (64u * 1024)   /* skip reads below this room   */
#define LOOP_READ_SIZE_DEFAULT (256u * 1024)
#define LOOP_HIGH_DEFAULT      (64u * 1024)
#define LOOP_LOW_DEFAULT       (16u * 1024)
#define LOOP_OBUF_MIN          (16u * 1024)   /* first out-buffer allocation  */
#define LOOP_POLL_MAX          256            /* epoll_event array in loop    */
#define LOOP_READY_MIN         64             /* initial ready ring capacity  */

/* The most loop_event_t that handling one epoll event can produce: a stream
 * may report DATA/EOF/ERROR for its read side and RESUME + DRAINED (or one
 * ERROR) for its write side. */
#define LOOP_EV_PER_FD 3

/* Events that did not fit the caller's array when max < LOOP_EV_PER_FD.  A
 * single epoll event overflows by at most LOOP_EV_PER_FD - 1. */
#define LOOP_SPILL_MAX 4

/* epoll_event.data.u64 of the wakeup eventfd; fd slots use gen << 32 | fd,
 * and no fd is 0xffffffff. */
#define LOOP_WAKE_TAG UINT64_MAX

/* ---- ready ring (core.c) ----------------------------------------------- */

struct ready_item {
    loop_cb fn;
    void *data;
};

/* ---- timers (timer.c) -------------------------------------------------- */

/* Slab node.  A timer id is (gen << 32 | slot): gen changes every time the
 * slot is freed, so an old id no longer matches and cancel needs no hash
 * table.  A slot whose gen reaches TIMER_GEN_MAX is retired, never reused,
 * which keeps ids unique for the life of the loop. */
struct timer_node {
    loop_cb fn;
    void *data;
    uint32_t gen;
    uint32_t pos;        /* index in the heap, TIMER_POS_FREE when free */
    uint32_t next_free;  /* freelist link while free                    */
};

#define TIMER_POS_FREE UINT32_MAX
#define TIMER_NO_SLOT  UINT32_MAX
#define TIMER_GEN_MAX  0x7fffffffu   /* ids stay positive int64 */

/* Heap entries carry the sort key so sifting does not chase node pointers. */
struct timer_entry {
    int64_t deadline;   /* CLOCK_MONOTONIC ns */
    uint64_t seq;       /* scheduling order, breaks deadline ties */
    uint32_t slot;
};

/* ---- fd slots (io.c, stream.c, process.c) ------------------------------ */

enum {
    SLOT_FREE = 0,
    SLOT_WATCH,    /* add_reader / add_writer     */
    SLOT_STREAM,   /* loop_stream_open            */
    SLOT_CHILD,    /* a pidfd of loop_child_watch */
};

struct watch_state {
    loop_io_cb rfn, wfn;
    void *rdata, *wdata;
    uint8_t dirs;          /* LOOP_READABLE | LOOP_WRITABLE present */
    uint8_t roneshot;      /* the reader goes after one event
                              (loop_wait_readable)                  */
};

struct stream_state {
    char *obuf;            /* out-buffer; bytes live at [ostart, ostart+olen) */
    size_t ostart, olen, ocap;
    size_t high, low;
    uint32_t read_size;    /* <= the arena's size                           */
    int write_err;         /* errno of a failed write; writes are over      */
    uint8_t flags;         /* LOOP_STREAM_*                                 */
    uint8_t reading;
    uint8_t by_caller;     /* reads are the caller's: report READABLE     */
    uint8_t above_high;    /* went above high; RESUME owed at <= low        */
    uint8_t shut_pending;  /* shutdown_write asked, waits for empty buffer  */
    uint8_t shut_done;
};

struct child_state {
    pid_t pid;
    loop_child_cb fn;
    void *data;
};

/* One per fd number, in an array indexed by fd.  `events` is what epoll
 * currently has for this fd (0: not registered, or parked).  `gen` is bumped
 * whenever the registration goes away, and is part of the epoll tag, so
 * events fetched in the same batch for a registration that was since removed
 * are ignored.  `parked`: epoll still holds a registration for the fd that
 * EPOLLONESHOT disarmed (a one-shot reader fired); it reports nothing, and
 * the next registration re-arms it with EPOLL_CTL_MOD instead of an ADD
 * after a DEL. */
struct fd_slot {
    uint32_t events;
    uint32_t gen;
    uint8_t kind;
    uint8_t parked;
    union {
        struct watch_state w;
        struct stream_state s;
        struct child_state c;
    } u;
};

struct child_ref {
    pid_t pid;
    int pidfd;
};

/* ---- the loop ---------------------------------------------------------- */

struct loop {
    int epfd;
    int wakefd;
    bool in_run;           /* loop_run_once is not reentrant              */
    bool stop;

    /* ready ring: power-of-two capacity */
    struct ready_item *ready;
    size_t ready_cap, ready_head, ready_len;

    /* timers */
    struct timer_node *tnodes;
    struct timer_entry *theap;
    uint32_t tcap;          /* nodes allocated (heap has the same room) */
    uint32_t tused;         /* nodes ever handed out                    */
    uint32_t tlen;          /* heap length = pending timers             */
    uint32_t tfree;         /* freelist head                            */
    uint64_t tseq;

    /* fd table */
    struct fd_slot *slots;
    int nslots;

    /* watched children, for unwatch by pid and for loop_free */
    struct child_ref *children;
    size_t nchildren, children_cap;

    /* read arena: reset at the start of every loop_run_once */
    char *arena;
    size_t arena_size, arena_used;

    /* the caller's event array during loop_run_once */
    loop_event_t *out;
    int out_n, out_max;
    loop_event_t spill[LOOP_SPILL_MAX];
    int spill_n;

    loop_stats_t stats;    /* fds and timers are filled by loop_stats() */
    /* health: when the current batch and iteration began (CLOCK_MONOTONIC
     * ns); batch_start 0: no batch to close (before the first poll, paused) */
    int64_t batch_start, iter_start;
    /* fds registered in epoll, the wakeup fd aside */
    int nwatched;
    /* loop_poll_hint(): kept current by loop__sync_hint() */
    int64_t hint[2];
    struct epoll_event pollbuf[LOOP_POLL_MAX];
};

/* ---- invariants ---------------------------------------------------------- */

/* A branch that only a bug in the library can reach (never the caller's
 * input, which gets a -errno): assert() in debug, sanitizer and fuzz builds;
 * in release builds (NDEBUG) the event it would lose is counted in
 * loop_stats' events_dropped, so that the library still never aborts. */
#define LOOP_UNREACHABLE(loop, why)                                         \
    do {                                                                    \
        assert(!(why));                                                     \
        (loop)->stats.events_dropped++;                                     \
    } while (0)

/* ---- core.c ------------------------------------------------------------ */

int64_t loop__now_ns(void);
/* Appends an event for the binding (to the caller's array, or the spill). */
void loop__emit(loop_t *loop, int kind, int64_t fd, int64_t a, int64_t b);
static inline bool loop__has_room(const loop_t *loop)
{
    return loop->out_n < loop->out_max;
}

/* ---- timer.c ----------------------------------------------------------- */

/* Deadline of the earliest timer; false if there is none. */
bool timer__next(const loop_t *loop, int64_t *deadline);
/* Fires timers due at `now`; stops when a fn == NULL timer finds no room. */
void timer__run(loop_t *loop, int64_t now);
void timer__free_all(loop_t *loop);

/* Refreshes what loop_poll_hint() shows; called wherever fds, timers, C
 * callbacks or spilled events come and go. */
static inline void loop__sync_hint(loop_t *loop)
{
    int64_t deadline;

    loop->hint[0] = (int64_t)loop->nwatched + (int64_t)loop->ready_len +
                    loop->spill_n;
    loop->hint[1] = timer__next(loop, &deadline) ? deadline : INT64_MAX;
}

/* ---- io.c -------------------------------------------------------------- */

static inline struct fd_slot *io__slot(const loop_t *loop, int fd)
{
    return (fd >= 0 && fd < loop->nslots) ? &loop->slots[fd] : NULL;
}
/* Like io__slot but grows the table; NULL only on ENOMEM. */
struct fd_slot *io__slot_grow(loop_t *loop, int fd);
/* Makes epoll's interest for fd equal `want` (EPOLLIN/EPOLLOUT bits).
 * force: issue the syscall even if the mask looks unchanged, to notice an fd
 * that was closed (and maybe reopened) behind our back. */
int io__set_events(loop_t *loop, int fd, struct fd_slot *s, uint32_t want,
                   bool force);
/* Handles one event returned by epoll. */
void io__dispatch(loop_t *loop, const struct epoll_event *ev);
void io__free_all(loop_t *loop);

/* ---- stream.c ---------------------------------------------------------- */

void stream__dispatch(loop_t *loop, int fd, struct fd_slot *s, int ready);
void stream__release(struct fd_slot *s);

/* ---- process.c --------------------------------------------------------- */

void child__dispatch(loop_t *loop, int fd, struct fd_slot *s);
void child__free_all(loop_t *loop);

#endif /* CASYNCIO_INTERNAL_H */
