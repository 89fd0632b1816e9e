/*
 * fuzz_stream.c — libFuzzer harness for C-side streams (stream.c): the
 * out-buffer, back-pressure events, shutdown, and reads into the arena.
 *
 * One stream per input: an AF_UNIX socketpair end (send/recv) or a pipe's
 * write end (write), with small kernel buffers so that writes are partial.
 * The input decodes into writes and writevs of random sizes, reads of random
 * amounts by the peer, write limits, shutdown, reading on/off, data and
 * shutdown/close from the peer, and run_once with event arrays of 1 to 8.
 * What is checked, against a model of the stream:
 *   - the peer receives exactly the bytes written, in order;
 *   - loop_write/loop_writev return the buffered size (appending when bytes
 *     are already waiting), and -EPIPE after shutdown, -errno after a
 *     failure, and loop_write_buffer_size agrees;
 *   - over each poll window (run_once calls until the spill is empty): the
 *     buffer only shrinks; DRAINED comes exactly when it went from non-empty
 *     to empty, RESUME exactly when it had been above the high-water mark
 *     and a flush brought it to the low one, RESUME before DRAINED; write
 *     errors only once the peer is gone;
 *   - DATA events point inside the arena, carry the peer's bytes in order,
 *     respect the read size; EOF comes after all of them, once the peer shut
 *     down; nothing is read while reading is off.
 * The harness includes internal.h to see whether events are still spilled.
 */
#include "internal.h"
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define PATLEN   65521u            /* prime: no alignment coincidences */
#define MAXWRITE 65536u
#define MAX_TX   (4u << 20)        /* bytes written per input, at most */
#define MAX_OPS  400
#define MAX_EV   8

static uint8_t pat_out[PATLEN + MAXWRITE];   /* us -> peer, by offset */
static uint8_t pat_in[PATLEN + MAXWRITE];    /* peer -> us */
static uint8_t scratch[MAXWRITE];

static struct {
    loop_t *loop;
    int fd, peer;                /* our stream, the peer's end */
    int is_sock;
    /* write side */
    uint64_t tx, rx;             /* bytes accepted by loop_write, read by peer */
    int64_t size;                /* expected loop_write_buffer_size */
    size_t high, low;
    int above_high, shut, shut_done, err;
    int peer_eof;                /* peer saw EOF */
    /* read side */
    int reading, got_eof;
    uint64_t peer_tx, rx_us;     /* peer -> us: sent, delivered as DATA */
    size_t read_size;
    int peer_shut, peer_closed;
} S;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    uint32_t x = 0x12345678u;
    size_t i;

    (void)argc;
    (void)argv;
    /* write() on a pipe whose reader is gone must fail with EPIPE, not
     * kill the harness (Python ignores SIGPIPE the same way). */
    signal(SIGPIPE, SIG_IGN);
    for (i = 0; i < sizeof(pat_out); i++) {
        x = x * 1103515245u + 12345u;
        /* periodic: the byte at stream offset o is pat[o % PATLEN] */
        pat_out[i] = i < PATLEN ? (uint8_t)(x >> 16) : pat_out[i - PATLEN];
        pat_in[i] = i < PATLEN ? (uint8_t)(x >> 24) : pat_in[i - PATLEN];
    }
    return 0;
}

static const uint8_t *out_at(uint64_t off)
{
    return pat_out + off % PATLEN;
}

static const uint8_t *in_at(uint64_t off)
{
    return pat_in + off % PATLEN;
}

/* Whether p[0..len) is the pattern from stream offset off (any length). */
static int matches(const uint8_t *pat, uint64_t off, const void *p, size_t len)
{
    const uint8_t *q = p;

    while (len > 0) {
        size_t chunk = len < MAXWRITE ? len : MAXWRITE;
        if (memcmp(q, pat + off % PATLEN, chunk) != 0)
            return 0;
        q += chunk;
        off += chunk;
        len -= chunk;
    }
    return 1;
}

static int64_t bufsize(void)
{
    return loop_write_buffer_size(S.loop, S.fd);
}

static void check_size(const char *what)
{
    int64_t b = bufsize();
    FUZZ_CHECK(b == S.size, "%s: buffer size %lld, model %lld", what,
               (long long)b, (long long)S.size);
}

