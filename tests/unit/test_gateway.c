/* test_gateway.c - the provider gateway (worker/gateway.h): the agent's
 * copy of the provider configuration, routes, header rules, and a live
 * request through the gateway to a loopback upstream that streams. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "gateway.h"

static const char *opt(cJSON *c, const char *prov, const char *name)
{
    cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "provider"), prov);
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(p, "options"), name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const struct gw_route *route(const struct gw_routes *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].name, name) == 0)
            return &r->v[i];
    return NULL;
}

static void test_rewrite(void)
{
    setenv("GW_UNIT_KEY", "sk-unit-123", 1);
    setenv("ANTHROPIC_API_KEY", "sk-ant-xyz", 1);
    unsetenv("OPENAI_API_KEY");
    unsetenv("OPENROUTER_API_KEY");
    unsetenv("GEMINI_API_KEY");
    unsetenv("GOOGLE_GENERATIVE_AI_API_KEY");
    const char *in =
        "{\"provider\":{"
        "\"local\":{\"npm\":\"@ai-sdk/openai-compatible\",\"options\":"
        "{\"baseURL\":\"http://127.0.0.1:9/v1/\",\"apiKey\":\"{env:GW_UNIT_KEY}\"}},"
        "\"lit\":{\"options\":{\"baseURL\":\"https://x.example/api\",\"apiKey\":\"literal-key\"}},"
        "\"gem\":{\"npm\":\"@ai-sdk/google\",\"options\":{\"baseURL\":\"https://g.example\","
        "\"apiKey\":\"gk\"}},"
        "\"bad name\":{\"options\":{\"baseURL\":\"https://b.example\",\"apiKey\":\"secret-b\"}}"
        "},\"model\":\"local/m\"}";
    struct gw_routes r;
    char *out = gateway_rewrite_config(in, 4100, &r);
    CHECK(out != NULL);
    cJSON *c = cJSON_Parse(out);
    CHECK(c != NULL);
    CHECK_STR(opt(c, "local", "baseURL"), "http://127.0.0.1:4100/local");
    CHECK_STR(opt(c, "local", "apiKey"), GATEWAY_DUMMY_KEY);
    CHECK_STR(opt(c, "lit", "apiKey"), GATEWAY_DUMMY_KEY);
    /* Built-in anthropic added: the worker has its key. */
    CHECK_STR(opt(c, "anthropic", "baseURL"), "http://127.0.0.1:4100/anthropic");
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "provider"), "openai") == NULL);
    /* Unroutable: keeps its URL, loses its key. */
    CHECK_STR(opt(c, "bad name", "baseURL"), "https://b.example");
    CHECK_STR(opt(c, "bad name", "apiKey"), GATEWAY_DUMMY_KEY);
    CHECK(strstr(out, "sk-unit-123") == NULL && strstr(out, "literal-key") == NULL &&
          strstr(out, "secret-b") == NULL && strstr(out, "sk-ant-xyz") == NULL);
    CHECK_STR(cJSON_GetObjectItem(c, "model")->valuestring, "local/m");
    cJSON_Delete(c);

    const struct gw_route *l = route(&r, "local");
    CHECK(l != NULL && strcmp(l->base, "http://127.0.0.1:9/v1") == 0);
    CHECK(l != NULL && strcmp(l->header, "Authorization: Bearer sk-unit-123") == 0);
    CHECK(route(&r, "lit") && strcmp(route(&r, "lit")->header,
                                      "Authorization: Bearer literal-key") == 0);
    CHECK(route(&r, "gem") && strcmp(route(&r, "gem")->header, "x-goog-api-key: gk") == 0);
    const struct gw_route *a = route(&r, "anthropic");
    CHECK(a && strcmp(a->base, "https://api.anthropic.com/v1") == 0);
    CHECK(a && strcmp(a->header, "x-api-key: sk-ant-xyz") == 0);
    CHECK(route(&r, "bad name") == NULL);

    CHECK(gateway_env_hidden(&r, "GW_UNIT_KEY"));
    CHECK(gateway_env_hidden(&r, "ANTHROPIC_API_KEY"));
    CHECK(gateway_env_hidden(&r, "OPENAI_API_KEY"));
    CHECK(!gateway_env_hidden(&r, "PATH"));

    const char *rest = NULL;
    CHECK(gateway_route_find(&r, "/local/chat/completions?x=1", &rest) == l);
    CHECK(rest && strcmp(rest, "/chat/completions?x=1") == 0);
    CHECK(gateway_route_find(&r, "/localx/chat", &rest) == NULL);
    CHECK(gateway_route_find(&r, "local/chat", &rest) == NULL);
    free(out);
    gateway_routes_free(&r);

    CHECK(gateway_rewrite_config("[1]", 1, &r) == NULL);
    CHECK(gateway_rewrite_config("not json", 1, &r) == NULL);
    /* A key with a line break never becomes a header. */
    out = gateway_rewrite_config("{\"provider\":{\"p\":{\"options\":{\"baseURL\":"
                                 "\"http://h\",\"apiKey\":\"a\\r\\nX-Evil: 1\"}}}}", 1, &r);
    CHECK(out != NULL && route(&r, "p") != NULL && route(&r, "p")->header == NULL);
    free(out);
    gateway_routes_free(&r);
}

