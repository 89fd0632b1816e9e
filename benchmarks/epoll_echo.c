/*
 * epoll_echo.c -- a plain epoll echo server in C: the "C limit" reference
 * of the network benchmarks (benchmarks/references.py), with no event loop
 * library at all.
 *
 *   epoll_echo [-p PORT] [-U PATH] [--http]
 *
 * Listens on 127.0.0.1:PORT (0: a free port) or the Unix socket PATH and
 * prints "listening 127.0.0.1 PORT" / "listening unix PATH" when ready.
 * Level-triggered epoll; per readable connection one recv() into a 256 KiB
 * buffer and one send() of what came (the rest, if the kernel takes less, is
 * buffered and sent on EPOLLOUT) -- the same syscalls per message as the
 * loops under test.  --http answers each request (up to the blank line) with
 * the benchmarks' fixed 200 OK response instead of echoing.  SIGTERM/SIGINT
 * stop it; exit status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)
#define MAX_EVENTS 256

/* The same response as benchmarks/workloads.py's HTTP_RESPONSE. */
static const char HTTP_RESPONSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Server: py_async_lib-bench\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 14\r\n"
    "\r\n"
    "Hello, World!\n";

struct conn {
    char *out;          /* bytes the kernel did not take yet */
    size_t olen, ocap;
    char *in;           /* --http: bytes of an incomplete request */
    size_t ilen, icap;
};

static volatile sig_atomic_t stop;
static int http_mode, epfd;
static struct conn **conns;
static long max_fds;
static char rbuf[READ_SIZE];

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 4096;
        char *b;
        while (c < *len + n)
            c *= 2;
        b = realloc(*buf, c);
        if (!b)
            return -1;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 0;
}

static void conn_close(int fd)
{
    struct conn *c = conns[fd];
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    if (c) {
        free(c->out);
        free(c->in);
        free(c);
        conns[fd] = NULL;
    }
}

static void set_events(int fd, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.fd = fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &e);
}

/* Send now if nothing is pending, buffer the rest; -1 on a broken peer. */
static int conn_write(int fd, struct conn *c, const char *p, size_t n)
{
    if (c->olen == 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (k > 0) {
            p += k;
            n -= (size_t)k;
        }
        if (n == 0)
            return 0;
        set_events(fd, EPOLLIN | EPOLLOUT);
    }
    return append(&c->out, &c->olen, &c->ocap, p, n);
}

static void conn_flush(int fd, struct conn *c)
{
    ssize_t k = send(fd, c->out, c->olen, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_close(fd);
        return;
    }
    memmove(c->out, c->out + k, c->olen - (size_t)k);
    c->olen -= (size_t)k;
    if (c->olen == 0)
        set_events(fd, EPOLLIN);
}

/* --http: answer every complete request in c->in (bodies are not expected). */
static int http_feed(int fd, struct conn *c, const char *p, size_t n)
{
    size_t start = 0, i;
    if (append(&c->in, &c->ilen, &c->icap, p, n) < 0)
        return -1;
    for (i = 3; i < c->ilen; i++) {
        if (memcmp(c->in + i - 3, "\r\n\r\n", 4) == 0) {
            if (conn_write(fd, c, HTTP_RESPONSE, sizeof HTTP_RESPONSE - 1) < 0)
                return -1;
            start = i + 1;
        }
    }
    memmove(c->in, c->in + start, c->ilen - start);
    c->ilen -= start;
    return 0;
}

static void conn_read(int fd, struct conn *c)
{
    ssize_t n = recv(fd, rbuf, sizeof rbuf, MSG_DONTWAIT);
    int rc;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(fd);
        return;
    }
    rc = http_mode ? http_feed(fd, c, rbuf, (size_t)n) : conn_write(fd, c, rbuf, (size_t)n);
    if (rc < 0)
        conn_close(fd);
}

static void do_accept(int lfd, int is_unix)
{
    int one = 1;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct epoll_event e = {.events = EPOLLIN};
        if (fd < 0)
            return;
        if (fd >= max_fds || !(conns[fd] = calloc(1, sizeof **conns))) {
            close(fd);
            continue;
        }
        if (!is_unix)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        e.data.fd = fd;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
            conn_close(fd);
    }
}

int main(int argc, char **argv)
{
    const char *unix_path = NULL;
    struct epoll_event events[MAX_EVENTS];
    struct sigaction sa;
    int port = 0, lfd, i, one = 1;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-p") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-U") && i + 1 < argc)
            unix_path = argv[++i];
        else if (!strcmp(argv[i], "--http"))
            http_mode = 1;
        else {
            fprintf(stderr, "usage: epoll_echo [-p PORT] [-U PATH] [--http]\n");
            return 2;
        }
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    max_fds = sysconf(_SC_OPEN_MAX);
    conns = calloc((size_t)max_fds, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || epfd < 0) {
        perror("epoll_echo: setup");
        return 1;
    }

    if (unix_path) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof sun.sun_path, "%s", unix_path);
        unlink(unix_path);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sun, sizeof sun) < 0) {
            perror("epoll_echo: bind");
            return 1;
        }
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0) {
            perror("epoll_echo: bind");
            return 1;
        }
    }
    if (listen(lfd, 4096) < 0) {
        perror("epoll_echo: listen");
        return 1;
    }
    {
        struct epoll_event e = {.events = EPOLLIN, .data.fd = lfd};
        epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &e);
    }
    if (unix_path) {
        printf("listening unix %s\n", unix_path);
    } else {
        struct sockaddr_in sin;
        socklen_t len = sizeof sin;
        getsockname(lfd, (struct sockaddr *)&sin, &len);
        printf("listening 127.0.0.1 %d\n", ntohs(sin.sin_port));
    }
    fflush(stdout);

    while (!stop) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_echo: epoll_wait");
            return 1;
        }
        for (i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            struct conn *c;
            if (fd == lfd) {
                do_accept(lfd, unix_path != NULL);
                continue;
            }
            c = conns[fd];
            if (c && (events[i].events & EPOLLOUT) && c->olen)
                conn_flush(fd, c);
            c = conns[fd];
            if (c && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                conn_read(fd, c);
        }
    }
    for (i = 0; i < max_fds; i++)
        if (conns[i])
            conn_close(i);
    close(lfd);
    close(epfd);
    free(conns);
    if (unix_path)
        unlink(unix_path);
    return 0;
}
