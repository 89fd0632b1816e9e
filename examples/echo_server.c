/*
 * echo_server.c -- an echo server in C on libcasyncio alone (no Python).
 *
 * The example program of the C ABI (casyncio.h), and the "C limit on
 * libcasyncio" reference of the benchmarks (benchmarks/references.py): the
 * engine doing the same work the Python binding asks of it, with no Python.
 *
 *   echo_server [-p PORT] [-U PATH]
 *
 * Listens on 127.0.0.1:PORT (default 0: a free port) or on the Unix socket
 * PATH, prints one line when ready ("listening 127.0.0.1 PORT" or
 * "listening unix PATH") and echoes every byte back on every connection.
 * SIGTERM or SIGINT stops it cleanly: the loop returns, connections are
 * closed, the loop is freed, exit status 0.
 *
 * What comes from where:
 *   - the listening socket and the signals are fd watchers with callbacks
 *     (loop_add_reader, fn != NULL): the loop calls on_accept / on_signal.
 *     The C API has no accept of its own, so on_accept calls accept4()
 *     itself and hands each connection to the loop with loop_stream_open();
 *   - accepted connections are streams: the loop reads them into its read
 *     arena.  Streams report through the event array of loop_run_once()
 *     (the API has no per-stream callback), so main() runs iterations
 *     itself and answers each LOOP_EV_DATA with one loop_write(), which
 *     sends at once and buffers only what the kernel did not take.
 *
 * Build against an installed copy:
 *   cc -O2 echo_server.c $(pkg-config --cflags --libs casyncio) -o echo_server
 * or in the source tree: `make` (build/echo_server).
 */
#define _GNU_SOURCE
#include <casyncio.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct server {
    loop_t *loop;
    int listen_fd;
    int unix_socket;   /* connections are AF_UNIX: no TCP_NODELAY */
    int running;
    char *open_fds;    /* open_fds[fd] != 0: a connection, closed at exit */
    long max_fds;
};

static void fail(const char *what, int err)
{
    fprintf(stderr, "echo_server: %s: %s\n", what, strerror(err));
    exit(1);
}

/* A connection is over (EOF, error): forget the stream, close the fd.  A
 * later event of the same iteration may name the fd again: once is enough. */
static void conn_close(struct server *srv, int fd)
{
    if (!srv->open_fds[fd])
        return;
    loop_stream_close(srv->loop, fd);
    close(fd);
    srv->open_fds[fd] = 0;
}

/* The listening socket is readable: accept everything that is waiting. */
static void on_accept(loop_t *loop, int fd, int mask, void *data)
{
    struct server *srv = data;
    int one = 1;
    (void)mask;

    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int rc;

        if (c < 0) {
            /* EAGAIN: nothing more; anything else (EMFILE...) is retried
             * on the next readiness report. */
            return;
        }
        if (c >= srv->max_fds) {   /* cannot happen below RLIMIT_NOFILE */
            close(c);
            continue;
        }
        if (!srv->unix_socket)
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        rc = loop_stream_open(loop, c, LOOP_STREAM_SOCKET);
        if (rc == 0)
            rc = loop_stream_read_start(loop, c);
        if (rc < 0) {
            fprintf(stderr, "echo_server: stream: %s\n", strerror(-rc));
            loop_stream_close(loop, c);
            close(c);
            continue;
        }
        srv->open_fds[c] = 1;
    }
}

/* SIGTERM / SIGINT arrived on the signalfd: stop after this iteration. */
static void on_signal(loop_t *loop, int fd, int mask, void *data)
{
    struct server *srv = data;
    struct signalfd_siginfo si;
    (void)loop;
    (void)mask;

    if (read(fd, &si, sizeof si) == (ssize_t)sizeof si)
        srv->running = 0;
}

/* One event of an iteration.  DATA offsets point into the read arena and
 * stay valid until the next loop_run_once(). */