/* Common result handling for write and writev of `len` bytes. */
static void after_write(int64_t ret, int64_t prev, uint64_t len)
{
    if (S.err) {
        FUZZ_CHECK(ret == -S.err, "write after error %d returned %lld", S.err,
                   (long long)ret);
        return;
    }
    if (S.shut) {
        FUZZ_CHECK(ret == -EPIPE, "write after shutdown returned %lld",
                   (long long)ret);
        return;
    }
    if (ret < 0) {
        FUZZ_CHECK(S.peer_closed, "write failed (%lld) with the peer alive",
                   (long long)ret);
        S.err = (int)-ret;
        S.size = 0;
        S.above_high = 0;
        return;
    }
    if (len == 0) {
        FUZZ_CHECK(ret == prev, "empty write returned %lld, buffered %lld",
                   (long long)ret, (long long)prev);
        return;
    }
    if (prev > 0)
        FUZZ_CHECK(ret == prev + (int64_t)len,
                   "write of %llu with %lld buffered returned %lld",
                   (unsigned long long)len, (long long)prev, (long long)ret);
    else
        FUZZ_CHECK(ret <= (int64_t)len, "write of %llu returned %lld",
                   (unsigned long long)len, (long long)ret);
    S.tx += len;
    S.size = ret;
    if ((size_t)ret > S.high)
        S.above_high = 1;
}

static void do_write(uint32_t len)
{
    int64_t prev = S.size, ret;

    if (S.tx + len > MAX_TX)
        return;
    ret = loop_write(S.loop, S.fd, out_at(S.tx), len);
    after_write(ret, prev, len);
    check_size("write");
}

static void do_writev(struct fin *in)
{
    const void *bufs[6];
    size_t lens[6];
    int count = 1 + fin_u8(in) % 6, i;
    uint64_t off = S.tx, total = 0;
    int64_t prev = S.size, ret;

    for (i = 0; i < count; i++) {
        uint8_t b = fin_u8(in);
        /* some empty, some small, some larger than the socket buffer */
        size_t l = (b & 3) == 0 ? 0 : (b & 3) == 1 ? b : (size_t)fin_u16(in) % 20000;
        bufs[i] = out_at(off);
        lens[i] = l;
        off += l;
        total += l;
    }
    if (S.tx + total > MAX_TX)
        return;
    ret = loop_writev(S.loop, S.fd, bufs, lens, count);
    after_write(ret, prev, total);
    check_size("writev");
}

/* The peer reads up to n bytes and checks them. */
static void peer_read(size_t n)
{
    ssize_t got;

    if (S.peer_closed || n == 0)
        return;
    got = read(S.peer, scratch, n);
    if (got < 0) {
        FUZZ_CHECK(errno == EAGAIN, "peer read: errno %d", errno);
        return;
    }
    if (got == 0) {
        FUZZ_CHECK(S.is_sock && S.shut_done && S.rx == S.tx,
                   "peer saw EOF: shut_done %d, received %llu of %llu",
                   S.shut_done, (unsigned long long)S.rx,
                   (unsigned long long)S.tx);
        S.peer_eof = 1;
        return;
    }
    FUZZ_CHECK(matches(pat_out, S.rx, scratch, (size_t)got),
               "peer received wrong bytes at offset %llu",
               (unsigned long long)S.rx);
    S.rx += (uint64_t)got;
    FUZZ_CHECK(S.rx + (uint64_t)S.size <= S.tx,
               "received %llu + buffered %lld > written %llu",
               (unsigned long long)S.rx, (long long)S.size,
               (unsigned long long)S.tx);
}

