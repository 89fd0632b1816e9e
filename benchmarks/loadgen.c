/*
 * loadgen.c -- request/response load generator for the py_async_lib
 * network benchmarks (benchmarks/throughput.py).
 *
 * Opens C connections to a TCP host:port or a Unix socket path.  Every
 * connection repeatedly sends one request and waits for the complete
 * response before sending the next one (no pipelining):
 *
 *   echo mode (default): the request is S bytes of a fixed pattern; the
 *                        response is those same S bytes.  Each received chunk
 *                        is spot-checked; over TCP with S >= 4096 only the
 *                        first and last 64 bytes are copied out and checked
 *                        and the middle is dropped in the kernel (recv with
 *                        MSG_TRUNC) so that the load generator stays cheap;
 *                        --verify receives and compares every byte.
 *   http mode (--http):  the request is "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
 *                        the response is read up to the blank line, then
 *                        Content-Length more bytes.
 *
 * Closed loop (default): each connection sends its next request as soon as
 * the response is in, so the server runs at its own maximum throughput and
 * the latencies are those of that load.  Open loop (--rate R): R requests
 * per second in all, spread evenly over the connections (connection i of C
 * sends at t0 + i/R + k*C/R); a request whose time comes while the previous
 * one on its connection is still out is sent as soon as that response is in,
 * and every latency is measured from the request's *scheduled* time, so a
 * server that falls behind shows its queueing in the percentiles instead of
 * slowing the load down (no "coordinated omission").  Loops compared at the
 * same R are compared at the same load.
 *
 * Connections are non-blocking and driven by edge-triggered epoll; they are
 * spread over T threads (default 1: one thread keeps up with a Python loop
 * on one core).  With a warm-up (-w W > 0) the run has two phases: W seconds
 * on one set of connections, which are then closed, and a second, fresh set
 * that runs min(W, 0.1) s uncounted and then D measured seconds.  (A fresh
 * server process can stay slow for the whole life of the first connections
 * it accepts; measuring on the second set avoids that.)  Then one JSON line
 * is printed to stdout:
 *
 *   {"requests": N, "bytes": B, "seconds": T, "connections": C, "size": S,
 *    "mode": "echo", "threads": T, "errors": E, "cpu": U, "wait": W,
 *    "warmup_requests": N, "all_requests": N, "p50_us": L, "p99_us": L,
 *    "p999_us": L}
 *
 * and with --rate also "rate": R (the target, requests/s), "achieved_rate": A
 * (requests / seconds: below R when the server could not keep up) and
 * "send_lag_p99_us": how late the load generator itself sent the requests
 * that waited for their time (its timer and CPU; a request held back by a
 * slow previous response is the server's delay and not counted), 99th
 * percentile in the measured window: the part of the latencies that is the
 * load generator's.
 *
 * requests = complete responses in the measured window, bytes = response
 * bytes received in it, seconds = actual length of the window, errors =
 * connections lost or responses that did not match, cpu = CPU time of this
 * process divided by its wall time (close to 1.0 per thread would mean the
 * load generator itself is the bottleneck), wait = fraction of the measured
 * window the threads spent runnable but waiting for a CPU (other load on the
 * machine; -1 if /proc/thread-self/schedstat is unavailable), all_requests =
 * responses over the whole life of the process (warm-up, settle and measured
 * window: what the server did while the harness counted its CPU), p50_us /
 * p99_us / p999_us = median, 99th and 99.9th percentile round-trip time
 * (request sent -- or, with --rate, scheduled -- to response complete) in
 * the measured window, in microseconds, from a log-linear histogram (32
 * buckets per power of two, ~3 % resolution).
 *
 * Scale mode (--scale): open C connections (up to 100k; over TCP the source
 * address cycles through 127.0.0.2.. every 20k connections, so the ephemeral
 * port range is not the limit), send one S-byte message on every connection
 * and wait for all the echoes (a "sweep"; the first one also makes the server
 * accept everything), print {"phase": "ready"} and wait for a line on stdin
 * (the harness measures the server's memory meanwhile), then do sweeps for D
 * seconds (at least 3) and print
 *
 *   {"mode": "scale", "requests": N, "seconds": T, "connections": C,
 *    "size": S, "sweeps": K, "sweep_ms_best": B, "sweep_ms_median": M,
 *    "connect_seconds": T, "errors": E, "cpu": U, "wait": -1}
 *
 * The process always stops by itself: the run is bounded by W + 0.1 + D,
 * connecting retries for at most 5 s per phase, and an alarm() kills it if
 * anything hangs.
 * Exit status: 0 on success, 1 if any error occurred, 2 on bad usage or setup.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HTTP_BUF_SIZE 65536
#define MAX_EVENTS 64
#define CONNECT_TIMEOUT 5.0
#define EDGE 64               /* echo bytes checked at each end of a response */
#define DISCARD_MIN 4096      /* messages this big use MSG_TRUNC in the middle */
#define SETTLE 0.1            /* uncounted start of the measured connections */

