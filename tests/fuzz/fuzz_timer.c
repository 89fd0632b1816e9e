/*
 * fuzz_timer.c — libFuzzer harness for the timer heap and the ready ring
 * (timer.c, core.c).
 *
 * The input decodes into a sequence of call_at / call_later / cancel /
 * call_soon / run_once operations.  A model (a plain array, scanned for the
 * minimum) follows along in lockstep: every timer callback and every ready
 * callback checks that it is the one the model expects next, and every
 * run_once is checked for its LOOP_EV_TIMER events.  What is checked:
 *   - fire order is (deadline, scheduling order); timers scheduled during an
 *     iteration wait for the next one; a fn == NULL timer that finds the
 *     event array full stops the iteration's timers;
 *   - ids are positive and never repeat; cancel says 0 exactly for pending
 *     timers and -ENOENT for fired, cancelled or made-up ids, also from
 *     inside callbacks;
 *   - NaN and infinite times are refused with -EINVAL;
 *   - callbacks queued before an iteration run in it, FIFO, after its
 *     timers; those queued while it runs wait; run_once is not reentrant.
 *
 * Time is real (CLOCK_MONOTONIC), so the harness only uses deadlines that
 * are certainly due (1000 s in the past, or "now" for call_later(<= 0)) or
 * certainly not (a million seconds ahead).
 */
#include "casyncio.h"
#include "fuzz_common.h"

#include <errno.h>
#include <math.h>
#include <time.h>

#define MAX_TIMERS 512
#define MAX_SOON   1024
#define MAX_EV     16
#define MAX_OPS    2000

enum { CLS_PAST, CLS_NOW, CLS_FUTURE };
enum { ST_PENDING, ST_FIRED, ST_CANCELLED };
enum { ACT_NONE, ACT_CANCEL, ACT_SCHEDULE, ACT_SOON, ACT_COUNT };

struct mtimer {
    int64_t id;
    int64_t deadline;   /* the library's key; for CLS_NOW a lower bound read
                           just before the call, which orders the same way */
    uint64_t seq;
    uint8_t cls, state, has_cb, action;
    uint16_t arg;
};

struct msoon {
    int tag;
    uint8_t action;     /* 0 none, 1 queue another, 2 cancel, 3 reenter, 4 stop */
    uint16_t arg;
};

static struct model {
    loop_t *loop;
    struct mtimer t[MAX_TIMERS];
    int nt, pending;
    uint64_t tseq;
    struct msoon soon[MAX_SOON];   /* FIFO: [soon_head, soon_tail) */
    int soon_head, soon_tail;
    double base;                   /* past deadlines: base + k * 1e-4 */
    int64_t emitted_total;
    /* during one iteration */
    int in_run, timers_done, room, emitted, ready_quota;
    uint64_t seq_limit;
    int64_t expect[64];      /* loop_run() iterations have room for 64 */
} M;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The library's seconds -> ns conversion for an absolute time. */
static int64_t when_to_ns(double when)
{
    double ns = ceil(when * 1e9);
    if (ns <= 0)
        return 0;
    if (ns >= 9.2e18)
        return INT64_MAX;
    return (int64_t)ns;
}

static int min_pending(void)
{
    int best = -1, i;

    for (i = 0; i < M.nt; i++) {
        const struct mtimer *x = &M.t[i];
        if (x->state != ST_PENDING)
            continue;
        if (best < 0 || x->deadline < M.t[best].deadline ||
            (x->deadline == M.t[best].deadline && x->seq < M.t[best].seq))
            best = i;
    }
    return best;
}

static void timer_cb(loop_t *loop, void *data);
static void soon_cb(loop_t *loop, void *data);

/* Schedules a timer of class cls on both sides; returns its index or -1 when
 * the model is full. */