/* run_once until nothing is left in the spill, then the window's checks. */
static void window(int max)
{
    loop_event_t ev[MAX_EV];
    int64_t s0 = S.size, s1;
    int above0 = S.above_high, nres = 0, ndrain = 0, werr = 0, rounds = 0;
    char *arena;
    size_t arena_size;
    int n, i;

    loop_read_arena(S.loop, &arena, &arena_size);
    do {
        n = loop_run_once(S.loop, 0, ev, max);
        FUZZ_CHECK(n >= 0 && n <= max, "run_once returned %d", n);
        for (i = 0; i < n; i++) {
            const loop_event_t *e = &ev[i];
            FUZZ_CHECK(e->fd == S.fd, "event kind %lld for fd %lld",
                       (long long)e->kind, (long long)e->fd);
            switch (e->kind) {
            case LOOP_EV_DATA:
                FUZZ_CHECK(S.reading, "DATA while reading is off");
                FUZZ_CHECK(e->a > 0 && (size_t)e->a <= S.read_size &&
                           e->b >= 0 && (size_t)(e->b + e->a) <= arena_size,
                           "DATA len %lld off %lld", (long long)e->a,
                           (long long)e->b);
                FUZZ_CHECK(S.rx_us + (uint64_t)e->a <= S.peer_tx,
                           "DATA beyond what the peer sent");
                FUZZ_CHECK(matches(pat_in, S.rx_us, arena + e->b,
                                   (size_t)e->a),
                           "DATA carries wrong bytes at %llu",
                           (unsigned long long)S.rx_us);
                S.rx_us += (uint64_t)e->a;
                break;
            case LOOP_EV_EOF:
                FUZZ_CHECK(S.reading && S.peer_shut && S.rx_us == S.peer_tx,
                           "EOF: reading %d peer_shut %d got %llu of %llu",
                           S.reading, S.peer_shut,
                           (unsigned long long)S.rx_us,
                           (unsigned long long)S.peer_tx);
                S.reading = 0;
                S.got_eof = 1;
                break;
            case LOOP_EV_ERROR:
                FUZZ_CHECK(S.peer_closed && e->a > 0, "ERROR %lld/%lld with "
                           "the peer alive", (long long)e->a, (long long)e->b);
                if (e->b == LOOP_READABLE) {
                    FUZZ_CHECK(S.reading, "read ERROR while not reading");
                    S.reading = 0;
                } else {
                    FUZZ_CHECK(e->b == LOOP_WRITABLE && !S.err && s0 > 0,
                               "write ERROR b=%lld err %d s0 %lld",
                               (long long)e->b, S.err, (long long)s0);
                    S.err = (int)e->a;
                    werr = 1;
                }
                break;
            case LOOP_EV_RESUME:
                FUZZ_CHECK(above0 && !nres && !ndrain,
                           "RESUME: above %d, resumed %d, drained %d", above0,
                           nres, ndrain);
                nres++;
                break;
            case LOOP_EV_DRAINED:
                FUZZ_CHECK(!ndrain && s0 > 0, "DRAINED twice or from empty");
                ndrain++;
                break;
            default:
                FUZZ_CHECK(0, "unexpected event kind %lld", (long long)e->kind);
            }
        }
        FUZZ_CHECK(++rounds < 10000, "spill never empties");
    } while (S.loop->spill_n > 0);

    s1 = bufsize();
    if (werr) {
        FUZZ_CHECK(s1 == 0 && !ndrain && !nres,
                   "after a write error: size %lld drained %d resumed %d",
                   (long long)s1, ndrain, nres);
        S.size = 0;
        S.above_high = 0;
        S.shut = S.shut_done ? S.shut : 0;
        return;
    }
    FUZZ_CHECK(s1 <= s0, "buffer grew from %lld to %lld in run_once",
               (long long)s0, (long long)s1);
    FUZZ_CHECK(ndrain == (s0 > 0 && s1 == 0), "drained %d, size %lld -> %lld",
               ndrain, (long long)s0, (long long)s1);
    FUZZ_CHECK(nres == (above0 && s1 < s0 && (size_t)s1 <= S.low),
               "resumed %d: above %d, size %lld -> %lld, low %zu", nres,
               above0, (long long)s0, (long long)s1, S.low);
    S.size = s1;
    if (nres)
        S.above_high = 0;
    if (ndrain && S.shut)
        S.shut_done = 1;
}

