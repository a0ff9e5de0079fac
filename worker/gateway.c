/* gateway.c - the per-job gateway's server side (see gateway.h). */
#include "gateway.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>

#include "log.h"
#include "timefmt.h"
#include "xalloc.h"

#define GW_HEAD_MAX   (64 * 1024)
#define GW_BODY_MAX   (64L << 20)
#define GW_IO_TIMEOUT_S 120
#define GW_SOCK_NAME  "gateway.sock"

struct gateway {
    struct gw_routes routes;
    char *allow;             /* AGENT_EGRESS_ALLOW with the proxy on, else NULL */
    char job[64];
    int listen_fd;
    int stop_pipe[2];
    pthread_t listener;
    atomic_int stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int active;              /* connection threads alive */
    /* Accounting and budgets, under mu. */
    struct gw_usage usage;
    long long max_tokens, max_usd;   /* 0: no limit */
    double spent_usd;                /* the key's other jobs today */
    atomic_int exceeded;
    char exceeded_msg[200];
};

/* One request from the agent, read whole before it goes upstream. */
struct gw_req {
    char *head;              /* request line + headers, NUL-terminated */
    char *method, *target;
    char *body;
    size_t body_len;
};

/* One connection's transfer. */
struct gw_xfer {
    struct gateway *g;
    CURL *curl;
    int fd;
    long status;
    char *hdrs;              /* response headers passed on, "Name: v\r\n"... */
    size_t hdrs_len;
    int head_sent, failed;
    size_t bytes_out;
    int64_t start_ms, ttfb_ms;
    struct gw_scan scan;     /* the answer's usage fields */
};

static pthread_once_t gw_curl_once = PTHREAD_ONCE_INIT;

static void gw_curl_init(void)
{
    /* Once per worker process; cleaned up at exit, when every job's
     * gateway has stopped. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK)
        atexit(curl_global_cleanup);
}

/* ---- I/O ------------------------------------------------------------------ */

static int gw_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One chunk (size line, data, CRLF) in as few system calls as it takes. */
static int gw_send_chunk(int fd, const char *sz, size_t szlen, const char *data, size_t len)
{
    struct iovec iov[3] = { { (void *)sz, szlen }, { (void *)data, len }, { "\r\n", 2 } };
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 3 };
    size_t want = szlen + len + 2;
    ssize_t n;
    do {
        n = sendmsg(fd, &m, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if ((size_t)n == want)
        return 0;
    /* A partial send: the rest piece by piece. */
    size_t done = (size_t)n;
    for (int i = 0; i < 3; i++) {
        if (done >= iov[i].iov_len) {
            done -= iov[i].iov_len;
            continue;
        }
        if (gw_send_all(fd, (const char *)iov[i].iov_base + done, iov[i].iov_len - done) != 0)
            return -1;
        done = 0;
    }
    return 0;
}

static void gw_answer_error(int fd, int status, const char *msg)
{
    char buf[512];
    char body[256];
    int bl = snprintf(body, sizeof(body), "{\"error\":{\"message\":\"gateway: %s\"}}", msg);
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d Error\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                     status, bl, body);
    gw_send_all(fd, buf, (size_t)n);
}

/* Reads up to the end of the head; the bytes after it stay in buf.
 * Returns the head's length (with its blank line) or -1. */
static long gw_read_head(int fd, char *buf, size_t cap, size_t *have)
{
    *have = 0;
    for (;;) {
        buf[*have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end != NULL)
            return (long)(end + 4 - buf);
        if (*have == cap)
            return -1;
        ssize_t n = recv(fd, buf + *have, cap - *have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        *have += (size_t)n;
    }
}

/* The value of header name in head (case-insensitive), or NULL. */
static const char *gw_head_value(const char *head, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p != NULL && p[2] != '\r';
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            *len = strcspn(v, "\r");
            return v;
        }
    }
    return NULL;
}

