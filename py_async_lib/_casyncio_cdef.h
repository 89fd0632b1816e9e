/*
 * cffi cdef of libcasyncio: the part of libcasyncio/casyncio.h that the
 * Python binding uses, in the subset of C that cffi parses.  Buffers are
 * declared `const char *` (not `const void *`) so that cffi passes a `bytes`
 * argument without a copy.  Kept in step with casyncio.h by hand: the
 * compiler checks every call against the real header when the module builds.
 * Only what Python calls is declared (loop_timer_count for the tests); the
 * rest of the API is for C programs and the C tests, which use casyncio.h.
 */
typedef struct loop loop_t;
typedef void (*loop_cb)(loop_t *loop, void *data);
typedef void (*loop_io_cb)(loop_t *loop, int fd, int mask, void *data);
typedef int... pid_t;
typedef void (*loop_child_cb)(loop_t *loop, pid_t pid, int returncode, void *data);

#define LOOP_READABLE ...
#define LOOP_WRITABLE ...
#define LOOP_EV_IO ...
#define LOOP_EV_TIMER ...
#define LOOP_EV_DATA ...
#define LOOP_EV_EOF ...
#define LOOP_EV_ERROR ...
#define LOOP_EV_DRAINED ...
#define LOOP_EV_RESUME ...
#define LOOP_EV_CHILD ...
#define LOOP_EV_READABLE ...
#define LOOP_STREAM_SOCKET ...
#define LOOP_HIST_BUCKETS ...

typedef struct loop_event {
    int64_t kind;
    int64_t fd;
    int64_t a;
    int64_t b;
} loop_event_t;

typedef struct loop_stats {
    int64_t iterations;
    int64_t io_events;
    int64_t timers_fired;
    int64_t callbacks_run;
    int64_t events_emitted;
    int64_t bytes_read;
    int64_t bytes_written;
    int64_t poll_ns;
    int64_t events_dropped;
    int64_t batch_ns;
    int64_t batch_max_ns;
    int64_t batch_max_end;
    int64_t fds;
    int64_t timers;
    int64_t iter_hist[...];
    int64_t batch_hist[...];
} loop_stats_t;

int loop_new(loop_t **out);
void loop_free(loop_t *loop);
/* loop_run_once() releasing the GIL only when it may block (build_ffi.py):
 * the other calls keep the GIL. */
int pyal_run_once(loop_t *loop, int timeout_ms, loop_event_t *events, int max);
const int64_t *loop_poll_hint(const loop_t *loop);
/* 1 when loop_run_once(loop, 0, ...) could find something (build_ffi.py). */
int pyal_poll_due(const loop_t *loop);
int loop_wakeup(loop_t *loop);
void loop_stats(const loop_t *loop, loop_stats_t *out);   /* a macro in C */
void loop_stats_resume(loop_t *loop);
void loop_stats_pause(loop_t *loop);

int64_t loop_call_at(loop_t *loop, double when, loop_cb fn, void *data);
int loop_timer_cancel(loop_t *loop, int64_t id);
size_t loop_timer_count(const loop_t *loop);

int loop_add_reader(loop_t *loop, int fd, loop_io_cb fn, void *data);
int loop_add_writer(loop_t *loop, int fd, loop_io_cb fn, void *data);
int loop_remove_reader(loop_t *loop, int fd);
int loop_remove_writer(loop_t *loop, int fd);
int loop_wait_readable(loop_t *loop, int fd, int peek);

int loop_stream_open(loop_t *loop, int fd, int flags);
int loop_stream_close(loop_t *loop, int fd);
int loop_stream_read_start(loop_t *loop, int fd);
int loop_stream_read_stop(loop_t *loop, int fd);
int loop_stream_read_by_caller(loop_t *loop, int fd, int on);
int64_t loop_write(loop_t *loop, int fd, const char *buf, size_t len);
int64_t loop_writev(loop_t *loop, int fd, const void *const *bufs,
                    const size_t *lens, int count);
int64_t loop_write_buffer_size(loop_t *loop, int fd);
int loop_stream_write_error(loop_t *loop, int fd);
int loop_stream_set_write_limits(loop_t *loop, int fd, size_t high, size_t low);
int loop_stream_shutdown_write(loop_t *loop, int fd);
void loop_read_arena(loop_t *loop, char **base, size_t *size);

int loop_child_watch(loop_t *loop, pid_t pid, loop_child_cb fn, void *data);