static void setup(uint8_t how)
{
    int sv[2];
    int small = 4096;

    memset(&S, 0, sizeof(S));
    FUZZ_CHECK(loop_new(&S.loop) == 0, "loop_new");
    S.is_sock = !(how & 1);
    if (S.is_sock) {
        FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
                              SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        if (how & 2) {
            setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
            setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        }
        S.fd = sv[0];
        S.peer = sv[1];
    } else {
        FUZZ_CHECK(pipe2(sv, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
        if (how & 2)
            (void)fcntl(sv[1], F_SETPIPE_SZ, 4096);
        S.fd = sv[1];
        S.peer = sv[0];
    }
    FUZZ_CHECK(loop_stream_open(S.loop, S.fd,
                                S.is_sock ? LOOP_STREAM_SOCKET : 0) == 0,
               "stream_open");
    FUZZ_CHECK(loop_stream_open(S.loop, S.fd, 0) == -EEXIST,
               "second stream_open");
    S.high = 64 * 1024;
    S.low = 16 * 1024;
    S.read_size = 256 * 1024;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fin in = {data, size};
    int ops = 0, i;

    setup(fin_u8(&in));
    while (fin_more(&in) && ops++ < MAX_OPS) {
        uint8_t op = fin_u8(&in);
        uint8_t b = fin_u8(&in);

        switch (op % 16) {
        case 0:
        case 1:
        case 2:
            do_write(b & 1 ? (uint32_t)fin_u16(&in) + (b & 2 ? 1 : 0)
                           : (uint32_t)(b >> 1));
            break;
        case 3:
            do_writev(&in);
            break;
        case 4:
        case 5:
            peer_read(b & 1 ? (size_t)fin_u16(&in) : (size_t)b * 64);
            break;
        case 6:
        case 7:
        case 8:
            window(1 + b % MAX_EV);
            break;
        case 9: {
            size_t high = (size_t)fin_u16(&in) * (b & 1 ? 4 : 1);
            size_t low = (size_t)fin_u16(&in) * (b & 2 ? 4 : 1);
            int rc = loop_stream_set_write_limits(S.loop, S.fd, high, low);
            if (high < low) {
                FUZZ_CHECK(rc == -EINVAL, "limits %zu < %zu: %d", high, low,
                           rc);
            } else {
                FUZZ_CHECK(rc == 0, "limits: %d", rc);
                S.high = high;
                S.low = low;
                if (S.size > (int64_t)high)
                    S.above_high = 1;
            }
            break;
        }
        case 10: {
            int rc = loop_stream_shutdown_write(S.loop, S.fd);
            if (S.err) {
                FUZZ_CHECK(rc == -S.err, "shutdown after error: %d", rc);
            } else {
                FUZZ_CHECK(rc == 0 || (S.peer_closed && rc < 0),
                           "shutdown: %d", rc);
                if (!S.shut && S.size == 0)
                    S.shut_done = 1;
                S.shut = 1;
            }
            break;
        }
        case 11:
            if (!S.is_sock)
                break;
            if (b & 1) {
                FUZZ_CHECK(loop_stream_read_start(S.loop, S.fd) == 0,
                           "read_start");
                S.reading = 1;
            } else {
                FUZZ_CHECK(loop_stream_read_stop(S.loop, S.fd) == 0,
                           "read_stop");
                S.reading = 0;
            }
            break;
        case 12: {
            /* the peer sends */
            size_t n = b & 1 ? (size_t)fin_u16(&in) : b;
            ssize_t sent;
            if (!S.is_sock || S.peer_shut || S.peer_closed || n == 0)
                break;
            sent = send(S.peer, in_at(S.peer_tx), n, MSG_DONTWAIT);
            FUZZ_CHECK(sent > 0 || errno == EAGAIN, "peer send: errno %d",
                       errno);
            if (sent > 0)
                S.peer_tx += (uint64_t)sent;
            break;
        }
        case 13:
            if (!S.is_sock || S.peer_closed)
                break;
            if (b & 1) {
                FUZZ_CHECK(shutdown(S.peer, SHUT_WR) == 0, "peer shutdown");
                S.peer_shut = 1;
            } else if ((b & 0x1e) == 0) {
                /* Rarely: the peer goes away; writes fail from here on. */
                close(S.peer);
                S.peer = -1;
                S.peer_shut = 1;
                S.peer_closed = 1;
            }
            break;
        case 14: {
            size_t rs = b & 1 ? (size_t)fin_u16(&in) : (size_t)b;
            int rc = loop_stream_set_read_size(S.loop, S.fd, rs);
            if (rs == 0) {
                FUZZ_CHECK(rc == -EINVAL, "read size 0: %d", rc);
            } else {
                FUZZ_CHECK(rc == 0, "read size: %d", rc);
                S.read_size = rs;
            }
            break;
        }
        case 15:
            if (!S.is_sock && !S.peer_closed && (b & 7) == 0) {
                /* a pipe's reader goes away */
                close(S.peer);
                S.peer = -1;
                S.peer_closed = 1;
            }
            break;
        }
    }

    /* Drain: everything written reaches the peer, in order. */
    if (!S.peer_closed && !S.err) {
        for (i = 0; i < 100000 && (S.rx < S.tx || S.size > 0); i++) {
            peer_read(MAXWRITE);
            window(MAX_EV);
        }
        FUZZ_CHECK(S.rx == S.tx && S.size == 0,
                   "after draining: received %llu of %llu, buffered %lld",
                   (unsigned long long)S.rx, (unsigned long long)S.tx,
                   (long long)S.size);
        if (S.is_sock && S.shut) {
            FUZZ_CHECK(S.shut_done, "shutdown never happened");
            peer_read(1);
            FUZZ_CHECK(S.peer_eof, "peer did not see EOF after shutdown");
        }
        /* and what the peer sent reaches us while reading is on */
        for (i = 0; S.reading && S.rx_us < S.peer_tx; i++) {
            FUZZ_CHECK((uint64_t)i < 1000 + S.peer_tx / S.read_size,
                       "%d polls read %llu of the peer's %llu bytes", i,
                       (unsigned long long)S.rx_us,
                       (unsigned long long)S.peer_tx);
            window(MAX_EV);
        }
        FUZZ_CHECK(!S.reading || S.rx_us == S.peer_tx,
                   "read %llu of the peer's %llu bytes",
                   (unsigned long long)S.rx_us,
                   (unsigned long long)S.peer_tx);
    }

    FUZZ_CHECK(loop_stream_close(S.loop, S.fd) == 0, "stream_close");
    FUZZ_CHECK(loop_stream_close(S.loop, S.fd) == -EBADF, "second close");
    FUZZ_CHECK(loop_write(S.loop, S.fd, "x", 1) == -EBADF, "write on closed");
    close(S.fd);
    if (S.peer >= 0)
        close(S.peer);
    loop_free(S.loop);
    return 0;
}