static int gw_recv_exact(int fd, char *dst, size_t len)
{
    while (len > 0) {
        ssize_t n = recv(fd, dst, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        dst += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Decodes a chunked body from the bytes already read (pre) and the
 * socket. Returns 0 or -1. */
static int gw_read_chunked(int fd, struct gw_req *q, const char *pre, size_t pre_len)
{
    size_t cap = 1 << 16, len = 0;
    char *raw = xmalloc(cap + 1);
    memcpy(raw, pre, pre_len);
    len = pre_len;
    q->body = xmalloc(1);
    q->body_len = 0;
    size_t pos = 0;
    for (;;) {
        raw[len] = '\0';
        char *eol = strstr(raw + pos, "\r\n");
        char *end = NULL;
        unsigned long long sz = eol ? strtoull(raw + pos, &end, 16) : 0;
        if (eol != NULL && len - (size_t)(eol + 2 - raw) >= sz + 2) {
            char *data = eol + 2;
            if (sz == 0)
                break;
            if (q->body_len + sz > (size_t)GW_BODY_MAX)
                goto fail;
            q->body = xrealloc(q->body, q->body_len + sz + 1);
            memcpy(q->body + q->body_len, data, sz);
            q->body_len += sz;
            pos = (size_t)(data + sz + 2 - raw);
            continue;
        }
        if (len == cap) {
            if (cap >= (size_t)GW_BODY_MAX * 2)
                goto fail;
            cap *= 2;
            raw = xrealloc(raw, cap + 1);
        }
        ssize_t n = recv(fd, raw + len, cap - len, 0);
        if (n <= 0)
            goto fail;
        len += (size_t)n;
    }
    free(raw);
    return 0;
fail:
    free(raw);
    return -1;
}

/* Reads one request. Returns 0, or an HTTP status to answer with. */
static int gw_read_request(int fd, struct gw_req *q)
{
    char *buf = xmalloc(GW_HEAD_MAX + 1);
    size_t have;
    long hl = gw_read_head(fd, buf, GW_HEAD_MAX, &have);
    if (hl < 0) {
        free(buf);
        return 400;
    }
    q->head = xmalloc((size_t)hl + 1);
    memcpy(q->head, buf, (size_t)hl);
    q->head[hl] = '\0';
    char *sp1 = strchr(q->head, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    int rc = 0;
    if (sp1 == NULL || sp2 == NULL || sp2 > strstr(q->head, "\r\n")) {
        rc = 400;
    } else {
        *sp1 = '\0';
        *sp2 = '\0';
        q->method = q->head;
        q->target = sp1 + 1;
        size_t vl;
        const char *te = gw_head_value(sp2 + 1, "Transfer-Encoding", &vl);
        const char *cl = gw_head_value(sp2 + 1, "Content-Length", &vl);
        if (te != NULL && strncasecmp(te, "chunked", 7) == 0) {
            rc = gw_read_chunked(fd, q, buf + hl, have - (size_t)hl) == 0 ? 0 : 400;
        } else {
            size_t pre = have - (size_t)hl;
            /* Without a length, bytes sent after the head belong to a
             * CONNECT tunnel (a client that did not wait for the 200). */
            long long n = cl ? strtoll(cl, NULL, 10) : (long long)pre;
            if (n < 0 || n > GW_BODY_MAX || (size_t)n < pre) {
                rc = n > GW_BODY_MAX ? 413 : 400;
            } else {
                q->body = xmalloc((size_t)n + 1);
                q->body_len = (size_t)n;
                memcpy(q->body, buf + hl, pre);
                rc = gw_recv_exact(fd, q->body + pre, (size_t)n - pre) == 0 ? 0 : 400;
            }
        }
    }
    free(buf);
    return rc;
}

/* ---- upstream ------------------------------------------------------------- */

static int gw_send_head(struct gw_xfer *x)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %ld %s\r\n", x->status,
                     x->status < 400 ? "OK" : "Error");
    x->head_sent = 1;
    static const char tail[] = "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if (gw_send_all(x->fd, line, (size_t)n) != 0 ||
        (x->hdrs_len > 0 && gw_send_all(x->fd, x->hdrs, x->hdrs_len) != 0) ||
        gw_send_all(x->fd, tail, sizeof(tail) - 1) != 0)
        return -1;
    return 0;
}

static size_t gw_on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct gw_xfer *x = arg;
    size_t len = size * nmemb;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): forget the previous headers. */
        x->hdrs_len = 0;
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (colon == NULL || x->head_sent ||
        !gateway_response_header_passed(data, (size_t)(colon - data)))
        return len;
    x->hdrs = xrealloc(x->hdrs, x->hdrs_len + len + 1);
    memcpy(x->hdrs + x->hdrs_len, data, len);
    x->hdrs_len += len;
    return len;
}