static int schedule(int cls, uint8_t k, int has_cb, uint8_t action,
                    uint16_t arg, int use_later)
{
    struct mtimer *x;
    int i = M.nt;
    int64_t id, j;
    double when;

    if (M.nt == MAX_TIMERS)
        return -1;
    x = &M.t[i];
    memset(x, 0, sizeof(*x));
    x->cls = (uint8_t)cls;
    x->has_cb = (uint8_t)has_cb;
    x->action = action;
    x->arg = arg;
    loop_cb fn = has_cb ? timer_cb : NULL;
    void *fdata = (void *)(intptr_t)i;

    switch (cls) {
    case CLS_PAST:
        when = M.base + k * 1e-4;
        x->deadline = when_to_ns(when);
        id = loop_call_at(M.loop, when, fn, fdata);
        break;
    case CLS_NOW:
        x->deadline = now_ns();
        /* a delay of zero or below means "now" */
        id = loop_call_later(M.loop, use_later ? -(double)k : 0.0, fn, fdata);
        break;
    default:
        x->deadline = INT64_MAX;
        if (use_later)
            id = loop_call_later(M.loop, 1e6 + k, fn, fdata);
        else
            id = loop_call_at(M.loop, loop_time(M.loop) + 1e6 + k, fn, fdata);
        break;
    }
    FUZZ_CHECK(id > 0, "schedule class %d returned %lld", cls, (long long)id);
    for (j = 0; j < M.nt; j++)
        FUZZ_CHECK(M.t[j].id != id, "id %lld reused (timer %lld)",
                   (long long)id, (long long)j);
    x->id = id;
    x->seq = M.tseq++;
    x->state = ST_PENDING;
    M.nt++;
    M.pending++;
    return i;
}

static void cancel_index(int j)
{
    struct mtimer *x = &M.t[j];
    int want = x->state == ST_PENDING ? 0 : -ENOENT;
    int rc = loop_timer_cancel(M.loop, x->id);

    FUZZ_CHECK(rc == want, "cancel timer %d (state %d): %d, want %d", j,
               x->state, rc, want);
    if (rc == 0) {
        x->state = ST_CANCELLED;
        M.pending--;
    }
}

static void cancel_id(int64_t id)
{
    int want = -ENOENT, i, rc;

    for (i = 0; i < M.nt; i++) {
        if (M.t[i].id == id && M.t[i].state == ST_PENDING) {
            want = 0;
            break;
        }
    }
    rc = loop_timer_cancel(M.loop, id);
    FUZZ_CHECK(rc == want, "cancel id %lld: %d, want %d", (long long)id, rc,
               want);
    if (rc == 0) {
        M.t[i].state = ST_CANCELLED;
        M.pending--;
    }
}

static void queue_soon(uint8_t action, uint16_t arg)
{
    struct msoon *s;

    if (M.soon_tail == MAX_SOON)
        return;
    s = &M.soon[M.soon_tail];
    s->tag = M.soon_tail;
    s->action = action;
    s->arg = arg;
    M.soon_tail++;
    FUZZ_CHECK(loop_call_soon(M.loop, soon_cb, (void *)(intptr_t)s->tag) == 0,
               "call_soon failed");
}

/* ---- lockstep with one iteration ----------------------------------------- */

static void pop_as_event(int idx)
{
    struct mtimer *x = &M.t[idx];

    x->state = ST_FIRED;
    M.pending--;
    M.expect[M.emitted++] = x->id;
    M.emitted_total++;
}

/* The model's timers phase up to its end: fn == NULL timers become expected
 * events; a due timer with a callback here means the library skipped it. */
static void finish_timers(void)
{
    while (!M.timers_done) {
        int idx = min_pending();
        struct mtimer *x;

        if (idx < 0) {
            M.timers_done = 1;
            break;
        }
        x = &M.t[idx];
        if (x->cls == CLS_FUTURE || x->seq >= M.seq_limit ||
            (!x->has_cb && M.emitted >= M.room)) {
            M.timers_done = 1;
            break;
        }
        FUZZ_CHECK(!x->has_cb, "due timer %d (id %lld) was not fired", idx,
                   (long long)x->id);
        pop_as_event(idx);
    }
}