static void test_headers(void)
{
    static const char *const stripped[] = {
        "Authorization", "x-api-key", "X-Api-Key", "api-key", "x-goog-api-key", "Host",
        "Connection", "Content-Length", "Transfer-Encoding", "Expect", "Cookie",
    };
    for (size_t i = 0; i < sizeof(stripped) / sizeof(stripped[0]); i++)
        CHECK(!gateway_header_forwarded(stripped[i], strlen(stripped[i])));
    CHECK(gateway_header_forwarded("anthropic-version", 17));
    CHECK(gateway_header_forwarded("Content-Type", 12));
    CHECK(gateway_header_forwarded("Authorization-X", 15));
    CHECK(!gateway_response_header_passed("Content-Length", 14));
    CHECK(!gateway_response_header_passed("transfer-encoding", 17));
    CHECK(gateway_response_header_passed("Content-Type", 12));
}

static void test_egress_rules(void)
{
    const char *allow = "registry.npmjs.org, *.pypi.org:443 ,127.0.0.1:8080,[::1]:9000,h.example:81";
    int by = -1;
    CHECK(gateway_egress_listed(allow, "registry.npmjs.org", 443, &by) && by == 0);
    CHECK(gateway_egress_listed(allow, "REGISTRY.npmjs.org", 80, &by));
    CHECK(!gateway_egress_listed(allow, "registry.npmjs.org", 22, &by));
    CHECK(gateway_egress_listed(allow, "files.pypi.org", 443, &by));
    CHECK(!gateway_egress_listed(allow, "pypi.org", 443, &by));
    CHECK(!gateway_egress_listed(allow, "evilpypi.org", 443, &by));
    CHECK(!gateway_egress_listed(allow, "files.pypi.org", 80, &by));
    CHECK(gateway_egress_listed(allow, "127.0.0.1", 8080, &by) && by == 1);
    CHECK(!gateway_egress_listed(allow, "127.0.0.1", 8081, &by));
    CHECK(gateway_egress_listed(allow, "::1", 9000, &by) && by == 1);
    CHECK(gateway_egress_listed(allow, "h.example", 81, &by));
    CHECK(!gateway_egress_listed(allow, "h.example", 443, &by));
    CHECK(!gateway_egress_listed(NULL, "h.example", 81, &by));
    CHECK(!gateway_egress_listed("", "h.example", 81, &by));
    CHECK(!gateway_egress_listed("h.example:8x", "h.example", 8, &by));
    CHECK(!gateway_egress_listed("h.example:", "h.example", 443, &by));
    CHECK(gateway_parse_port("443", 3) == 443 && gateway_parse_port("0", 1) == -1 &&
          gateway_parse_port("65536", 5) == -1 && gateway_parse_port("1a", 2) == -1);

    static const char *const blocked[] = {
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
    };
    static const char *const open_v4[] = { "8.8.8.8", "172.32.0.1", "1.1.1.1" };
    for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        inet_pton(AF_INET, blocked[i], &sa.sin_addr);
        CHECK(gateway_addr_blocked((struct sockaddr *)&sa));
    }
    for (size_t i = 0; i < sizeof(open_v4) / sizeof(open_v4[0]); i++) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        inet_pton(AF_INET, open_v4[i], &sa.sin_addr);
        CHECK(!gateway_addr_blocked((struct sockaddr *)&sa));
    }
    static const char *const blocked6[] = { "::1", "::", "fe80::1", "fd00::1",
                                            "::ffff:127.0.0.1", "::ffff:169.254.169.254" };
    for (size_t i = 0; i < sizeof(blocked6) / sizeof(blocked6[0]); i++) {
        struct sockaddr_in6 sa = { .sin6_family = AF_INET6 };
        inet_pton(AF_INET6, blocked6[i], &sa.sin6_addr);
        CHECK(gateway_addr_blocked((struct sockaddr *)&sa));
    }
    struct sockaddr_in6 g6 = { .sin6_family = AF_INET6 };
    inet_pton(AF_INET6, "2001:4860:4860::8888", &g6.sin6_addr);
    CHECK(!gateway_addr_blocked((struct sockaddr *)&g6));
}

/* CONNECT through a gateway with an allowlist: listed -> relayed,
 * unlisted -> 403, a loopback port admitted by a name -> 403. */
static int proxy_try(int port, const char *target, char *resp, size_t cap)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in ga = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    ga.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { 5, 0 };
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(c, (struct sockaddr *)&ga, sizeof(ga)) != 0)
        return -1;
    char req[256];
    snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target);
    send(c, req, strlen(req), 0);
    send(c, "ping", 4, 0);
    shutdown(c, SHUT_WR);
    size_t n = 0;
    ssize_t k;
    while (n < cap - 1 && (k = recv(c, resp + n, cap - 1 - n, 0)) > 0)
        n += (size_t)k;
    resp[n] = '\0';
    close(c);
    return 0;
}

