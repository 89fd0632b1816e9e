/*
 * timer.c — a binary min-heap of timers ordered by (deadline, sequence).
 *
 * Nodes live in a slab array with a freelist; the heap holds (deadline, seq,
 * slot) entries and each node remembers its heap index, so cancelling is a
 * direct O(log n) removal.  Times are CLOCK_MONOTONIC nanoseconds.
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static inline int64_t timer_id(uint32_t gen, uint32_t slot)
{
    return (int64_t)(((uint64_t)gen << 32) | slot);
}

static inline bool entry_before(const struct timer_entry *a,
                                const struct timer_entry *b)
{
    return a->deadline < b->deadline ||
           (a->deadline == b->deadline && a->seq < b->seq);
}

/* Puts entry e at heap index i and tells its node where it is. */
static inline void heap_place(loop_t *loop, uint32_t i, struct timer_entry e)
{
    loop->theap[i] = e;
    loop->tnodes[e.slot].pos = i;
}

static void sift_up(loop_t *loop, uint32_t i)
{
    struct timer_entry e = loop->theap[i];

    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!entry_before(&e, &loop->theap[parent]))
            break;
        heap_place(loop, i, loop->theap[parent]);
        i = parent;
    }
    heap_place(loop, i, e);
}

static void sift_down(loop_t *loop, uint32_t i)
{
    struct timer_entry e = loop->theap[i];
    uint32_t n = loop->tlen;

    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && entry_before(&loop->theap[c + 1], &loop->theap[c]))
            c++;
        if (!entry_before(&loop->theap[c], &e))
            break;
        heap_place(loop, i, loop->theap[c]);
        i = c;
    }
    heap_place(loop, i, e);
}

/* Removes the entry at heap index i (the last entry fills the hole). */
static void heap_remove(loop_t *loop, uint32_t i)
{
    uint32_t last = --loop->tlen;

    if (i != last) {
        struct timer_entry moved = loop->theap[last];
        heap_place(loop, i, moved);
        if (i > 0 && entry_before(&moved, &loop->theap[(i - 1) / 2]))
            sift_up(loop, i);
        else
            sift_down(loop, i);
    }
}

/* Returns a node to the freelist; the new gen invalidates the old id. */
static void node_release(loop_t *loop, uint32_t slot)
{
    struct timer_node *t = &loop->tnodes[slot];

    t->pos = TIMER_POS_FREE;
    t->fn = NULL;
    t->data = NULL;
    if (t->gen >= TIMER_GEN_MAX)
        return;   /* retired: reusing it would repeat an id */
    t->gen++;
    t->next_free = loop->tfree;
    loop->tfree = slot;
}

static int slab_grow(loop_t *loop)
{
    uint32_t cap = loop->tcap ? loop->tcap * 2 : 64;
    struct timer_node *nodes;
    struct timer_entry *heap;

    if (cap <= loop->tcap || cap >= TIMER_NO_SLOT)
        return -ENOMEM;
    nodes = realloc(loop->tnodes, (size_t)cap * sizeof(*nodes));
    if (nodes == NULL)
        return -ENOMEM;
    loop->tnodes = nodes;
    heap = realloc(loop->theap, (size_t)cap * sizeof(*heap));
    if (heap == NULL)
        return -ENOMEM;   /* nodes stay larger; harmless */
    loop->theap = heap;
    loop->tcap = cap;
    return 0;
}

static int64_t timer_insert(loop_t *loop, int64_t deadline, loop_cb fn,
                            void *data)
{
    uint32_t slot;
    struct timer_node *t;
    struct timer_entry e;

    if (loop->tfree != TIMER_NO_SLOT) {
        slot = loop->tfree;
        loop->tfree = loop->tnodes[slot].next_free;
    } else {
        if (loop->tused == loop->tcap) {
            int rc = slab_grow(loop);
            if (rc < 0)
                return rc;
        }
        slot = loop->tused++;
        loop->tnodes[slot].gen = 1;
    }
    t = &loop->tnodes[slot];
    t->fn = fn;
    t->data = data;
    t->next_free = TIMER_NO_SLOT;

    e.deadline = deadline;
    e.seq = loop->tseq++;
    e.slot = slot;
    loop->theap[loop->tlen] = e;
    t->pos = loop->tlen++;
    sift_up(loop, t->pos);
    loop__sync_hint(loop);
    return timer_id(t->gen, slot);
}