static void check_emitted(loop_t *loop)
{
    loop_stats_t st;

    loop_stats(loop, &st);
    FUZZ_CHECK(st.events_emitted == M.emitted_total,
               "events emitted %lld, model %lld",
               (long long)st.events_emitted, (long long)M.emitted_total);
}

static void timer_cb(loop_t *loop, void *data)
{
    int i = (int)(intptr_t)data;
    struct mtimer *x = &M.t[i];

    FUZZ_CHECK(loop == M.loop && M.in_run, "timer callback outside run_once");
    FUZZ_CHECK(!M.timers_done, "timer %d fired after the timers phase", i);
    for (;;) {
        int idx = min_pending();
        struct mtimer *top;

        FUZZ_CHECK(idx >= 0, "timer %d fired, model has none pending", i);
        top = &M.t[idx];
        FUZZ_CHECK(top->cls != CLS_FUTURE && top->seq < M.seq_limit,
                   "timer %d fired, model's next (%d) is not due", i, idx);
        if (top->has_cb) {
            FUZZ_CHECK(idx == i, "timer %d fired, model expected %d", i, idx);
            break;
        }
        FUZZ_CHECK(M.emitted < M.room,
                   "timer %d fired after a full event array stopped timers", i);
        pop_as_event(idx);
    }
    x->state = ST_FIRED;
    M.pending--;
    check_emitted(loop);
    FUZZ_CHECK(loop_timer_count(loop) == (size_t)M.pending,
               "timer count %zu, model %d", loop_timer_count(loop), M.pending);

    switch (x->action % ACT_COUNT) {
    case ACT_CANCEL:
        if (M.nt > 0)
            cancel_index(x->arg % M.nt);
        break;
    case ACT_SCHEDULE:
        /* Due at once, but scheduled during the iteration: waits. */
        schedule(x->arg & 1 ? CLS_NOW : CLS_PAST, (uint8_t)(x->arg >> 1),
                 x->arg & 2, ACT_NONE, 0, x->arg & 4);
        break;
    case ACT_SOON:
        queue_soon((uint8_t)(x->arg % 4), (uint16_t)(x->arg >> 2));
        break;
    default:
        break;
    }
}

static void soon_cb(loop_t *loop, void *data)
{
    int tag = (int)(intptr_t)data;
    struct msoon *s;
    loop_event_t ev[2];

    FUZZ_CHECK(loop == M.loop && M.in_run, "ready callback outside run_once");
    finish_timers();
    FUZZ_CHECK(M.ready_quota > 0, "callback %d ran; it was queued during the "
               "iteration", tag);
    FUZZ_CHECK(M.soon_head < M.soon_tail && M.soon[M.soon_head].tag == tag,
               "callback %d ran, model expected %d", tag,
               M.soon_head < M.soon_tail ? M.soon[M.soon_head].tag : -1);
    s = &M.soon[M.soon_head++];
    M.ready_quota--;

    switch (s->action) {
    case 1:
        queue_soon((uint8_t)(s->arg % 3), (uint16_t)(s->arg >> 2));
        break;
    case 2:
        if (M.nt > 0)
            cancel_index(s->arg % M.nt);
        break;
    case 3:
        FUZZ_CHECK(loop_run_once(loop, 0, ev, 2) == -EBUSY,
                   "run_once inside run_once");
        break;
    case 4:
        loop_stop(loop);
        break;
    default:
        break;
    }
}

static void begin_run(int room)
{
    M.in_run = 1;
    M.timers_done = 0;
    M.room = room;
    M.emitted = 0;
    M.seq_limit = M.tseq;
    M.ready_quota = M.soon_tail - M.soon_head;
}

