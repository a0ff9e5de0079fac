/*
 * bench_http.c - a small closed-loop HTTP/1.1 load generator for
 * bench/bench_api.py: CONNS threads, each with one keep-alive connection,
 * send the same request back to back for SECONDS and count the answers
 * (the same client for the api and for opencode serve, so their figures
 * compare). Reads each response by its Content-Length (no chunked
 * bodies; a 304 or 204 has none).
 *
 * Usage: bench_http HOST PORT METHOD PATH CONNS SECONDS [HEADER-LINES [BODY-FILE]]
 *   HEADER-LINES: extra request header lines, "\n"-separated ("" for none)
 * Prints: "requests=N seconds=S rps=R errors=E statuses=2xx:N,3xx:N,other:N"
 * Threading: each thread owns its connection and counters; totals are
 * summed after pthread_join.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BH_MAX_CONNS 1024
#define BH_BUF (256 * 1024)

struct bh_worker {
    pthread_t th;
    long      ok2, ok3, other, errors;
};

static struct sockaddr_in bh_addr;
static char  *bh_req;
static size_t bh_req_len;
static double bh_deadline;

static double bh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bh_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&bh_addr, sizeof(bh_addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One request and its response on fd. Returns the status, or -1. */
static int bh_exchange(int fd, char *buf)
{
    if (write(fd, bh_req, bh_req_len) != (ssize_t)bh_req_len)
        return -1;
    size_t have = 0;
    char *end = NULL;
    while (end == NULL) {
        ssize_t n = read(fd, buf + have, BH_BUF - 1 - have);
        if (n <= 0)
            return -1;
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end == NULL && have >= BH_BUF - 1)
            return -1;
    }
    int status = (int)strtol(buf + 9, NULL, 10);
    char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t body = cl != NULL && cl < end ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
    size_t got = have - (size_t)(end + 4 - buf);
    while (got < body) {
        ssize_t n = read(fd, buf, body - got < BH_BUF ? body - got : BH_BUF);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return status;
}

static void *bh_run(void *arg)
{
    struct bh_worker *w = arg;
    char *buf = malloc(BH_BUF);
    int fd = -1;
    while (buf != NULL && bh_now() < bh_deadline) {
        if (fd < 0 && (fd = bh_connect()) < 0) {
            w->errors++;
            usleep(1000);
            continue;
        }
        int st = bh_exchange(fd, buf);
        if (st < 0) {
            w->errors++;
            close(fd);
            fd = -1;
        } else if (st >= 200 && st < 300) {
            w->ok2++;
        } else if (st >= 300 && st < 400) {
            w->ok3++;
        } else {
            w->other++;
        }
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

/* The request text: method, path, extra header lines, optional body. */
static int bh_build(const char *host, const char *method, const char *path,
                    const char *headers, const char *body_file)
{
    char *body = NULL;
    long blen = 0;
    if (body_file != NULL) {
        FILE *f = fopen(body_file, "rb");
        if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (blen = ftell(f)) < 0)
            return -1;
        rewind(f);
        body = malloc((size_t)blen + 1);
        if (body == NULL || fread(body, 1, (size_t)blen, f) != (size_t)blen)
            return -1;
        fclose(f);
    }
    char hdr[4096];
    size_t hl = 0;
    for (const char *p = headers; p && *p && hl < sizeof(hdr) - 8;) {
        size_t n = strcspn(p, "\n");
        hl += (size_t)snprintf(hdr + hl, sizeof(hdr) - hl, "%.*s\r\n", (int)n, p);
        p += n + (p[n] == '\n');
    }
    hdr[hl] = '\0';
    size_t cap = 8192 + (size_t)blen;
    bh_req = malloc(cap);
    int n = snprintf(bh_req, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %ld\r\n\r\n",
                     method, path, host, hdr, blen);
    if (bh_req == NULL || n < 0 || (size_t)n + (size_t)blen >= cap)
        return -1;
    if (blen > 0)
        memcpy(bh_req + n, body, (size_t)blen);
    bh_req_len = (size_t)n + (size_t)blen;
    free(body);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: bench_http HOST PORT METHOD PATH CONNS SECONDS "
                        "[HEADER-LINES [BODY-FILE]]\n");
        return 2;
    }
    int conns = (int)strtol(argv[5], NULL, 10);
    double secs = strtod(argv[6], NULL);
    if (conns < 1 || conns > BH_MAX_CONNS || secs <= 0)
        return 2;
    bh_addr.sin_family = AF_INET;
    bh_addr.sin_port = htons((unsigned short)strtol(argv[2], NULL, 10));
    if (inet_pton(AF_INET, argv[1], &bh_addr.sin_addr) != 1 ||
        bh_build(argv[1], argv[3], argv[4], argc > 7 ? argv[7] : "",
                 argc > 8 ? argv[8] : NULL) != 0)
        return 2;
    static struct bh_worker w[BH_MAX_CONNS];
    double start = bh_now();
    bh_deadline = start + secs;
    for (int i = 0; i < conns; i++)
        pthread_create(&w[i].th, NULL, bh_run, &w[i]);
    long ok2 = 0, ok3 = 0, other = 0, errors = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(w[i].th, NULL);
        ok2 += w[i].ok2, ok3 += w[i].ok3, other += w[i].other, errors += w[i].errors;
    }
    double took = bh_now() - start;
    long total = ok2 + ok3 + other;
    printf("requests=%ld seconds=%.3f rps=%.1f errors=%ld statuses=2xx:%ld,3xx:%ld,other:%ld\n",
           total, took, (double)total / took, errors, ok2, ok3, other);
    return 0;
}