static const char HTTP_REQUEST[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

struct options {
    const char *host;
    const char *port;
    const char *unix_path;
    int conns;
    int threads;
    size_t size;
    double duration;
    double warmup;
    int http;
    int verify;
    int scale;
    double rate;          /* --rate: requests/s in all; 0: closed loop */
};

/* Round-trip times: a log-linear histogram of nanoseconds. */
#define HIST_SUB 32                     /* buckets per power of two */
#define HIST_BUCKETS (61 * HIST_SUB)

static int hist_bucket(uint64_t v)
{
    int msb, shift;
    if (v < 2 * HIST_SUB)
        return (int)v;
    msb = 63 - __builtin_clzll(v);
    shift = msb - 5;                    /* 5 == log2(HIST_SUB) */
    return (shift + 1) * HIST_SUB + (int)((v >> shift) & (HIST_SUB - 1));
}

/* Middle of bucket b, in nanoseconds. */
static double hist_value(int b)
{
    int shift;
    if (b < 2 * HIST_SUB)
        return (double)b;
    shift = b / HIST_SUB - 1;
    return (double)((uint64_t)(HIST_SUB + b % HIST_SUB) << shift) +
           (double)((uint64_t)1 << shift) / 2.0;
}

/* The q-quantile (0 < q < 1) of a histogram, in microseconds; -1 if empty. */
static double hist_quantile(const uint64_t *hist, double q)
{
    uint64_t total = 0, seen = 0, rank;
    int b;
    for (b = 0; b < HIST_BUCKETS; b++)
        total += hist[b];
    if (total == 0)
        return -1.0;
    rank = (uint64_t)(q * (double)total);
    for (b = 0; b < HIST_BUCKETS; b++) {
        seen += hist[b];
        if (seen > rank)
            return hist_value(b) / 1e3;
    }
    return hist_value(HIST_BUCKETS - 1) / 1e3;
}

struct conn {
    int fd;
    int alive;
    /* request being sent */
    const char *req;
    size_t req_len;
    size_t sent;
    /* response being received */
    char *rbuf;
    size_t rbuf_size;
    size_t received;      /* echo: bytes of this response; http: bytes in rbuf */
    int discard_middle;   /* echo over TCP, big messages, no --verify */
    uint64_t t_sent;      /* when the current request started (ns) */
    /* --rate only */
    uint64_t t_next;      /* scheduled start of the next request (ns) */
    int waiting;          /* idle until t_next */
};

struct worker {
    pthread_t thread;
    const struct options *opt;
    struct conn *conns;
    int nconns;
    int epfd;
    int tfd;              /* --rate: timerfd for the next scheduled start */
    uint64_t period_ns;   /* --rate: time between requests on a connection */
    uint64_t timer_at;    /* when tfd fires; 0 if disarmed */
    double warm_end;
    double end;
    /* results */
    uint64_t requests, bytes, errors;       /* running totals */
    uint64_t base_requests, base_bytes;     /* totals at the end of warm-up */
    double measured_start, measured_end;
    double delay_start, delay_end;          /* run_delay() over the window */
    int snapshotted;
    uint64_t hist[HIST_BUCKETS];            /* RTTs in the measured window */
    uint64_t lag_hist[HIST_BUCKETS];        /* --rate: send lags, same window */
};

static char *g_pattern; /* echo payload, shared read-only by all threads */

/* Nanoseconds this thread has spent runnable but waiting for a CPU (second
 * field of /proc/thread-self/schedstat), or -1 if unavailable. */
static double run_delay(void)
{
    unsigned long long run = 0, wait = 0;
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    int ok;
    if (!f)
        return -1.0;
    ok = fscanf(f, "%llu %llu", &run, &wait) == 2;
    fclose(f);
    return ok ? (double)wait : -1.0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen (-H HOST -p PORT | -U PATH) [options]\n"
            "  -H, --host HOST      TCP host (default 127.0.0.1)\n"
            "  -p, --port PORT      TCP port\n"
            "  -U, --unix PATH      Unix socket path instead of TCP\n"
            "  -c, --conns N        connections (default 4)\n"
            "  -s, --size BYTES     echo message size (default 1024)\n"
            "  -d, --duration SEC   measured seconds (default 2)\n"
            "  -w, --warmup SEC     warm-up seconds on separate connections (default 0)\n"
            "  -t, --threads N      threads (default 1)\n"
            "      --http           HTTP/1.1 keep-alive GET mode instead of echo\n"
            "      --verify         compare every echoed byte (default: spot checks)\n"
            "      --scale          idle-connections mode (see the source)\n"
            "  -R, --rate R         open loop: R requests/s in all, latency from the\n"
            "                       scheduled send time (default: closed loop)\n"
            "  -h, --help           this help\n");
}