static void end_run(void)
{
    finish_timers();
    FUZZ_CHECK(M.ready_quota == 0, "%d queued callbacks did not run",
               M.ready_quota);
    M.in_run = 0;
}

static void run_once(int timeout, int max)
{
    loop_event_t ev[MAX_EV];
    int n, i;

    begin_run(max);
    n = loop_run_once(M.loop, timeout, ev, max);
    end_run();
    FUZZ_CHECK(n == M.emitted, "run_once returned %d, model %d", n, M.emitted);
    for (i = 0; i < n; i++) {
        FUZZ_CHECK(ev[i].kind == LOOP_EV_TIMER && ev[i].fd == -1 &&
                   ev[i].a == M.expect[i] && ev[i].b == 0,
                   "event %d: kind %lld id %lld, model id %lld", i,
                   (long long)ev[i].kind, (long long)ev[i].a,
                   (long long)M.expect[i]);
    }
    check_emitted(M.loop);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fin in = {data, size};
    int ops = 0;

    memset(&M, 0, sizeof(M));
    FUZZ_CHECK(loop_new(&M.loop) == 0, "loop_new");
    M.base = loop_time(M.loop) - 1000.0;

    while (fin_more(&in) && ops++ < MAX_OPS) {
        uint8_t op = fin_u8(&in);
        uint8_t b = fin_u8(&in);

        switch (op % 12) {
        case 0:
        case 1: {
            uint16_t arg = fin_u16(&in);
            schedule(CLS_PAST, fin_u8(&in), b & 1, (uint8_t)(b >> 1), arg, 0);
            break;
        }
        case 2: {
            uint16_t arg = fin_u16(&in);
            schedule(CLS_NOW, fin_u8(&in) % 4, b & 1, (uint8_t)(b >> 1), arg,
                     b & 0x80);
            break;
        }
        case 3:
            schedule(CLS_FUTURE, fin_u8(&in), b & 1, ACT_NONE, 0, b & 2);
            break;
        case 4:
            if (M.nt > 0)
                cancel_index(fin_u16(&in) % M.nt);
            break;
        case 5: {
            /* Made-up ids, and ids a slot or generation away from real ones */
            int64_t id = (int64_t)fin_u64(&in);
            if ((b & 3) && M.nt > 0) {
                int64_t real = M.t[fin_u16(&in) % M.nt].id;
                id = (b & 1) ? real + ((int64_t)1 << 32) : real + 1;
            }
            cancel_id(id);
            break;
        }
        case 6:
            queue_soon(b % 4, fin_u16(&in));
            break;
        case 7:
        case 8:
            run_once(0, 1 + b % MAX_EV);
            break;
        case 9:
            /* The wakeup makes a blocking poll return at once. */
            FUZZ_CHECK(loop_wakeup(M.loop) == 0, "wakeup");
            run_once(-1, 1 + b % MAX_EV);
            break;
        case 10: {
            static const double bad[] = {NAN, INFINITY, -INFINITY};
            double v = bad[b % 3];
            FUZZ_CHECK(loop_call_at(M.loop, v, NULL, NULL) == -EINVAL,
                       "call_at(%f)", v);
            FUZZ_CHECK(loop_call_later(M.loop, v, timer_cb, NULL) == -EINVAL,
                       "call_later(%f)", v);
            break;
        }
        case 11:
            /* loop_run() until a stop queued now: one iteration whose
             * events go nowhere. */
            queue_soon(4, 0);
            begin_run(64);
            FUZZ_CHECK(loop_run(M.loop) == 0, "loop_run");
            end_run();
            break;
        }
        FUZZ_CHECK(loop_timer_count(M.loop) == (size_t)M.pending,
                   "timer count %zu, model %d after op %d",
                   loop_timer_count(M.loop), M.pending, op % 12);
    }
    /* Fire whatever is due, then free the rest with the loop. */
    run_once(0, MAX_EV);
    loop_free(M.loop);
    return 0;
}
