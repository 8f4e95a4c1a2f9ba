/* Load generator for bench/run.py's `head`, `small` and `small-cwu` workloads.
 *
 * Why C: client and server share two cores. The Python clients spent 45-75 us of CPU per request,
 * a third of what the server spends, so with two server workers the client, not the server, ran
 * out of CPU. This one spends a few microseconds of its own per request (the rest is the kernel's
 * loopback path, which every sender pays).
 *
 * usage:
 *   loadclient head  HOST PORT CONNS SECONDS PATH       HEAD PATH again and again
 *   loadclient small HOST PORT CONNS COUNT SIZE BASE    COUNT uploads: POST BASE, then PATCH SIZE bytes
 *   loadclient cwu   HOST PORT CONNS COUNT SIZE BASE    COUNT uploads: one POST BASE with SIZE bytes
 *   (small and cwu take a last argument "noverify" for servers that keep no offsets)
 * One request in flight per keep-alive connection. Every request carries Tus-Resumable: 1.0.0 and
 * every POST the metadata tuspyserver insists on. An upload counts when its last answer is 201/204
 * with Upload-Offset: SIZE; a HEAD when it is 200.
 * output (stdout, one line): "<ok> <failures> <seconds> <p50 s> <p99 s>" (latency per upload/HEAD)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAXCONN 256
#define BUFSZ 65536
#define METADATA "filename YmVuY2guYmlu,filetype YXBwbGljYXRpb24vb2N0ZXQtc3RyZWFt"

enum mode { HEAD, SMALL, CWU };

struct conn {
    int fd;
    int step; /* SMALL: 0 = POST sent, 1 = PATCH sent */
    size_t have;
    double t0;
    char buf[BUFSZ + 1];
};

static enum mode mode;
static const char *host, *target;
static int port;
static size_t size;
static char *body;
static char hostport[128];
static long todo, failures;
static int verify = 1; /* 0: do not check Upload-Offset (the nginx reference keeps none) */
static double *lat;
static size_t nlat, cap;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void record(double secs) {
    if (nlat == cap) lat = realloc(lat, (cap *= 2) * sizeof *lat);
    lat[nlat++] = secs;
}

static void fail(const char *what, const char *detail) {
    if (failures++ < 3) fprintf(stderr, "%s: %.60s\n", what, detail);
}