static int parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"unix", required_argument, NULL, 'U'},
        {"conns", required_argument, NULL, 'c'},
        {"size", required_argument, NULL, 's'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"threads", required_argument, NULL, 't'},
        {"http", no_argument, NULL, 'T'},
        {"verify", no_argument, NULL, 'V'},
        {"scale", no_argument, NULL, 'S'},
        {"rate", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    long v;
    char *end;

    opt->host = "127.0.0.1";
    opt->port = NULL;
    opt->unix_path = NULL;
    opt->conns = 4;
    opt->threads = 1;
    opt->size = 1024;
    opt->duration = 2.0;
    opt->warmup = 0.0;
    opt->http = 0;
    opt->verify = 0;
    opt->scale = 0;
    opt->rate = 0.0;

    while ((c = getopt_long(argc, argv, "H:p:U:c:s:d:w:t:R:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'H': opt->host = optarg; break;
        case 'p': opt->port = optarg; break;
        case 'U': opt->unix_path = optarg; break;
        case 'c':
        case 's':
        case 't':
            v = strtol(optarg, &end, 10);
            if (*end != '\0' || v <= 0 ||
                v > (c == 's' ? 64L * 1024 * 1024 : c == 'c' ? 100000 : 10000)) {
                fprintf(stderr, "loadgen: bad value for -%c: %s\n", c, optarg);
                return -1;
            }
            if (c == 'c')
                opt->conns = (int)v;
            else if (c == 's')
                opt->size = (size_t)v;
            else
                opt->threads = (int)v;
            break;
        case 'd':
        case 'w':
        case 'R':
            {
                double d = strtod(optarg, &end);
                double max = c == 'R' ? 1e7 : 3600.0;
                if (*end != '\0' || !(d >= 0.0 && d <= max) || (c != 'w' && d <= 0.0)) {
                    fprintf(stderr, "loadgen: bad value for -%c: %s\n", c, optarg);
                    return -1;
                }
                if (c == 'd')
                    opt->duration = d;
                else if (c == 'w')
                    opt->warmup = d;
                else
                    opt->rate = d;
            }
            break;
        case 'T': opt->http = 1; break;
        case 'V': opt->verify = 1; break;
        case 'S': opt->scale = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    if (!opt->unix_path && !opt->port) {
        fprintf(stderr, "loadgen: need --port or --unix\n");
        return -1;
    }
    if (opt->scale && opt->rate > 0.0) {
        fprintf(stderr, "loadgen: --rate and --scale do not mix\n");
        return -1;
    }
    if (opt->threads > opt->conns)
        opt->threads = opt->conns;
    return 0;
}

/* Blocking connect with retries (the server may still be starting). */
static int open_connection(const struct options *opt, int index)
{
    double deadline = now() + CONNECT_TIMEOUT;

    for (;;) {
        int fd = -1;
        int err;

        if (opt->unix_path) {
            struct sockaddr_un sun;
            memset(&sun, 0, sizeof sun);
            sun.sun_family = AF_UNIX;
            if (strlen(opt->unix_path) >= sizeof sun.sun_path) {
                fprintf(stderr, "loadgen: unix path too long\n");
                return -1;
            }
            strcpy(sun.sun_path, opt->unix_path);
            fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0)
                return -1;
            if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0)
                return fd;
            err = errno;
        } else {
            struct addrinfo hints, *res = NULL, *ai;
            int one = 1;
            int rc;
            memset(&hints, 0, sizeof hints);
            hints.ai_family = AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            rc = getaddrinfo(opt->host, opt->port, &hints, &res);
            if (rc != 0) {
                fprintf(stderr, "loadgen: getaddrinfo: %s\n", gai_strerror(rc));
                return -1;
            }
            err = ECONNREFUSED;
            for (ai = res; ai; ai = ai->ai_next) {
                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
                if (fd < 0) {
                    err = errno;
                    continue;
                }
                if (index >= 20000 && ai->ai_family == AF_INET) {
                    /* past 20k connections to one address:port, bind a
                     * different loopback source (127.0.0.2, .3 ...) so the
                     * ephemeral port range does not run out */
                    struct sockaddr_in src;
                    memset(&src, 0, sizeof src);
                    src.sin_family = AF_INET;
                    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(index / 20000));
                    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
                    bind(fd, (struct sockaddr *)&src, sizeof src);
                }
                if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
                    break;
                err = errno;
                close(fd);
                fd = -1;
            }
            freeaddrinfo(res);
            if (fd >= 0) {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                return fd;
            }
        }
        if (fd >= 0)
            close(fd);
        if ((err != ECONNREFUSED && err != ENOENT && err != EAGAIN) || now() > deadline) {
            fprintf(stderr, "loadgen: connect: %s\n", strerror(err));
            return -1;
        }
        usleep(10000);
    }
}

