/*
 * casyncio.h — the public C API of libcasyncio, the engine under py_async_lib.
 *
 * A single-threaded event loop on epoll: a ready queue of C callbacks, a timer
 * heap, fd watchers, C-side stream I/O (recv into a read arena, send-now with
 * an out-buffer and back-pressure), a thread-safe wakeup, and child processes
 * watched through pidfds.  No Python: a C program can use it alone.
 *
 * Two ways to be told that something happened, chosen per registration:
 *   - give a callback `fn`: the loop calls it from loop_run_once();
 *   - give fn == NULL: loop_run_once() appends a loop_event_t to the array the
 *     caller passed in, so that a binding (py_async_lib) handles a whole
 *     iteration's worth of events after one crossing.
 *
 * Every function that can fail returns a negative errno (or NULL for the
 * constructor-like getters) and never prints or aborts.  Only loop_wakeup()
 * may be called from another thread; everything else belongs to the thread
 * that runs the loop.
 *
 * What is stable.  The library's soname is libcasyncio.so.0 (pkg-config
 * name: casyncio); within one soname a program built against an older
 * casyncio.h keeps working with a newer library:
 *   - functions, their signatures and their documented behaviour stay;
 *     new functions may be added;
 *   - the values of the LOOP_* constants stay; new event kinds may be added,
 *     so a switch over loop_event_t.kind needs a default that ignores them;
 *   - loop_event_t stays four int64_t;
 *   - loop_stats_t only grows at its end (loop_stats() passes the size the
 *     caller was built with, and gets that much);
 *   - loop_t stays opaque: nothing of internal.h is part of the ABI.
 * A change that breaks any of this comes with a new soname
 * (libcasyncio.so.1, ...); the file name and pkg-config's Version carry the
 * release (libcasyncio.so.0.1.0 is 0.1.0).
 */
#ifndef CASYNCIO_H
#define CASYNCIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CASYNCIO_API __attribute__((visibility("default")))

typedef struct loop loop_t;

typedef void (*loop_cb)(loop_t *loop, void *data);
typedef void (*loop_io_cb)(loop_t *loop, int fd, int mask, void *data);

/* Readiness bits, in loop_io_cb's mask and in LOOP_EV_IO's `a`. */
enum {
    LOOP_READABLE = 1,
    LOOP_WRITABLE = 2,
};

/* Kinds of loop_event_t. */
enum {
    LOOP_EV_IO = 1,        /* fd ready; a = LOOP_READABLE|LOOP_WRITABLE      */
    LOOP_EV_TIMER = 2,     /* timer fired; a = timer id                       */
    LOOP_EV_DATA = 3,      /* stream read; a = length, b = offset in arena    */
    LOOP_EV_EOF = 4,       /* stream peer closed its write side; reading
                              stops                                           */
    LOOP_EV_ERROR = 5,     /* stream read/write failed; a = errno (positive),
                              b = LOOP_READABLE (a read failed; reading stops)
                              or LOOP_WRITABLE (a flush failed; the buffer is
                              dropped and writes are over)                    */
    LOOP_EV_DRAINED = 6,   /* stream out-buffer became empty                  */
    LOOP_EV_RESUME = 7,    /* stream out-buffer fell to the low-water mark    */
    LOOP_EV_CHILD = 8,     /* child exited; fd = pid, a = returncode as
                              asyncio gives it (exit code, or -signal);
                              b = 1 if someone else reaped it and the status
                              is lost (a is 255 then), else 0                 */
    LOOP_EV_READABLE = 9,  /* stream readable, not read: its reads are the
                              caller's (loop_stream_read_by_caller);
                              a = 0: the caller sizes its own reads           */
};

/* All fields are int64_t so that a binding can read the array as a flat
 * int64 buffer (4 values per event). */
typedef struct loop_event {
    int64_t kind;
    int64_t fd;
    int64_t a;
    int64_t b;
} loop_event_t;

/* ---- lifecycle (core.c) ------------------------------------------------ */

/* Creates a loop; 0 and *out set, or -errno. */
CASYNCIO_API int loop_new(loop_t **out);
/* Frees the loop, its epoll and wakeup fds, buffers and timers.  Does not
 * close fds the caller registered.  NULL is accepted.  Makes no epoll_ctl()
 * call: a process forked from the loop's can free its copy without touching
 * the registrations, which belong to the epoll instance both share. */