static void *echo_once(void *arg)
{
    int l = *(int *)arg;
    int fd = accept(l, NULL, NULL);
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0)
        send(fd, buf, (size_t)n, 0);
    close(fd);
    return NULL;
}

static void test_proxy(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    bind(l, (struct sockaddr *)&sa, sizeof(sa));
    listen(l, 4);
    getsockname(l, (struct sockaddr *)&sa, &sl);
    int up = ntohs(sa.sin_port);
    char allow[128];
    snprintf(allow, sizeof(allow), "127.0.0.1:%d,localhost:%d", up, up + 1);
    pthread_t t;
    pthread_create(&t, NULL, echo_once, &l);
    struct gw_routes r;
    free(gateway_rewrite_config("{}", 0, &r));
    int port = 0;
    char *sock = NULL;
    struct gateway *g = gateway_start(&r, "unit-proxy", NULL, allow, &sock, &port);
    CHECK(g != NULL);
    char resp[1024], target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", up);
    CHECK(proxy_try(port, target, resp, sizeof(resp)) == 0);
    CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0);
    CHECK(strstr(resp, "\r\n\r\nping") != NULL);
    pthread_join(t, NULL);
    snprintf(target, sizeof(target), "127.0.0.1:%d", up + 2);
    CHECK(proxy_try(port, target, resp, sizeof(resp)) == 0);
    CHECK(strncmp(resp, "HTTP/1.1 403", 12) == 0);
    snprintf(target, sizeof(target), "localhost:%d", up + 1);
    CHECK(proxy_try(port, target, resp, sizeof(resp)) == 0);
    CHECK(strncmp(resp, "HTTP/1.1 403", 12) == 0);
    gateway_stop(g);
    close(l);
}

/* ---- a live request ---- */

static int upstream_fd;
static atomic_int client_saw_first;
static char upstream_req[8192];

static void *upstream(void *arg)
{
    (void)arg;
    int fd = accept(upstream_fd, NULL, NULL);
    size_t n = 0;
    while (n < sizeof(upstream_req) - 1 && strstr(upstream_req, "\r\n\r\n") == NULL) {
        ssize_t k = recv(fd, upstream_req + n, sizeof(upstream_req) - 1 - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
        upstream_req[n] = '\0';
    }
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    send(fd, head, strlen(head), 0);
    send(fd, "b\r\ndata: one\n\n\r\n", 16, 0);
    /* The second part only once the client has the first: a buffering
     * gateway deadlocks here and the client times out. */
    for (int i = 0; i < 500 && !atomic_load(&client_saw_first); i++)
        usleep(10000);
    send(fd, "b\r\ndata: two\n\n\r\n0\r\n\r\n", 21, 0);
    close(fd);
    return NULL;
}

static void test_live(void)
{
    upstream_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    CHECK(bind(upstream_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(upstream_fd, 4) == 0);
    getsockname(upstream_fd, (struct sockaddr *)&sa, &sl);
    char cfg[256];
    snprintf(cfg, sizeof(cfg), "{\"provider\":{\"up\":{\"options\":{\"baseURL\":"
             "\"http://127.0.0.1:%d/v1\",\"apiKey\":\"real-key\"}}}}", ntohs(sa.sin_port));
    pthread_t t;
    pthread_create(&t, NULL, upstream, NULL);

    struct gw_routes r;
    free(gateway_rewrite_config(cfg, 0, &r));
    int port = 0;
    char *sock = NULL;
    struct gateway *g = gateway_start(&r, "unit-job", NULL, NULL, &sock, &port);
    CHECK(g != NULL && port > 0);

    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in ga = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    ga.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { 5, 0 };
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    CHECK(connect(c, (struct sockaddr *)&ga, sizeof(ga)) == 0);
    const char *req = "POST /up/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Authorization: Bearer agent-dummy\r\nx-api-key: agent-other\r\n"
                      "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    send(c, req, strlen(req), 0);
    char resp[4096];
    size_t n = 0;
    while (n < sizeof(resp) - 1) {
        ssize_t k = recv(c, resp + n, sizeof(resp) - 1 - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
        resp[n] = '\0';
        if (strstr(resp, "data: one"))
            atomic_store(&client_saw_first, 1);
    }
    resp[n] = '\0';
    close(c);
    pthread_join(t, NULL);
    gateway_stop(g);
    close(upstream_fd);

    CHECK(atomic_load(&client_saw_first));
    CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0);
    CHECK(strstr(resp, "text/event-stream") != NULL);
    CHECK(strstr(resp, "data: two") != NULL);
    CHECK(strstr(upstream_req, "POST /v1/chat/completions HTTP/1.1") == upstream_req);
    CHECK(strstr(upstream_req, "Authorization: Bearer real-key") != NULL);
    CHECK(strstr(upstream_req, "agent-dummy") == NULL);
    CHECK(strstr(upstream_req, "agent-other") == NULL);
}

int main(void)
{
    test_rewrite();
    test_headers();
    test_live();
    test_egress_rules();
    test_proxy();
    return check_report();
}