static void conn_fail(struct worker *w, struct conn *c)
{
    if (!c->alive)
        return;
    c->alive = 0;
    w->errors++;
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static void start_request(struct worker *w, struct conn *c)
{
    /* echo: c->received was reset by the caller; http: it keeps any
     * unexpected leftover bytes */
    c->sent = 0;
    if (w->period_ns) {
        /* latency counts from when the request was due, not from when a
         * slow previous response let it go out */
        c->t_sent = c->t_next;
        c->t_next += w->period_ns;
    } else {
        c->t_sent = now_ns();
    }
}

/* After a response: start the next request now, unless --rate has it due
 * later (then the connection waits for run_schedule()).  Returns 1 if a
 * request was started. */
static int next_request(struct worker *w, struct conn *c)
{
    if (w->period_ns && c->t_next > now_ns()) {
        c->waiting = 1;
        return 0;
    }
    start_request(w, c);
    return 1;
}

static void response_done(struct worker *w, struct conn *c)
{
    w->requests++;
    if (w->snapshotted)
        w->hist[hist_bucket(now_ns() - c->t_sent)]++;
}

/* Returns the total length of the HTTP response at the start of buf, 0 if it
 * is not complete yet, or -1 if it is malformed. */
static long http_response_length(const char *buf, size_t len, size_t bufsize)
{
    const char *p, *eoh = NULL;
    long clen = -1;
    size_t i;

    for (i = 0; i + 3 < len; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            eoh = buf + i;
            break;
        }
    }
    if (!eoh)
        return len >= bufsize ? -1 : 0;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
        return -1;
    /* look for Content-Length among the header lines */
    p = memchr(buf, '\n', (size_t)(eoh - buf));
    while (p && p < eoh) {
        const char *line = p + 1;
        const char *nl = memchr(line, '\n', (size_t)(eoh + 2 - line));
        size_t n = nl ? (size_t)(nl - line) : 0;
        if (n > 15 && strncasecmp(line, "content-length:", 15) == 0) {
            const char *q = line + 15;
            clen = 0;
            while (*q == ' ' || *q == '\t')
                q++;
            if (*q < '0' || *q > '9')
                return -1;
            while (*q >= '0' && *q <= '9')
                clen = clen * 10 + (*q++ - '0');
        }
        p = nl;
    }
    if (clen < 0)
        return -1;
    if ((size_t)(eoh - buf) + 4 + (size_t)clen > bufsize)
        return -1;
    if (len < (size_t)(eoh - buf) + 4 + (size_t)clen)
        return 0;
    return (long)((eoh - buf) + 4 + clen);
}

/* Does a received echo chunk match what was sent at that offset?  Full
 * comparison with --verify; otherwise a spot check of both ends of the chunk,
 * which catches lost, duplicated or reordered data at a fraction of the cost
 * (with 64 KiB messages a full memcmp costs the load generator ~15 % CPU). */
static int chunk_matches(const struct options *opt, const char *buf, size_t off, size_t n)
{
    size_t k = n < 16 ? n : 16;
    if (opt->verify)
        return memcmp(buf, g_pattern + off, n) == 0;
    return memcmp(buf, g_pattern + off, k) == 0 &&
           memcmp(buf + n - k, g_pattern + off + n - k, k) == 0;
}

/* Send what remains of the current request; returns 1 once it is all sent.
 *
 * Edge-triggered epoll raises a new EPOLLIN edge whenever data arrives, so
 * after a request has gone out whole there is no need to try recv() (it
 * would only return EAGAIN): that saves one syscall per request. */
static int send_request(struct worker *w, struct conn *c)
{
    while (c->sent < c->req_len) {
        ssize_t n = send(c->fd, c->req + c->sent, c->req_len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        } else {
            conn_fail(w, c);
            return 0;
        }
    }
    return 1;
}