/* Each piece of the answer goes to the agent as it arrives: one chunk. */
static size_t gw_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct gw_xfer *x = arg;
    size_t len = size * nmemb;
    if (!x->head_sent) {
        x->ttfb_ms = time_mono_ms() - x->start_ms;
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->status);
        if (gw_send_head(x) != 0)
            goto fail;
    }
    if (len == 0)
        return 0;
    char sz[32];
    int n = snprintf(sz, sizeof(sz), "%zx\r\n", len);
    if (gw_send_chunk(x->fd, sz, (size_t)n, data, len) != 0)
        goto fail;
    x->bytes_out += len;
    gw_scan_feed(&x->scan, data, len);
    return len;
fail:
    x->failed = 1;
    return CURL_WRITEFUNC_ERROR;
}

static int gw_on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a; (void)b; (void)c; (void)d;
    struct gw_xfer *x = arg;
    return atomic_load(&x->g->stopping) ? 1 : 0;
}

/* The upstream request's headers: the agent's minus the stripped ones,
 * plus the provider's credential. */
static struct curl_slist *gw_headers(const struct gw_req *q, const struct gw_route *rt)
{
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    const char *p = strstr(q->method + strlen(q->method) + 1, "\r\n");
    for (; p != NULL && p[2] != '\r' && p[2] != '\0'; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        size_t ll = strcspn(line, "\r");
        const char *colon = memchr(line, ':', ll);
        if (colon == NULL || !gateway_header_forwarded(line, (size_t)(colon - line)))
            continue;
        char *one = xmalloc(ll + 1);
        memcpy(one, line, ll);
        one[ll] = '\0';
        h = curl_slist_append(h, one);
        free(one);
    }
    if (rt->header != NULL)
        h = curl_slist_append(h, rt->header);
    return h;
}