static int open_conn(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Write a request head and an optional body with writev (the socket blocks until all is out). */
static int send_request(int fd, const char *head, size_t hlen, const char *data, size_t dlen) {
    struct iovec iov[2] = {{(void *)head, hlen}, {(void *)data, dlen}}, *v = iov;
    int n = dlen ? 2 : 1;
    while (n > 0) {
        ssize_t w = writev(fd, v, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        size_t left = (size_t)w;
        while (n > 0 && left >= v->iov_len) {
            left -= v->iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            v->iov_base = (char *)v->iov_base + left;
            v->iov_len -= left;
        }
    }
    return 0;
}

static int send_post(struct conn *c) {
    char head[1024];
    int len = snprintf(head, sizeof head,
                       "POST %s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nUpload-Metadata: " METADATA
                       "\r\nUpload-Length: %zu\r\n%sContent-Length: %zu\r\n\r\n",
                       target, hostport, size,
                       mode == CWU ? "Content-Type: application/offset+octet-stream\r\n" : "",
                       mode == CWU ? size : 0);
    c->step = 0;
    return send_request(c->fd, head, (size_t)len, body, mode == CWU ? size : 0);
}

static int send_patch(struct conn *c, const char *path, size_t plen) {
    char head[1024];
    int len = snprintf(head, sizeof head,
                       "PATCH %.*s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                       "Content-Type: application/offset+octet-stream\r\nContent-Length: %zu\r\n\r\n",
                       (int)plen, path, hostport, size);
    c->step = 1;
    return send_request(c->fd, head, (size_t)len, body, size);
}

static int send_head(struct conn *c) {
    char head[1024];
    int len = snprintf(head, sizeof head, "HEAD %s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\n\r\n",
                       target, hostport);
    return send_request(c->fd, head, (size_t)len, NULL, 0);
}

/* The value of header `name` (with its ": ") in the head [start, end), or NULL. */
static const char *header(const char *start, const char *end, const char *name, size_t *vlen) {
    size_t n = strlen(name);
    for (const char *p = start; p && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
        if (*p == '\n') p++;
        if ((size_t)(end - p) > n && strncasecmp(p, name, n) == 0) {
            const char *v = p + n, *e = memchr(v, '\r', (size_t)(end - v));
            while (v < end && *v == ' ') v++;
            *vlen = e ? (size_t)(e - v) : 0;
            return v;
        }
    }
    return NULL;
}

/* Length of a complete chunked body (without trailers) at p, or -1 if more is needed. */
static long chunked_end(const char *p, size_t len) {
    size_t pos = 0;
    for (;;) {
        const char *eol = memmem(p + pos, len - pos, "\r\n", 2);
        if (!eol) return -1;
        size_t n = strtoul(p + pos, NULL, 16);
        pos = (size_t)(eol - p) + 2 + n + 2;
        if (pos > len) return -1;
        if (n == 0) return (long)pos;
    }
}

/* Start the next request on c: 1 = sent, 0 = nothing left (close it), -1 = error. */
static int next_request(struct conn *c, double t, int stop) {
    if (stop) return 0;
    c->t0 = t;
    if (mode == HEAD) return send_head(c) == 0 ? 1 : -1;
    if (todo <= 0) return 0;
    todo--;
    return send_post(c) == 0 ? 1 : -1;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: see the comment at the top of %s.c\n", argv[0]);
        return 2;
    }
    mode = strcmp(argv[1], "head") == 0 ? HEAD : strcmp(argv[1], "small") == 0 ? SMALL : CWU;
    host = argv[2];
    port = atoi(argv[3]);
    int nconn = atoi(argv[4]);
    double secs = 0;
    if (mode == HEAD) {
        secs = atof(argv[5]);
        target = argv[6];
    } else {
        if (argc < 8) return fprintf(stderr, "small/cwu need COUNT SIZE BASE\n"), 2;
        todo = atol(argv[5]);
        size = (size_t)atol(argv[6]);
        target = argv[7];
        verify = !(argc > 8 && strcmp(argv[8], "noverify") == 0);
        body = malloc(size ? size : 1);
        for (size_t i = 0; i < size; i++) body[i] = (char)(rand() & 0xff);
    }
    if (nconn < 1 || nconn > MAXCONN) return fprintf(stderr, "bad CONNS\n"), 2;
    snprintf(hostport, sizeof hostport, "%s:%d", host, port);
    lat = malloc((cap = 1 << 20) * sizeof *lat);

    static struct conn conns[MAXCONN];
    int ep = epoll_create1(0), live = 0;
    double start = now(), deadline = start + secs;
    for (int i = 0; i < nconn; i++) {
        struct conn *c = &conns[i];
        if ((c->fd = open_conn()) < 0) return perror("connect"), 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        int r = next_request(c, now(), 0);
        if (r < 0) return perror("send"), 1;
        if (r == 0) close(c->fd);
        else live++;
    }
    struct epoll_event evs[MAXCONN];
    while (live > 0) {
        int n = epoll_wait(ep, evs, MAXCONN, 1000);
        if (n < 0 && errno != EINTR) return perror("epoll_wait"), 1;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            ssize_t got = recv(c->fd, c->buf + c->have, BUFSZ - c->have, 0);
            if (got <= 0) {
                fail("connection", "closed by the server");
                close(c->fd);
                live--;
                continue;
            }
            c->have += (size_t)got;
            c->buf[c->have] = 0;
            int done = 0;
            while (!done) {
                char *end = strstr(c->buf, "\r\n\r\n");
                if (!end) break;
                end += 4;
                int status = c->have >= 12 ? atoi(c->buf + 9) : 0;
                size_t used = (size_t)(end - c->buf), vlen;
                const char *v;
                if (mode != HEAD && status >= 200 && status != 204 && status != 304) {
                    v = header(c->buf, end, "transfer-encoding:", &vlen);
                    if (v && vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0) {
                        long n = chunked_end(c->buf + used, c->have - used);
                        if (n < 0) break; /* body not complete yet */
                        used += (size_t)n;
                    } else if ((v = header(c->buf, end, "content-length:", &vlen))) {
                        used += strtoul(v, NULL, 10);
                    }
                }
                if (used > c->have) break; /* body not complete yet */
                double t = now();
                int r = 1;
                if (status >= 100 && status < 200) {
                    /* interim: wait for the final answer */
                } else if (mode == HEAD) {
                    if (status == 200) record(t - c->t0);
                    else fail("HEAD", c->buf);
                    r = next_request(c, t, t >= deadline);
                } else if (mode == SMALL && c->step == 0) {
                    const char *loc = header(c->buf, end, "location:", &vlen);
                    if (status == 201 && loc) {
                        /* absolute URL or path: send the path */
                        const char *path = loc, *lend = loc + vlen;
                        if (vlen > 7 && strncmp(loc, "http", 4) == 0) {
                            const char *s = strstr(loc, "://");
                            path = s ? memchr(s + 3, '/', (size_t)(lend - s - 3)) : NULL;
                        }
                        r = path ? (send_patch(c, path, (size_t)(lend - path)) == 0 ? 1 : -1) : -1;
                        if (!path) fail("POST", "Location without a path");
                    } else {
                        fail("POST", c->buf);
                        r = next_request(c, t, 0);
                    }
                } else {
                    v = header(c->buf, end, "upload-offset:", &vlen);
                    int want = mode == CWU ? 201 : 204;
                    if (status == want && (!verify || (v && strtoul(v, NULL, 10) == size))) record(t - c->t0);
                    else fail("upload", c->buf);
                    r = next_request(c, t, 0);
                }
                memmove(c->buf, c->buf + used, c->have - used);
                c->have -= used;
                c->buf[c->have] = 0;
                if (r <= 0) {
                    if (r < 0) fail("send", strerror(errno));
                    close(c->fd);
                    live--;
                    done = 1;
                }
            }
            if (!done && c->have >= BUFSZ) {
                fail("response", "larger than the buffer");
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