/* Push a connection forward as far as possible without blocking. */
static void conn_progress(struct worker *w, struct conn *c)
{
    const struct options *opt = w->opt;

    while (c->alive && !c->waiting) {
        /* 1. send what remains of the request */
        send_request(w, c);
        if (!c->alive)
            return;

        /* 2. receive the response */
        if (!opt->http) {
            int complete = 0;
            for (;;) {
                size_t limit = opt->size, want;
                int flags = 0;
                ssize_t n;
                if (c->discard_middle) {
                    /* head and tail are received and checked, the middle
                     * is dropped in the kernel without a copy */
                    if (c->received < EDGE) {
                        limit = EDGE;
                    } else if (c->received < opt->size - EDGE) {
                        limit = opt->size - EDGE;
                        flags = MSG_TRUNC;
                    }
                }
                want = limit - c->received;
                if (!flags && want > c->rbuf_size)
                    want = c->rbuf_size;
                n = recv(c->fd, c->rbuf, want, flags);
                if (n > 0) {
                    if (!flags && !chunk_matches(opt, c->rbuf, c->received, (size_t)n)) {
                        conn_fail(w, c);
                        return;
                    }
                    c->received += (size_t)n;
                    w->bytes += (uint64_t)n;
                    if (c->received == opt->size) {
                        complete = 1;
                        break;
                    }
                } else if (n < 0 && errno == EINTR) {
                    continue;
                } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    break;
                } else {
                    conn_fail(w, c); /* EOF or error */
                    return;
                }
            }
            if (!complete)
                return; /* wait for the next edge */
            if (c->sent != c->req_len) { /* response before the request went out */
                conn_fail(w, c);
                return;
            }
            response_done(w, c);
            c->received = 0;
            if (!next_request(w, c))
                return;
            if (send_request(w, c))
                return; /* sent whole: the reply raises a new EPOLLIN edge */
        } else {
            long total = 0;
            for (;;) {
                ssize_t n;
                total = http_response_length(c->rbuf, c->received, c->rbuf_size);
                if (total != 0)
                    break;
                n = recv(c->fd, c->rbuf + c->received, c->rbuf_size - c->received, 0);
                if (n > 0) {
                    c->received += (size_t)n;
                    w->bytes += (uint64_t)n;
                } else if (n < 0 && errno == EINTR) {
                    continue;
                } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    break;
                } else {
                    conn_fail(w, c);
                    return;
                }
            }
            if (total < 0 || (total > 0 && c->sent != c->req_len)) {
                conn_fail(w, c);
                return;
            }
            if (total == 0)
                return;
            response_done(w, c);
            /* keep unexpected extra bytes (there should be none) */
            memmove(c->rbuf, c->rbuf + total, c->received - (size_t)total);
            c->received -= (size_t)total;
            if (!next_request(w, c))
                return;
            if (c->received == 0 && send_request(w, c))
                return;
        }
        if (now() >= w->end)
            return;
    }
}

/* Fire w->tfd at t (ns, CLOCK_MONOTONIC).  Returns 0 or -errno. */
static int arm_timer(struct worker *w, uint64_t t)
{
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = (time_t)(t / 1000000000u);
    its.it_value.tv_nsec = (long)(t % 1000000000u);
    if (timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        return -errno;
    w->timer_at = t;
    return 0;
}

/* --rate: start every waiting request whose time has come, then arm the
 * timer for the earliest one still to come.  Returns 0 or -errno. */
static int run_schedule(struct worker *w)
{
    uint64_t t = now_ns(), next = UINT64_MAX;
    int i;

    for (i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (c->alive && c->waiting && c->t_next <= t) {
            if (w->snapshotted)
                w->lag_hist[hist_bucket(t - c->t_next)]++;
            c->waiting = 0;
            start_request(w, c);
            conn_progress(w, c);
        }
        if (c->alive && c->waiting && c->t_next < next)
            next = c->t_next;
    }
    if (next == UINT64_MAX || next == w->timer_at)
        return 0;
    return arm_timer(w, next);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event events[MAX_EVENTS];
    int i, alive, rc;

    for (i = 0; i < w->nconns; i++) {
        if (w->period_ns) {
            w->conns[i].waiting = 1;    /* t_next was set by run_phase() */
            continue;
        }
        start_request(w, &w->conns[i]);
        send_request(w, &w->conns[i]);
    }

    for (;;) {
        double t = now();
        int n;

        if (!w->snapshotted && t >= w->warm_end) {
            w->base_requests = w->requests;
            w->base_bytes = w->bytes;
            w->measured_start = t;
            w->delay_start = run_delay();
            w->snapshotted = 1;
        }
        if (t >= w->end)
            break;
        alive = 0;
        for (i = 0; i < w->nconns; i++)
            alive += w->conns[i].alive;
        if (!alive)
            break;
        if (w->period_ns && (rc = run_schedule(w)) < 0) {
            fprintf(stderr, "loadgen: timerfd_settime: %s\n", strerror(-rc));
            w->errors++;
            break;
        }

        n = epoll_wait(w->epfd, events, MAX_EVENTS, 5);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("loadgen: epoll_wait");
            w->errors++;
            break;
        }
        for (i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) {   /* the timer: run_schedule() on the next turn */
                uint64_t expirations;
                if (read(w->tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) {
                    perror("loadgen: timerfd read");
                    w->errors++;
                }
                w->timer_at = 0;
                continue;
            }
            if (events[i].events & (EPOLLERR | EPOLLHUP) && !(events[i].events & EPOLLIN)) {
                conn_fail(w, c);
                continue;
            }
            conn_progress(w, c);
        }
    }
    w->measured_end = now();
    w->delay_end = run_delay();
    if (!w->snapshotted) { /* everything died during warm-up */
        w->base_requests = w->requests;
        w->base_bytes = w->bytes;
        w->measured_start = w->measured_end;
        w->delay_start = w->delay_end;
        w->snapshotted = 1;
    }
    return NULL;
}