CASYNCIO_API void loop_free(loop_t *loop);
/* Seconds on CLOCK_MONOTONIC (the clock of Python's time.monotonic()). */
CASYNCIO_API double loop_time(const loop_t *loop);

/*
 * One iteration: polls for at most `timeout_ms` (-1: until the next timer or
 * event; 0: do not block; the wait is shortened to the next timer, with
 * sub-millisecond precision), then handles what is ready, in this order:
 * I/O (stream reads and flushes, watcher callbacks or LOOP_EV_IO events),
 * expired timers in (deadline, scheduling order), then the C callbacks that
 * were queued before this call.  Returns how many events it wrote into
 * `events` (at most `max`), or -errno.  What does not fit stays for the next
 * call, which then does not block.  LOOP_EV_DATA offsets point into the read
 * arena (loop_read_arena) and stay valid until the next loop_run_once().
 */
CASYNCIO_API int loop_run_once(loop_t *loop, int timeout_ms,
                               loop_event_t *events, int max);
/*
 * Two numbers a binding can read without a call (a pointer into the loop,
 * valid until loop_free; same thread as the loop):
 *   hint[0]  fds in epoll (the wakeup fd aside) + queued C callbacks +
 *            events waiting to be handed over
 *   hint[1]  the earliest timer deadline (CLOCK_MONOTONIC ns), or INT64_MAX
 * While hint[0] is 0 and hint[1] is still ahead, loop_run_once(loop, 0, ...)
 * would report and run nothing (a pending wakeup carries no event), so a
 * binding with callbacks of its own to run may skip that call.
 */
CASYNCIO_API const int64_t *loop_poll_hint(const loop_t *loop);
/* For C programs: runs iterations until loop_stop(); events for fn == NULL
 * registrations are dropped.  0, or -errno. */
CASYNCIO_API int loop_run(loop_t *loop);
/* Makes loop_run() return after the current iteration. */
CASYNCIO_API void loop_stop(loop_t *loop);

/* Thread-safe: makes a blocking loop_run_once() return now (eventfd). */
CASYNCIO_API int loop_wakeup(loop_t *loop);

/* ---- health and profiling (core.c) ------------------------------------ */

/* Buckets of the duration histograms of loop_stats_t: bucket 0 counts
 * durations under 1 us, bucket k (0 < k < LOOP_HIST_BUCKETS - 1) those in
 * [2^(k-1), 2^k) us, the last one everything from 2^(LOOP_HIST_BUCKETS-2) us
 * (4.19 s) up. */
#define LOOP_HIST_BUCKETS 24

/*
 * What the loop has counted since loop_new().  Cheap enough to leave on: a
 * few additions per poll, nothing per event or callback.
 *
 * A poll is the epoll wait of one loop_run_once().  From a poll's return to
 * the next poll's start is a batch: the loop dispatches what the poll found
 * and its caller (for py_async_lib: Python) runs callbacks.  Nothing new is
 * noticed during a batch, so batch durations are the loop's lag.  An
 * iteration here runs from one poll's start to the next's (wait + batch).
 * loop_run_once() calls that do not poll (their event array was full), and
 * whatever the caller runs without calling it, belong to the batch around
 * them.  See loop_stats_resume() and loop_stats_pause() for the time
 * between runs.
 */
typedef struct loop_stats {
    int64_t iterations;      /* calls of loop_run_once()                  */
    int64_t io_events;       /* epoll events handled                      */
    int64_t timers_fired;
    int64_t callbacks_run;   /* C callbacks run by the loop               */
    int64_t events_emitted;  /* loop_event_t written for a binding        */
    int64_t bytes_read;
    int64_t bytes_written;
    int64_t poll_ns;         /* time spent inside epoll_wait              */
    int64_t events_dropped;  /* events lost to a broken invariant of the
                                library (a bug: always 0).  Debug builds
                                assert() instead; release builds (NDEBUG)
                                count here rather than abort            */
    int64_t batch_ns;        /* time spent in batches (outside the poll)  */
    int64_t batch_max_ns;    /* the longest batch: the worst lag          */
    int64_t batch_max_end;   /* when it ended (CLOCK_MONOTONIC ns), or 0  */
    int64_t fds;             /* fds in epoll now (the wakeup fd aside)    */
    int64_t timers;          /* pending timers now                        */
    int64_t iter_hist[LOOP_HIST_BUCKETS];    /* iteration durations       */
    int64_t batch_hist[LOOP_HIST_BUCKETS];   /* batch durations           */
} loop_stats_t;
/* Copies the first `size` bytes of the counters into *out (size larger than
 * sizeof(loop_stats_t): the rest of *out is left alone).  Call it through
 * loop_stats(), which passes the size of the struct the caller was built
 * with, so a program built against an older header keeps working. */
