/* HEAD load generator for bench/run.py's `head` workload.
 *
 * Why C: client and server share two cores. The Python client spends ~45 us of CPU per request,
 * a third of what the server spends, so with two server workers the client, not the server,
 * ran out of CPU. This one spends a few microseconds (one send, one recv per request).
 *
 * usage: headclient HOST PORT REQUEST_FILE CONNS SECONDS
 *   REQUEST_FILE holds the raw request bytes, sent again and again on each keep-alive connection,
 *   one request in flight per connection. A response ends at its blank line (HEAD: no body).
 * output (stdout, one line): "<ok> <failures> <seconds> <p50 s> <p99 s>"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXCONN 256
#define BUFSZ 65536

struct conn {
    int fd;
    size_t have;
    double t0;
    char buf[BUFSZ];
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int open_conn(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    int one = 1;
    if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_all(int fd, const char *req, size_t len) {
    while (len) {
        ssize_t n = send(fd, req, len, MSG_NOSIGNAL);
        if (n <= 0) return -1;
        req += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT REQUEST_FILE CONNS SECONDS\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), nconn = atoi(argv[4]);
    double secs = atof(argv[5]);
    char req[4096];
    FILE *f = fopen(argv[3], "rb");
    if (!f) return perror("request file"), 2;
    size_t reqlen = fread(req, 1, sizeof req, f);
    fclose(f);
    if (nconn < 1 || nconn > MAXCONN || reqlen == 0) return fprintf(stderr, "bad arguments\n"), 2;

    size_t cap = 1 << 20, nlat = 0;
    double *lat = malloc(cap * sizeof *lat);
    static struct conn conns[MAXCONN];
    long failures = 0;
    int ep = epoll_create1(0), live = 0;
    double start = now(), deadline = start + secs;

    for (int i = 0; i < nconn; i++) {
        struct conn *c = &conns[i];
        c->fd = open_conn(host, port);
        if (c->fd < 0) return perror("connect"), 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        c->t0 = now();
        if (send_all(c->fd, req, reqlen) < 0) return perror("send"), 1;
        live++;
    }
    struct epoll_event evs[MAXCONN];
    while (live > 0) {
        int n = epoll_wait(ep, evs, MAXCONN, 1000);
        if (n < 0 && errno != EINTR) return perror("epoll_wait"), 1;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            ssize_t got = recv(c->fd, c->buf + c->have, BUFSZ - 1 - c->have, 0);
            if (got <= 0) {
                failures++;
                close(c->fd);
                live--;
                continue;
            }
            c->have += (size_t)got;
            c->buf[c->have] = 0;
            char *end = strstr(c->buf, "\r\n\r\n");
            if (!end) {
                if (c->have >= BUFSZ - 1) { /* a header block this large is a failure */
                    failures++;
                    close(c->fd);
                    live--;
                }
                continue;
            }
            double t = now();
            if (c->have >= 12 && memcmp(c->buf + 9, "200", 3) == 0) {
                if (nlat == cap) lat = realloc(lat, (cap *= 2) * sizeof *lat);
                lat[nlat++] = t - c->t0;
            } else {
                if (failures < 3) fprintf(stderr, "HEAD: %.12s\n", c->buf);
                failures++;
            }
            /* One request in flight: anything after the blank line would be a protocol error. */
            c->have = 0;
            if (t >= deadline) {
                close(c->fd);
                live--;
                continue;
            }
            c->t0 = t;
            if (send_all(c->fd, req, reqlen) < 0) {
                failures++;
                close(c->fd);
                live--;
            }
        }
    }
    double elapsed = now() - start;
    qsort(lat, nlat, sizeof *lat, cmp);
    double p50 = nlat ? lat[(size_t)(0.50 * nlat)] : 0, p99 = nlat ? lat[(size_t)(0.99 * nlat)] : 0;
    printf("%zu %ld %.6f %.9f %.9f\n", nlat, failures, elapsed, p50, p99);
    return 0;
}