struct phase_result {
    uint64_t requests, bytes, errors;
    uint64_t all_requests;  /* settle + measured */
    uint64_t hist[HIST_BUCKETS];
    uint64_t lag_hist[HIST_BUCKETS];
    double seconds; /* measured window, averaged over threads */
    double wait;    /* run-queue wait fraction, -1 if unknown */
};

/* --rate: w's timerfd, in its epoll set with a NULL data.ptr, and the time
 * between two requests on one connection.  Returns 0, or -1 if it failed. */
static int add_timer(struct worker *w, const struct options *opt)
{
    struct epoll_event ev;

    w->period_ns = (uint64_t)((double)opt->conns * 1e9 / opt->rate);
    if (w->period_ns == 0)
        w->period_ns = 1;
    w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (w->tfd < 0) {
        perror("loadgen: timerfd_create");
        return -1;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->tfd, &ev) < 0) {
        perror("loadgen: epoll_ctl");
        return -1;
    }
    return 0;
}

/* Connect opt->conns fresh connections, drive them for settle + duration
 * seconds (only the last `duration` counted), close them.  Returns 0, or -1
 * if the connections could not be set up. */
static int run_phase(const struct options *opt, double settle, double duration,
                     struct phase_result *res)
{
    struct worker *workers;
    struct conn *conns;
    double t_start, wait = 0.0;
    uint64_t t0_ns;
    int i, k, nw = opt->threads, rc = 0;

    memset(res, 0, sizeof *res);
    conns = calloc((size_t)opt->conns, sizeof *conns);
    workers = calloc((size_t)nw, sizeof *workers);
    if (!conns || !workers) {
        fprintf(stderr, "loadgen: out of memory\n");
        free(conns);
        free(workers);
        return -1;
    }
    for (i = 0; i < opt->conns; i++)
        conns[i].fd = -1;
    for (i = 0; i < nw; i++)
        workers[i].tfd = -1;
    for (i = 0; i < nw; i++) {
        workers[i].opt = opt;
        workers[i].epfd = epoll_create1(EPOLL_CLOEXEC);
        if (workers[i].epfd < 0) {
            perror("loadgen: epoll_create1");
            rc = -1;
            goto out;
        }
        if (opt->rate > 0.0 && add_timer(&workers[i], opt) != 0) {
            rc = -1;
            goto out;
        }
    }