/* Seconds (finite) to ns, rounded up so a timer never fires before the time
 * it was asked for; saturates instead of overflowing. */
static int64_t seconds_to_ns(double s)
{
    double ns = ceil(s * 1e9);

    if (ns <= 0)
        return 0;
    if (ns >= 9.2e18)
        return INT64_MAX;
    return (int64_t)ns;
}

int64_t loop_call_later(loop_t *loop, double delay, loop_cb fn, void *data)
{
    int64_t now, d;

    if (loop == NULL || !isfinite(delay))
        return -EINVAL;
    now = loop__now_ns();
    d = delay > 0 ? seconds_to_ns(delay) : 0;
    return timer_insert(loop, d > INT64_MAX - now ? INT64_MAX : now + d, fn, data);
}

int64_t loop_call_at(loop_t *loop, double when, loop_cb fn, void *data)
{
    if (loop == NULL || !isfinite(when))
        return -EINVAL;
    return timer_insert(loop, seconds_to_ns(when), fn, data);
}

int loop_timer_cancel(loop_t *loop, int64_t id)
{
    uint32_t slot, gen;
    struct timer_node *t;

    if (loop == NULL)
        return -EINVAL;
    if (id <= 0)
        return -ENOENT;
    slot = (uint32_t)id;
    gen = (uint32_t)((uint64_t)id >> 32);
    if (slot >= loop->tused)
        return -ENOENT;
    t = &loop->tnodes[slot];
    if (t->pos == TIMER_POS_FREE || t->gen != gen)
        return -ENOENT;
    heap_remove(loop, t->pos);
    node_release(loop, slot);
    loop__sync_hint(loop);
    return 0;
}

size_t loop_timer_count(const loop_t *loop)
{
    return loop != NULL ? loop->tlen : 0;
}

bool timer__next(const loop_t *loop, int64_t *deadline)
{
    if (loop->tlen == 0)
        return false;
    *deadline = loop->theap[0].deadline;
    return true;
}

void timer__run(loop_t *loop, int64_t now)
{
    /* Timers scheduled from here on (by timer callbacks) wait for the next
     * iteration, even if already due: a callback that re-arms itself with a
     * zero delay must not keep this loop going forever. */
    uint64_t seq_limit = loop->tseq;

    while (loop->tlen > 0) {
        struct timer_entry top = loop->theap[0];
        struct timer_node *t = &loop->tnodes[top.slot];
        loop_cb fn = t->fn;
        void *data = t->data;
        int64_t id = timer_id(t->gen, top.slot);

        if (top.deadline > now || top.seq >= seq_limit)
            break;
        /* No room for the event: it stays at the top of the heap, already
         * due, so the next call polls with a zero timeout. */
        if (fn == NULL && !loop__has_room(loop))
            break;
        heap_remove(loop, 0);
        node_release(loop, top.slot);
        loop->stats.timers_fired++;
        if (fn != NULL) {
            loop->stats.callbacks_run++;
            fn(loop, data);
        } else {
            loop__emit(loop, LOOP_EV_TIMER, -1, id, 0);
        }
    }
}

void timer__free_all(loop_t *loop)
{
    free(loop->tnodes);
    free(loop->theap);
    loop->tnodes = NULL;
    loop->theap = NULL;
    loop->tcap = loop->tused = loop->tlen = 0;
    loop->tfree = TIMER_NO_SLOT;
    loop__sync_hint(loop);
}