CASYNCIO_API void loop_stats_sized(const loop_t *loop, loop_stats_t *out,
                                   size_t size);
#define loop_stats(loop, out) loop_stats_sized((loop), (out), sizeof(*(out)))
/* The caller starts running the loop (asyncio's run_forever()) and may run
 * callbacks before its first poll: a batch begins now, unless one is open. */
CASYNCIO_API void loop_stats_resume(loop_t *loop);
/* The caller stops running the loop for a while (run_forever() returned):
 * the current batch ends now, and the time until the next resume or poll
 * counts in no batch or iteration.  loop_run() calls both. */
CASYNCIO_API void loop_stats_pause(loop_t *loop);

/* ---- ready queue (core.c) ---------------------------------------------- */

/* Queues fn(loop, data) for the next iteration.  fn must not be NULL. */
CASYNCIO_API int loop_call_soon(loop_t *loop, loop_cb fn, void *data);

/* ---- timers (timer.c) -------------------------------------------------- */

/* Schedules a timer; returns its id (> 0, never reused by this loop) or
 * -EINVAL for a NaN or infinite time.  A negative delay means "now".
 * fn == NULL: the timer is reported as LOOP_EV_TIMER with a = id. */
CASYNCIO_API int64_t loop_call_later(loop_t *loop, double delay,
                                     loop_cb fn, void *data);
CASYNCIO_API int64_t loop_call_at(loop_t *loop, double when,
                                  loop_cb fn, void *data);
/* 0, or -ENOENT when the id is unknown, already fired or cancelled. */
CASYNCIO_API int loop_timer_cancel(loop_t *loop, int64_t id);
/* Number of pending timers. */
CASYNCIO_API size_t loop_timer_count(const loop_t *loop);

/* ---- fd watchers (io.c) ------------------------------------------------ */

/* Watches fd for reading/writing.  fn == NULL: reported as LOOP_EV_IO.
 * Replaces a previous watcher of the same direction.  -EBADF for a negative
 * or closed fd, -EPERM for fds epoll refuses (regular files), -EEXIST when
 * the fd is a stream (see below). */
CASYNCIO_API int loop_add_reader(loop_t *loop, int fd, loop_io_cb fn, void *data);
CASYNCIO_API int loop_add_writer(loop_t *loop, int fd, loop_io_cb fn, void *data);
/* 1 if a watcher was removed, 0 if there was none, or -errno. */
CASYNCIO_API int loop_remove_reader(loop_t *loop, int fd);
CASYNCIO_API int loop_remove_writer(loop_t *loop, int fd);
/*
 * A one-shot wait for fd to become readable (a binding's sock_recv()).
 * peek != 0: first a non-blocking recv(MSG_PEEK) of one byte; unless it
 * fails with EAGAIN (nothing to read yet), returns 1 and watches nothing:
 * bytes, EOF or an error are there, and the caller's read says which.
 * Otherwise (and always with peek == 0) fd gets a reader as
 * loop_add_reader(loop, fd, NULL, NULL) makes it, replacing one it had,
 * that goes once it is reported: one LOOP_EV_IO with LOOP_READABLE, after
 * which fd has no reader, as if loop_remove_reader() had been called.
 * Returns 0 then, or -errno as loop_add_reader().  loop_remove_reader()
 * takes it away before it fires.  Cheaper than add + remove: while fd has
 * no writer, the registration is EPOLLONESHOT, which the kernel disarms as
 * it reports it, and the next wait on fd re-arms it with one epoll_ctl().
 */
CASYNCIO_API int loop_wait_readable(loop_t *loop, int fd, int peek);

/* ---- streams: C-side reads and writes (stream.c) ---------------------- */

/* Stream flags. */
enum {
    LOOP_STREAM_SOCKET = 1,  /* use recv/send(MSG_NOSIGNAL), else read/write */
};

/* Makes fd a stream of this loop: while reading is on, the loop reads it when
 * readable into the read arena and reports LOOP_EV_DATA / LOOP_EV_EOF /
 * LOOP_EV_ERROR.  Reading starts off; see loop_stream_read_start().
 * Write limits default to 64 KiB high / 16 KiB low.  -EEXIST if fd already
 * has a reader/writer watcher or is a stream. */