    /* connect everything first, then start the clock */
    for (i = 0; i < opt->conns; i++) {
        struct conn *c = &conns[i];
        int fl;

        c->fd = open_connection(opt, i);
        if (c->fd < 0) {
            rc = -1;
            goto out;
        }
        fl = fcntl(c->fd, F_GETFL);
        if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            perror("loadgen: fcntl");
            rc = -1;
            goto out;
        }
        c->alive = 1;
        if (opt->http) {
            c->req = HTTP_REQUEST;
            c->req_len = sizeof HTTP_REQUEST - 1;
            c->rbuf_size = HTTP_BUF_SIZE;
        } else {
            c->req = g_pattern;
            c->req_len = opt->size;
            c->rbuf_size = opt->size < 262144 ? opt->size : 262144;
            c->discard_middle = !opt->verify && !opt->unix_path && opt->size >= DISCARD_MIN;
        }
        c->rbuf = malloc(c->rbuf_size);
        if (!c->rbuf) {
            fprintf(stderr, "loadgen: out of memory\n");
            rc = -1;
            goto out;
        }
    }

    t_start = now();
    t0_ns = now_ns();
    if (opt->rate > 0.0) /* one request every 1/R s in all */
        for (i = 0; i < opt->conns; i++)
            conns[i].t_next = t0_ns + (uint64_t)((double)i * 1e9 / opt->rate);
    for (i = 0; i < nw; i++) {
        struct worker *w = &workers[i];
        int first = opt->conns * i / nw, last = opt->conns * (i + 1) / nw;
        w->conns = &conns[first];
        w->nconns = last - first;
        w->warm_end = t_start + settle;
        w->end = t_start + settle + duration;
        for (k = 0; k < w->nconns; k++) {
            struct epoll_event ev;
            memset(&ev, 0, sizeof ev);
            ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
            ev.data.ptr = &w->conns[k];
            if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->conns[k].fd, &ev) < 0) {
                perror("loadgen: epoll_ctl");
                rc = -1;
                goto out;
            }
        }
    }
    for (i = 0; i < nw; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            fprintf(stderr, "loadgen: pthread_create failed\n");
            nw = i; /* join the ones already running */
            rc = -1;
            break;
        }
    }
    for (i = 0; i < nw; i++) {
        struct worker *w = &workers[i];
        pthread_join(w->thread, NULL);
        res->requests += w->requests - w->base_requests;
        res->all_requests += w->requests;
        for (k = 0; k < HIST_BUCKETS; k++) {
            res->hist[k] += w->hist[k];
            res->lag_hist[k] += w->lag_hist[k];
        }
        res->bytes += w->bytes - w->base_bytes;
        res->errors += w->errors;
        res->seconds += w->measured_end - w->measured_start;
        if (wait >= 0.0 && w->delay_start >= 0.0 && w->delay_end >= 0.0 &&
            w->measured_end > w->measured_start)
            wait += (w->delay_end - w->delay_start) / 1e9 / (w->measured_end - w->measured_start);
        else
            wait = -1.0;
    }
    if (nw > 0) {
        res->seconds /= nw;
        res->wait = wait >= 0.0 ? wait / nw : -1.0;
    }

out:
    for (i = 0; i < opt->conns; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].rbuf);
    }
    for (i = 0; i < opt->threads; i++) {
        if (workers[i].epfd > 0)
            close(workers[i].epfd);
        if (workers[i].tfd >= 0)
            close(workers[i].tfd);
    }
    free(workers);
    free(conns);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One message on every connection, then every echo back: seconds, or -1 on
 * an error (counted in *errors). */
static double scale_sweep(const struct options *opt, struct conn *conns, int epfd,
                          uint64_t *errors)
{
    struct epoll_event events[MAX_EVENTS];
    double t0 = now(), deadline = t0 + 30.0;
    int i, pending = opt->conns;

    for (i = 0; i < opt->conns; i++) {
        struct conn *c = &conns[i];
        ssize_t n = send(c->fd, g_pattern, opt->size, MSG_NOSIGNAL | MSG_DONTWAIT);
        c->received = 0;
        if (n != (ssize_t)opt->size) {   /* small messages: the kernel takes them whole */
            (*errors)++;
            return -1.0;
        }
    }
    while (pending > 0) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, 1000);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || now() > deadline) {
            (*errors)++;
            return -1.0;
        }
        for (i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            ssize_t k = recv(c->fd, c->rbuf, opt->size - c->received, MSG_DONTWAIT);
            if (k < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (k <= 0 || !chunk_matches(opt, c->rbuf, c->received, (size_t)k)) {
                (*errors)++;
                return -1.0;
            }
            c->received += (size_t)k;
            if (c->received == opt->size)
                pending--;
        }
    }
    return now() - t0;
}

