/*
 * bench_gateway.c - the provider gateway (worker/gateway.h) against the
 * direct path, in the same run: time to first byte of a streamed answer
 * and throughput of a long one, from a loopback upstream that streams
 * server-sent events.
 *
 * Build: the `bench_gateway` target of tests/CMakeLists.txt
 *   (cmake --build BUILD --target bench_gateway; BUILD/tests/bench_gateway)
 * Prints RESULT lines like the other benchmarks:
 *   RESULT gateway_ttfb_extra_ms <median extra ms> <=20
 *   RESULT gateway_throughput_ratio_paced <via/direct> >=0.95
 *   RESULT gateway_throughput_ratio <via/direct> info     (unpaced, CPU-bound:
 *                                                          info; two more copies)
 * Everything stays on 127.0.0.1.
 */
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

#include "gateway.h"

#define ROUNDS 30
#define LONG_BYTES (256L << 20)
/* A paced stream (16 KiB per ms, ~16 MB/s: far above any model's
 * output): the gateway should keep up exactly. */
#define PACED_BYTES (16L << 20)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Upstream: "GET /short" -> one event; "GET /long" -> LONG_BYTES of
 * events as fast as loopback goes; "GET /paced" -> PACED_BYTES, paced. */
static void *serve_one(void *arg)
{
    int fd = (int)(long)arg;
    char req[4096];
    ssize_t n = recv(fd, req, sizeof(req) - 1, 0);
    req[n > 0 ? n : 0] = '\0';
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                       "Connection: close\r\n\r\n";
    send(fd, head, strlen(head), MSG_NOSIGNAL);
    static char ev[16384];
    memset(ev, 'x', sizeof(ev));
    memcpy(ev, "data: ", 6);
    ev[sizeof(ev) - 2] = '\n';
    ev[sizeof(ev) - 1] = '\n';
    int paced = strstr(req, "/paced") != NULL;
    long total = strstr(req, "/long") ? LONG_BYTES : paced ? PACED_BYTES : (long)sizeof(ev);
    for (long sent = 0; sent < total; sent += (long)sizeof(ev)) {
        if (send(fd, ev, sizeof(ev), MSG_NOSIGNAL) < 0)
            break;
        if (paced)
            usleep(1000);
    }
    close(fd);
    return NULL;
}

static void *upstream(void *arg)
{
    int l = (int)(long)arg;
    for (;;) {
        int fd = accept(l, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_t t;
        pthread_create(&t, NULL, serve_one, (void *)(long)fd);
        pthread_detach(t);
    }
}

/* One GET; *ttfb gets the ms to the first byte after the head's end,
 * returns the body bytes. */
static long get(int port, const char *path, double *ttfb)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    double t0 = now_ms();
    if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return -1;
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    send(c, req, (size_t)n, 0);
    static char buf[1 << 16];
    long total = 0;
    int first = 1;
    ssize_t k;
    while ((k = recv(c, buf, sizeof(buf), 0)) > 0) {
        if (first && memmem(buf, (size_t)k, "data: ", 6) != NULL) {
            *ttfb = now_ms() - t0;
            first = 0;
        }
        total += k;
    }
    close(c);
    return total;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(l, 64) != 0)
        return 1;
    getsockname(l, (struct sockaddr *)&sa, &sl);
    int up = ntohs(sa.sin_port);
    pthread_t t;
    pthread_create(&t, NULL, upstream, (void *)(long)l);

    char cfg[256];
    snprintf(cfg, sizeof(cfg), "{\"provider\":{\"up\":{\"options\":{\"baseURL\":"
             "\"http://127.0.0.1:%d\",\"apiKey\":\"k\"}}}}", up);
    struct gw_routes r;
    free(gateway_rewrite_config(cfg, 0, &r));
    int gw = 0;
    char *sock = NULL;
    struct gateway *g = gateway_start(&r, "bench", NULL, NULL, &sock, &gw);
    if (g == NULL)
        return 1;

    double d[ROUNDS], v[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        get(up, "/short", &d[i]);
        get(gw, "/up/short", &v[i]);
    }
    qsort(d, ROUNDS, sizeof(double), cmp);
    qsort(v, ROUNDS, sizeof(double), cmp);
    double ttfb_d = d[ROUNDS / 2], ttfb_v = v[ROUNDS / 2], x;
    double t0 = now_ms();
    long bd = get(up, "/long", &x);
    double td = now_ms() - t0;
    t0 = now_ms();
    long bv = get(gw, "/up/long", &x);
    double tv = now_ms() - t0;
    double mbd = (double)bd / 1048576.0 / (td / 1e3), mbv = (double)bv / 1048576.0 / (tv / 1e3);
    printf("ttfb median: direct %.2f ms, gateway %.2f ms\n", ttfb_d, ttfb_v);
    printf("long stream (%ld MiB): direct %.0f MiB/s, gateway %.0f MiB/s\n", LONG_BYTES >> 20,
           mbd, mbv);
    t0 = now_ms();
    long pd = get(up, "/paced", &x);
    double tpd = now_ms() - t0;
    t0 = now_ms();
    long pv = get(gw, "/up/paced", &x);
    double tpv = now_ms() - t0;
    double ratio_paced = ((double)pv / tpv) / ((double)pd / tpd);
    printf("paced stream (%ld MiB): direct %.0f ms, gateway %.0f ms\n", PACED_BYTES >> 20,
           tpd, tpv);
    printf("RESULT gateway_ttfb_extra_ms %.2f <=20\n", ttfb_v - ttfb_d);
    printf("RESULT gateway_throughput_ratio_paced %.3f >=0.95\n", ratio_paced);
    printf("RESULT gateway_throughput_ratio %.3f info\n", mbv / mbd);
    gateway_stop(g);
    free(sock);
    return 0;
}