static CURLcode gw_perform(struct gw_xfer *x, const struct gw_req *q, const struct gw_route *rt,
                           const char *url)
{
    CURL *c = curl_easy_init();
    if (c == NULL)
        return CURLE_OUT_OF_MEMORY;
    x->curl = c;
    struct curl_slist *h = gw_headers(q, rt);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    if (q->body_len > 0 || strcmp(q->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body ? q->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, gw_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, gw_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, gw_on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    /* The largest read: curl passes on whatever one read returned, so
     * this never delays a small event. */
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return rc;
}

/* ---- the egress proxy (AGENT_EGRESS=allowlist) ---------------------------- */

/* "host:port" (CONNECT) or "http://host[:port]/path": host, port and the
 * origin-form path. Returns 0 or -1. */
static int gw_authority(const char *target, int connect_mode, char *host, size_t hl, int *port,
                        const char **path)
{
    const char *a = target;
    *port = 80;
    *path = "/";
    if (!connect_mode) {
        if (strncasecmp(a, "http://", 7) != 0)
            return -1;
        a += 7;
    }
    size_t n = strcspn(a, "/?");
    if (!connect_mode && a[n] != '\0')
        *path = a + n;
    const char *end = a + n, *colon = NULL, *h = a;
    if (*a == '[') {
        const char *rb = memchr(a, ']', n);
        if (rb == NULL)
            return -1;
        h = a + 1;
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        end = rb;
    } else {
        colon = memchr(a, ':', n);
        if (colon != NULL)
            end = colon;
    }
    if (colon != NULL)
        *port = gateway_parse_port(colon + 1, (size_t)(a + n - colon - 1));
    else if (connect_mode)
        return -1;
    size_t len = (size_t)(end - h);
    if (len == 0 || len >= hl || *port <= 0 || *port > 65535)
        return -1;
    memcpy(host, h, len);
    host[len] = '\0';
    return 0;
}

/* Connects to host:port, skipping blocked addresses unless the entry that
 * admitted it was an address. Returns the socket, -1 (unreachable) or -2
 * (only blocked addresses). */
static int gw_dial(const char *host, int port, int by_addr)
{
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return -1;
    int fd = -1, blocked = 0;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        if (!by_addr && gateway_addr_blocked(ai->ai_addr)) {
            blocked = 1;
            continue;
        }
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd >= 0 ? fd : blocked ? -2 : -1;
}

/* Relays both ways until both sides are done or the gateway stops. */
static void gw_splice(struct gateway *g, int a, int b, size_t *bytes)
{
    char buf[16384];
    int open_a = 1, open_b = 1;
    while ((open_a || open_b) && !atomic_load(&g->stopping)) {
        struct pollfd p[2] = { { open_a ? a : -1, POLLIN, 0 }, { open_b ? b : -1, POLLIN, 0 } };
        int r = poll(p, 2, 1000);
        if (r < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int from = i == 0 ? a : b, to = i == 0 ? b : a;
            ssize_t n = recv(from, buf, sizeof(buf), 0);
            if (n <= 0 || gw_send_all(to, buf, (size_t)n) != 0) {
                if (i == 0)
                    open_a = 0;
                else
                    open_b = 0;
                shutdown(to, SHUT_WR);
                if (n < 0 || n > 0)
                    return;
                continue;
            }
            *bytes += (size_t)n;
        }
    }
}

/* An absolute-form request's head for the origin: its headers without
 * the proxy's and framing ones, Connection: close, the body's length. */
static int gw_proxy_send_head(int up, const struct gw_req *q, const char *path)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s ", q->method);
    if (gw_send_all(up, line, (size_t)n) != 0 || gw_send_all(up, path, strlen(path)) != 0 ||
        gw_send_all(up, " HTTP/1.1\r\n", 11) != 0)
        return -1;
    const char *p = strstr(q->method + strlen(q->method) + 1, "\r\n");
    for (; p != NULL && p[2] != '\r' && p[2] != '\0'; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        size_t ll = strcspn(l, "\r");
        if (strncasecmp(l, "proxy-", 6) == 0 || strncasecmp(l, "connection:", 11) == 0 ||
            strncasecmp(l, "keep-alive:", 11) == 0 || strncasecmp(l, "content-length:", 15) == 0 ||
            strncasecmp(l, "transfer-encoding:", 18) == 0)
            continue;
        if (gw_send_all(up, l, ll) != 0 || gw_send_all(up, "\r\n", 2) != 0)
            return -1;
    }
    n = snprintf(line, sizeof(line), "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 q->body_len);
    if (gw_send_all(up, line, (size_t)n) != 0)
        return -1;
    return q->body_len > 0 ? gw_send_all(up, q->body, q->body_len) : 0;
}

static void gw_proxy(struct gateway *g, int fd, const struct gw_req *q)
{
    const int connect_mode = strcmp(q->method, "CONNECT") == 0;
    char host[256];
    int port, by_addr = 0, up = -1, status = 200;
    const char *path;
    size_t bytes = 0;
    if (g->allow == NULL)
        status = 403;
    else if (gw_authority(q->target, connect_mode, host, sizeof(host), &port, &path) != 0)
        status = 400;
    else if (!gateway_egress_listed(g->allow, host, port, &by_addr))
        status = 403;
    else if ((up = gw_dial(host, port, by_addr)) < 0)
        status = up == -2 ? 403 : 502;
    if (status != 200) {
        gw_answer_error(fd, status, status == 403 ? "egress not allowed" : "egress failed");
    } else {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        if ((connect_mode ? gw_send_all(fd, ok, sizeof(ok) - 1) != 0 ||
                                (q->body_len > 0 && gw_send_all(up, q->body, q->body_len) != 0)
                          : gw_proxy_send_head(up, q, path) != 0) == 0)
            gw_splice(g, fd, up, &bytes);
    }
    if (up >= 0)
        close(up);
    log_info("gateway.egress", "job=%s method=%s host=\"%s\" port=%d status=%d bytes=%zu",
             g->job, connect_mode ? "CONNECT" : "HTTP", status == 400 ? "-" : host,
             status == 400 ? 0 : port, status, bytes);
}

/* ---- accounting and budgets ------------------------------------------------ */

/* 1 (and the flag the job's tick reads) when a budget is used up: the
 * request is not forwarded. One request may overshoot; the next stops. */
static int gw_budget_over(struct gateway *g)
{
    pthread_mutex_lock(&g->mu);
    const struct gw_usage *u = &g->usage;
    long long tokens = u->input_tokens + u->output_tokens;
    int over = 1;
    if (g->max_tokens > 0 && tokens >= g->max_tokens)
        snprintf(g->exceeded_msg, sizeof(g->exceeded_msg),
                 "budget exceeded: max_tokens_per_job is %lld tokens, this job used %lld",
                 g->max_tokens, tokens);
    else if (g->max_usd > 0 && g->spent_usd + u->cost_usd >= (double)g->max_usd)
        snprintf(g->exceeded_msg, sizeof(g->exceeded_msg),
                 "budget exceeded: max_usd_per_day is %lld USD, the key spent %.6f USD today",
                 g->max_usd, g->spent_usd + u->cost_usd);
    else
        over = 0;
    pthread_mutex_unlock(&g->mu);
    if (over)
        atomic_store(&g->exceeded, 1);
    return over;
}

/* Adds one forwarded request's tokens and cost to the job's totals. */
static void gw_account(struct gateway *g, struct gw_xfer *x, const struct gw_req *q,
                       const struct gw_route *rt, const char *rest)
{
    gw_scan_end(&x->scan);
    long long in = x->scan.in > 0 ? x->scan.in : 0, out = x->scan.out > 0 ? x->scan.out : 0;
    char model[256];
    gw_request_model(q->body, q->body_len, rest, model, sizeof(model));
    double cost = gw_cost(rt, model, in, out);
    pthread_mutex_lock(&g->mu);
    g->usage.requests++;
    g->usage.input_tokens += in;
    g->usage.output_tokens += out;
    g->usage.cost_usd += cost;
    pthread_mutex_unlock(&g->mu);
    log_debug("gateway.usage", "job=%s provider=%s input_tokens=%lld output_tokens=%lld",
              g->job, rt->name, in, out);
}

void gateway_set_budget(struct gateway *g, long long max_tokens, long long max_usd,
                        double spent_usd)
{
    pthread_mutex_lock(&g->mu);
    g->max_tokens = max_tokens > 0 ? max_tokens : 0;
    g->max_usd = max_usd > 0 ? max_usd : 0;
    g->spent_usd = spent_usd > 0 ? spent_usd : 0.0;
    pthread_mutex_unlock(&g->mu);
}

void gateway_usage(struct gateway *g, struct gw_usage *out)
{
    pthread_mutex_lock(&g->mu);
    *out = g->usage;
    pthread_mutex_unlock(&g->mu);
}

int gateway_budget_exceeded(struct gateway *g, char *msg, size_t cap)
{
    if (g == NULL || !atomic_load(&g->exceeded))
        return 0;
    pthread_mutex_lock(&g->mu);
    snprintf(msg, cap, "%s", g->exceeded_msg);
    pthread_mutex_unlock(&g->mu);
    return 1;
}

/* One request: route, forward, stream back, log. */
static void gw_serve(struct gateway *g, int fd)
{
    struct gw_req q = { 0 };
    struct gw_xfer x = { .g = g, .fd = fd, .start_ms = time_mono_ms(), .ttfb_ms = -1 };
    int bad = gw_read_request(fd, &q);
    /* A client that sends even its gateway requests to the proxy. */
    static const char self[] = "http://127.0.0.1:" GATEWAY_BRIDGE_PORT_STR "/";
    if (!bad && strncmp(q.target, self, sizeof(self) - 1) == 0)
        q.target += sizeof(self) - 2;
    if (!bad && q.target[0] != '/') {
        gw_proxy(g, fd, &q);
        goto out;
    }
    const char *rest = NULL;
    const struct gw_route *rt = bad ? NULL : gateway_route_find(&g->routes, q.target, &rest);
    if (bad || rt == NULL) {
        gw_answer_error(fd, bad ? bad : 404, bad ? "bad request" : "no such provider");
        log_warn("gateway.refused", "job=%s status=%d", g->job, bad ? bad : 404);
        goto out;
    }
    if (gw_budget_over(g)) {
        /* The agent retries errors: the worker stops it (job tick). */
        gw_answer_error(fd, 429, "budget exceeded");
        log_warn("gateway.refused", "job=%s status=429 reason=budget", g->job);
        goto out;
    }
    gw_scan_init(&x.scan, rt->auth);
    size_t ul = strlen(rt->base) + strlen(rest) + 1;
    char *url = xmalloc(ul);
    snprintf(url, ul, "%s%s", rt->base, rest);
    CURLcode rc = gw_perform(&x, &q, rt, url);
    free(url);
    gw_account(g, &x, &q, rt, rest);
    if (x.head_sent && !x.failed)
        gw_send_all(fd, "0\r\n\r\n", 5);
    else if (!x.head_sent && rc == CURLE_OK)
        (void)(gw_send_head(&x) == 0 && gw_send_all(fd, "0\r\n\r\n", 5) == 0);
    else if (!x.head_sent)
        gw_answer_error(fd, 502, "upstream unreachable");
    size_t pl = strcspn(rest, "?");
    log_info("gateway.request",
             "job=%s provider=%s method=%s path=\"%.*s\" status=%ld bytes_in=%zu bytes_out=%zu "
             "ttfb_ms=%lld ms=%lld curl=%d",
             g->job, rt->name, q.method, (int)(pl > 200 ? 200 : pl), rest, x.status, q.body_len,
             x.bytes_out, (long long)x.ttfb_ms, (long long)(time_mono_ms() - x.start_ms),
             (int)rc);
out:
    free(q.head);
    free(q.body);
    free(x.hdrs);
}

struct gw_conn {
    struct gateway *g;
    int fd;
};

static void *gw_conn_thread(void *arg)
{
    struct gw_conn *c = arg;
    struct gateway *g = c->g;
    struct timeval tv = { GW_IO_TIMEOUT_S, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    gw_serve(g, c->fd);
    close(c->fd);
    free(c);
    pthread_mutex_lock(&g->mu);
    g->active--;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static void *gw_listener(void *arg)
{
    struct gateway *g = arg;
    for (;;) {
        struct pollfd p[2] = { { g->listen_fd, POLLIN, 0 }, { g->stop_pipe[0], POLLIN, 0 } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents != 0 || atomic_load(&g->stopping))
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(g->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct gw_conn *c = xmalloc(sizeof(*c));
        c->g = g;
        c->fd = fd;
        pthread_mutex_lock(&g->mu);
        g->active++;
        pthread_mutex_unlock(&g->mu);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, gw_conn_thread, c) != 0) {
            close(fd);
            free(c);
            pthread_mutex_lock(&g->mu);
            g->active--;
            pthread_mutex_unlock(&g->mu);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

/* ---- start/stop ------------------------------------------------------------ */

/* Listens on dir/gateway.sock (by the folder's descriptor: sun_path is
 * short) or on 127.0.0.1:0. Returns the socket or -errno. */
static int gw_listen(const char *dir, char **sock_path, int *port)
{
    int fd = socket(dir ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (dir != NULL) {
        int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct sockaddr_un su = { .sun_family = AF_UNIX };
        snprintf(su.sun_path, sizeof(su.sun_path), "/proc/self/fd/%d/" GW_SOCK_NAME, dfd);
        if (dfd < 0 || (unlinkat(dfd, GW_SOCK_NAME, 0) != 0 && errno != ENOENT) ||
            bind(fd, (struct sockaddr *)&su, sizeof(su)) != 0 ||
            fchmodat(dfd, GW_SOCK_NAME, 0666, 0) != 0)
            rc = -errno;
        if (dfd >= 0)
            close(dfd);
        size_t n = strlen(dir) + sizeof(GW_SOCK_NAME) + 2;
        *sock_path = xmalloc(n);
        snprintf(*sock_path, n, "%s/" GW_SOCK_NAME, dir);
    } else {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof(sa);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
            rc = -errno;
        *port = ntohs(sa.sin_port);
    }
    if (rc == 0 && listen(fd, 64) != 0)
        rc = -errno;
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

struct gateway *gateway_start(struct gw_routes *routes, const char *job_id, const char *dir,
                              const char *egress_allow, char **sock_path, int *port)
{
    pthread_once(&gw_curl_once, gw_curl_init);
    struct gateway *g = xcalloc(1, sizeof(*g));
    snprintf(g->job, sizeof(g->job), "%s", job_id);
    g->listen_fd = gw_listen(dir, sock_path, port);
    if (g->listen_fd < 0 || pipe2(g->stop_pipe, O_CLOEXEC) != 0) {
        log_error("gateway.start_failed", "job=%s errno=%d", job_id,
                  g->listen_fd < 0 ? -g->listen_fd : errno);
        if (g->listen_fd >= 0)
            close(g->listen_fd);
        free(g);
        return NULL;
    }
    g->routes = *routes;
    memset(routes, 0, sizeof(*routes));
    g->allow = egress_allow ? xstrdup(egress_allow) : NULL;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    if (pthread_create(&g->listener, NULL, gw_listener, g) != 0) {
        log_error("gateway.start_failed", "job=%s reason=thread", job_id);
        *routes = g->routes;
        free(g->allow);
        close(g->listen_fd);
        close(g->stop_pipe[0]);
        close(g->stop_pipe[1]);
        free(g);
        return NULL;
    }
    return g;
}

void gateway_stop(struct gateway *g)
{
    if (g == NULL)
        return;
    atomic_store(&g->stopping, 1);
    ssize_t w = write(g->stop_pipe[1], "x", 1);
    (void)w;
    pthread_join(g->listener, NULL);
    close(g->listen_fd);
    pthread_mutex_lock(&g->mu);
    while (g->active > 0)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    close(g->stop_pipe[0]);
    close(g->stop_pipe[1]);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    gateway_routes_free(&g->routes);
    free(g->allow);
    free(g);
}