/* --scale: see the comment at the top. */
static int run_scale(const struct options *opt)
{
    struct conn *conns = calloc((size_t)opt->conns, sizeof *conns);
    double *times = NULL, t0, t_connect, total = 0.0, start, t;
    uint64_t errors = 0;
    int i, nsweeps = 0, cap = 64, epfd = epoll_create1(EPOLL_CLOEXEC);
    char line[64];
    struct rusage ru;
    double cpu;

    times = malloc((size_t)cap * sizeof *times);
    if (!conns || !times || epfd < 0) {
        fprintf(stderr, "loadgen: scale setup failed\n");
        return 2;
    }
    t0 = now();
    for (i = 0; i < opt->conns; i++) {
        struct conn *c = &conns[i];
        struct epoll_event ev;
        c->fd = open_connection(opt, i);
        if (c->fd < 0)
            return 2;
        c->rbuf_size = opt->size;
        c->rbuf = malloc(opt->size);
        if (!c->rbuf)
            return 2;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            perror("loadgen: epoll_ctl");
            return 2;
        }
    }
    t_connect = now() - t0;
    if (scale_sweep(opt, conns, epfd, &errors) < 0) {
        fprintf(stderr, "loadgen: first sweep failed\n");
        return 1;
    }
    printf("{\"phase\": \"ready\"}\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        line[0] = '\0';
    start = now();
    do {
        t = scale_sweep(opt, conns, epfd, &errors);
        if (t < 0)
            break;
        if (nsweeps == cap) {
            cap *= 2;
            times = realloc(times, (size_t)cap * sizeof *times);
            if (!times)
                return 2;
        }
        times[nsweeps++] = t;
        total += t;
    } while (nsweeps < 3 || now() - start < opt->duration);
    qsort(times, (size_t)nsweeps, sizeof *times, cmp_double);
    getrusage(RUSAGE_SELF, &ru);
    cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
          (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("{\"mode\": \"scale\", \"requests\": %llu, \"seconds\": %.6f, "
           "\"connections\": %d, \"size\": %zu, \"bytes\": %llu, \"sweeps\": %d, "
           "\"sweep_ms_best\": %.3f, \"sweep_ms_median\": %.3f, "
           "\"connect_seconds\": %.3f, \"errors\": %llu, \"cpu\": %.3f, \"wait\": -1}\n",
           (unsigned long long)nsweeps * (unsigned long long)opt->conns, total, opt->conns,
           opt->size, (unsigned long long)nsweeps * opt->conns * opt->size, nsweeps,
           nsweeps ? times[0] * 1e3 : -1.0, nsweeps ? times[nsweeps / 2] * 1e3 : -1.0,
           t_connect, (unsigned long long)errors, cpu / (now() - t0));
    fflush(stdout);
    for (i = 0; i < opt->conns; i++) {
        close(conns[i].fd);
        free(conns[i].rbuf);
    }
    free(conns);
    free(times);
    close(epfd);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct options opt;
    struct phase_result warm, res;
    struct rusage ru;
    double t_start, t_end, cpu, settle;
    int i;

    if (parse_options(argc, argv, &opt) != 0)
        return 2;

    signal(SIGPIPE, SIG_IGN);
    settle = opt.warmup < SETTLE ? opt.warmup : SETTLE;
    /* hard stop, whatever happens */
    alarm((unsigned)(opt.warmup + settle + opt.duration + 2 * CONNECT_TIMEOUT + 10.0 +
                     (opt.scale ? 120.0 : 0.0)));

    g_pattern = malloc(opt.size);
    if (!g_pattern) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 2;
    }
    for (i = 0; i < (int)opt.size; i++)
        g_pattern[i] = (char)('a' + (i * 7 + i / 251) % 26);
    if (opt.scale)
        return run_scale(&opt);

    t_start = now();
    memset(&warm, 0, sizeof warm);
    /* Warm-up on its own connections.  A fresh server process can stay slow
     * for the whole life of the first connections it accepts, while later
     * connections run at full speed; measuring on a second connection set
     * makes the result independent of that. */
    if (opt.warmup > 0.0 && run_phase(&opt, 0.0, opt.warmup, &warm) != 0)
        return 2;
    if (run_phase(&opt, settle, opt.duration, &res) != 0)
        return 2;
    t_end = now();

    getrusage(RUSAGE_SELF, &ru);
    cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
          (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    cpu = t_end > t_start ? cpu / (t_end - t_start) : 0.0;

    printf("{\"requests\": %llu, \"bytes\": %llu, \"seconds\": %.6f, "
           "\"connections\": %d, \"size\": %zu, \"mode\": \"%s\", "
           "\"threads\": %d, \"errors\": %llu, \"cpu\": %.3f, \"wait\": %.3f, "
           "\"warmup_requests\": %llu, \"all_requests\": %llu, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f",
           (unsigned long long)res.requests, (unsigned long long)res.bytes, res.seconds,
           opt.conns, opt.http ? (size_t)0 : opt.size, opt.http ? "http" : "echo",
           opt.threads, (unsigned long long)(res.errors + warm.errors), cpu, res.wait,
           (unsigned long long)(warm.requests),
           (unsigned long long)(warm.requests + res.all_requests),
           hist_quantile(res.hist, 0.50), hist_quantile(res.hist, 0.99),
           hist_quantile(res.hist, 0.999));
    if (opt.rate > 0.0)
        printf(", \"rate\": %.1f, \"achieved_rate\": %.1f, \"send_lag_p99_us\": %.1f",
               opt.rate, res.seconds > 0.0 ? (double)res.requests / res.seconds : 0.0,
               hist_quantile(res.lag_hist, 0.99));
    printf("}\n");
    fflush(stdout);
    free(g_pattern);
    return (res.errors + warm.errors) ? 1 : 0;
}