static void handle_event(struct server *srv, const loop_event_t *ev, const char *arena)
{
    int fd = (int)ev->fd;
    int64_t rc;

    switch (ev->kind) {
    case LOOP_EV_DATA:
        rc = loop_write(srv->loop, fd, arena + ev->b, (size_t)ev->a);
        if (rc < 0)
            conn_close(srv, fd);
        else if (rc > 64 * 1024)
            /* The peer does not read: stop reading until it does. */
            loop_stream_read_stop(srv->loop, fd);
        break;
    case LOOP_EV_RESUME:
        loop_stream_read_start(srv->loop, fd);
        break;
    case LOOP_EV_EOF:
    case LOOP_EV_ERROR:
        conn_close(srv, fd);
        break;
    default:   /* LOOP_EV_DRAINED: nothing to do */
        break;
    }
}

static int listen_on(const char *unix_path, int port)
{
    int fd, one = 1;

    if (unix_path) {
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        if (strlen(unix_path) >= sizeof sun.sun_path)
            fail("unix path", ENAMETOOLONG);
        strcpy(sun.sun_path, unix_path);
        unlink(unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0)
            fail("bind", errno);
    } else {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            fail("socket", errno);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
            fail("bind", errno);
    }
    if (listen(fd, 4096) < 0)
        fail("listen", errno);
    return fd;
}

int main(int argc, char **argv)
{
    struct server srv = {0};
    loop_event_t events[MAX_EVENTS];
    const char *unix_path = NULL;
    sigset_t sigs;
    char *arena;
    size_t arena_size;
    int opt, port = 0, sfd, rc, i;

    while ((opt = getopt(argc, argv, "p:U:h")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'U': unix_path = optarg; break;
        default:
            fprintf(stderr, "usage: echo_server [-p PORT] [-U PATH]\n");
            return opt == 'h' ? 0 : 2;
        }
    }

    srv.max_fds = sysconf(_SC_OPEN_MAX);
    srv.open_fds = calloc((size_t)srv.max_fds, 1);
    if (srv.open_fds == NULL)
        fail("calloc", ENOMEM);
    rc = loop_new(&srv.loop);
    if (rc < 0)
        fail("loop_new", -rc);
    loop_read_arena(srv.loop, &arena, &arena_size);

    /* Signals become readable bytes on a signalfd, watched like any fd. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        fail("signalfd", errno);
    rc = loop_add_reader(srv.loop, sfd, on_signal, &srv);
    if (rc < 0)
        fail("loop_add_reader(signalfd)", -rc);

    srv.listen_fd = listen_on(unix_path, port);
    srv.unix_socket = unix_path != NULL;
    rc = loop_add_reader(srv.loop, srv.listen_fd, on_accept, &srv);
    if (rc < 0)
        fail("loop_add_reader(listener)", -rc);

    if (unix_path) {
        printf("listening unix %s\n", unix_path);
    } else {
        struct sockaddr_in sin;
        socklen_t len = sizeof sin;
        getsockname(srv.listen_fd, (struct sockaddr *)&sin, &len);
        printf("listening 127.0.0.1 %d\n", ntohs(sin.sin_port));
    }
    fflush(stdout);

    /* The loop: one loop_run_once() per iteration runs the callbacks above
     * and returns the stream events, handled here. */
    srv.running = 1;
    while (srv.running) {
        int n = loop_run_once(srv.loop, -1, events, MAX_EVENTS);
        if (n < 0)
            fail("loop_run_once", -n);
        for (i = 0; i < n; i++)
            handle_event(&srv, &events[i], arena);
    }

    /* Clean stop: every fd the loop knows of is still open and ours. */
    loop_remove_reader(srv.loop, srv.listen_fd);
    loop_remove_reader(srv.loop, sfd);
    close(srv.listen_fd);
    close(sfd);
    for (i = 0; i < srv.max_fds; i++)
        if (srv.open_fds[i])
            conn_close(&srv, i);
    loop_free(srv.loop);
    free(srv.open_fds);
    if (unix_path)
        unlink(unix_path);
    return 0;
}