CASYNCIO_API int loop_stream_open(loop_t *loop, int fd, int flags);
/* Forgets the stream: leaves epoll, drops unsent bytes.  Does not close fd. */
CASYNCIO_API int loop_stream_close(loop_t *loop, int fd);
CASYNCIO_API int loop_stream_read_start(loop_t *loop, int fd);
CASYNCIO_API int loop_stream_read_stop(loop_t *loop, int fd);
/* Largest single read for this stream (default 256 KiB, capped by the arena). */
CASYNCIO_API int loop_stream_set_read_size(loop_t *loop, int fd, size_t size);
/* on != 0: while reading is on, a readable stream is reported as
 * LOOP_EV_READABLE and the caller reads it (into its own buffer, right before
 * it uses the bytes); the loop reads nothing.  For large messages this saves
 * the copy out of the arena and keeps the bytes in cache.  on == 0: the loop
 * reads into the arena again (the default).  Writes are not affected. */
CASYNCIO_API int loop_stream_read_by_caller(loop_t *loop, int fd, int on);

/*
 * Writes: if nothing is buffered, tries send()/write() at once and buffers
 * only what is left, arming EPOLLOUT; otherwise appends.  Returns the bytes
 * buffered after the call (0: all sent), or -errno (-EPIPE, -ECONNRESET...;
 * the stream then reports nothing more for writes).  When a later flush empties
 * the buffer the loop reports LOOP_EV_DRAINED; when the buffer had gone above
 * the high-water mark and a flush brings it to or below the low-water mark it
 * reports LOOP_EV_RESUME first.  A failed flush reports LOOP_EV_ERROR.
 * Errors: -EBADF if fd is not a stream of this loop, -EPIPE after
 * loop_stream_shutdown_write, the stored -errno once a write or flush failed
 * (see loop_stream_write_error), -EFAULT for buf == NULL with len > 0.
 * len == 0 sends nothing and returns what any write would (buf may be NULL):
 * the bytes buffered, or one of those errors.
 */
CASYNCIO_API int64_t loop_write(loop_t *loop, int fd, const void *buf, size_t len);
/* The same for several buffers at once, with writev(). */
CASYNCIO_API int64_t loop_writev(loop_t *loop, int fd, const void *const *bufs,
                                 const size_t *lens, int count);
/* Bytes waiting in the out-buffer, or -errno. */
CASYNCIO_API int64_t loop_write_buffer_size(loop_t *loop, int fd);
/* Why writes are over: 0 while they can go on, else the -errno of the write
 * or flush that failed (what that loop_write returned, or LOOP_EV_ERROR's a
 * negated).  A failed flush drops the out-buffer, so this is how a binding
 * that saw LOOP_EV_ERROR (or EOF) learns what a write would have said.
 * Shutting the write side down is not a failure: 0 then.  -EBADF also when
 * fd is not a stream of this loop. */
CASYNCIO_API int loop_stream_write_error(loop_t *loop, int fd);
/* -EINVAL unless high >= low. */
CASYNCIO_API int loop_stream_set_write_limits(loop_t *loop, int fd,
                                              size_t high, size_t low);
/* shutdown(SHUT_WR) (sockets) once the out-buffer is empty: now if it is. */
CASYNCIO_API int loop_stream_shutdown_write(loop_t *loop, int fd);

/* The read arena that LOOP_EV_DATA offsets point into. */
CASYNCIO_API void loop_read_arena(loop_t *loop, char **base, size_t *size);

/* ---- child processes (process.c) --------------------------------------- */

/* Watches child `pid` through a pidfd; when it exits the loop reaps it
 * (waitid on the pidfd) and reports LOOP_EV_CHILD (fn == NULL) or calls
 * fn(loop, pid, returncode, data).  returncode: the exit status, or -signal
 * when a signal killed it; 255 also when the status was lost (the event's b
 * tells that case apart).  -ESRCH if no such process, -ECHILD if it is not
 * our child, -ENOSYS without pidfd support, -EEXIST if already watched. */
typedef void (*loop_child_cb)(loop_t *loop, pid_t pid, int returncode, void *data);
CASYNCIO_API int loop_child_watch(loop_t *loop, pid_t pid, loop_child_cb fn, void *data);
/* Stops watching without reaping.  0 or -ENOENT. */
CASYNCIO_API int loop_child_unwatch(loop_t *loop, pid_t pid);

#ifdef __cplusplus
}
#endif
#endif /* CASYNCIO_H */
