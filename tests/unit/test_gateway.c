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

/* A connection to 127.0.0.1:port with a 5 s receive timeout, or -1. */
static int connect_loopback(int port)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0)
        return -1;
    struct sockaddr_in ga = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    ga.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { 5, 0 };
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(c, (struct sockaddr *)&ga, sizeof(ga)) != 0) {
        close(c);
        return -1;
    }
    return c;
}

/* CONNECT through a gateway with an allowlist: listed -> relayed,
 * unlisted -> 403, a loopback port admitted by a name -> 403. */
static int proxy_try(int port, const char *target, char *resp, size_t cap)
{
    int c = connect_loopback(port);
    if (c < 0)
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

    int c = connect_loopback(port);
    CHECK(c >= 0);
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

/* ---- accounting: usage fields of recorded answers ---- */

/* OpenAI-compatible stream with stream_options.include_usage: usage in
 * its own last chunk (choices []); the answer's text quotes a usage key,
 * which shows JSON-escaped and must not count. */
static const char rec_openai_sse[] =
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\"say \\\"prompt_tokens\\\": 999\"},\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
    "\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":1234,"
    "\"completion_tokens\":56,\"total_tokens\":1290,\"prompt_tokens_details\":"
    "{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n"
    "data: [DONE]\n\n";

/* A non-streamed answer, pretty-printed as some servers send it. */
static const char rec_openai_json[] =
    "{\n  \"id\": \"chatcmpl-2\",\n  \"object\": \"chat.completion\",\n"
    "  \"choices\": [\n    {\n      \"index\": 0,\n      \"message\": {\n"
    "        \"role\": \"assistant\",\n        \"content\": \"Hello.\"\n      },\n"
    "      \"finish_reason\": \"stop\"\n    }\n  ],\n  \"usage\": {\n"
    "    \"prompt_tokens\": 19,\n    \"completion_tokens\": 10,\n"
    "    \"total_tokens\": 29\n  }\n}";

/* Anthropic Messages stream: input in message_start, the cumulative
 * output in message_delta (message_start's output_tokens is 1). */
static const char rec_anthropic_sse[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\","
    "\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-20250514\","
    "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,"
    "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":3000,"
    "\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
    "{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: ping\ndata: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Hello\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/* Gemini streamGenerateContent?alt=sse: cumulative usageMetadata. */
static const char rec_gemini_sse[] =
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],"
    "\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,"
    "\"candidatesTokenCount\": 1,\"totalTokenCount\": 9},\"modelVersion\": "
    "\"gemini-2.0-flash\"}\r\n\r\n"
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" answer.\"}],"
    "\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": "
    "{\"promptTokenCount\": 8,\"candidatesTokenCount\": 12,\"totalTokenCount\": 20,"
    "\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 8}]},"
    "\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n";

/* Feeds text in pieces of step bytes (0: whole); returns in/out. */
static void scan(enum gw_auth d, const char *text, size_t len, size_t step, long long *in,
                 long long *out)
{
    static struct gw_scan s;
    gw_scan_init(&s, d);
    for (size_t i = 0; i < len; i += step ? step : len)
        gw_scan_feed(&s, text + i, step && len - i > step ? step : len - i);
    gw_scan_end(&s);
    *in = s.in;
    *out = s.out;
}

static void check_scan(enum gw_auth d, const char *text, long long want_in, long long want_out)
{
    static const size_t steps[] = { 0, 1, 2, 3, 7, 64, 1000 };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        long long in, out;
        scan(d, text, strlen(text), steps[i], &in, &out);
        CHECK(in == want_in);
        CHECK(out == want_out);
    }
}

static void test_usage_scan(void)
{
    check_scan(GW_AUTH_BEARER, rec_openai_sse, 1234, 56);
    check_scan(GW_AUTH_BEARER, rec_openai_json, 19, 10);
    check_scan(GW_AUTH_ANTHROPIC, rec_anthropic_sse, 472, 15);
    check_scan(GW_AUTH_GOOGLE, rec_gemini_sse, 8, 12);
    /* A stream without usage (include_usage not asked): nothing seen. */
    check_scan(GW_AUTH_BEARER, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n", -1, -1);
    /* One line far longer than the window (a long JSON answer): the
     * usage at its end is still read, in any piece size. */
    size_t pad = 3 * GW_SCAN_WINDOW + 17;
    static const char head[] = "{\"choices\":[{\"message\":{\"content\":\"";
    static const char tail[] = "\"}}],\"usage\":{\"prompt_tokens\":123456,"
                               "\"completion_tokens\":7890}}";
    const size_t hl = sizeof(head) - 1;
    char *big = malloc(hl + pad + sizeof(tail));
    CHECK(big != NULL);
    if (big == NULL)
        return;
    memcpy(big, head, hl);
    memset(big + hl, 'x', pad);
    memcpy(big + hl + pad, tail, sizeof(tail));
    check_scan(GW_AUTH_BEARER, big, 123456, 7890);
    free(big);
}

static void test_usage_cost(void)
{
    const char *cfg = "{\"provider\":{\"up\":{\"options\":{\"baseURL\":\"http://127.0.0.1:1/v1\","
                      "\"apiKey\":\"k\"},\"models\":{\"gpt-4o\":{\"cost\":{\"input\":2.5,"
                      "\"output\":10}},\"free\":{\"name\":\"free\"}}},"
                      "\"claude\":{\"npm\":\"@ai-sdk/anthropic\",\"options\":{\"baseURL\":"
                      "\"https://api.anthropic.com/v1\",\"apiKey\":\"k\"}}}}";
    struct gw_routes r;
    free(gateway_rewrite_config(cfg, 4100, &r));
    const struct gw_route *up = route(&r, "up");
    CHECK(up != NULL && up->auth == GW_AUTH_BEARER && up->models_n == 1);
    CHECK(route(&r, "claude") != NULL && route(&r, "claude")->auth == GW_AUTH_ANTHROPIC);
    /* 1M input at $2.5 + 2M output at $10 = $22.5. */
    double c = gw_cost(up, "gpt-4o", 1000000, 2000000);
    CHECK(c > 22.499 && c < 22.501);
    CHECK(gw_cost(up, "openai/gpt-4o", 1000000, 0) > 2.49);
    CHECK(gw_cost(up, "free", 1000000, 1000000) == 0.0);
    CHECK(gw_cost(up, "unknown", 1000000, 1000000) == 0.0);
    char m[64];
    const char *body = "{\"model\":\"gpt-4o\",\"stream\":true}";
    gw_request_model(body, strlen(body), "/chat/completions", m, sizeof(m));
    CHECK(strcmp(m, "gpt-4o") == 0);
    gw_request_model(NULL, 0, "/models/gemini-2.0-flash:streamGenerateContent?alt=sse", m,
                     sizeof(m));
    CHECK(strcmp(m, "gemini-2.0-flash") == 0);
    gateway_routes_free(&r);
}

/* Over budget: 429 to the agent, nothing forwarded, the flag set. */
static void test_budget_refusal(void)
{
    const char *cfg = "{\"provider\":{\"up\":{\"options\":{\"baseURL\":"
                      "\"http://127.0.0.1:1/v1\",\"apiKey\":\"k\"}}}}";
    struct gw_routes r;
    free(gateway_rewrite_config(cfg, 0, &r));
    int port = 0;
    char *sock = NULL, msg[256];
    struct gateway *g = gateway_start(&r, "unit-budget", NULL, NULL, &sock, &port);
    CHECK(g != NULL);
    CHECK(!gateway_budget_exceeded(g, msg, sizeof(msg)));
    /* The key's other jobs spent $5 today; its budget is $3. */
    gateway_set_budget(g, 0, 3, 5.0);
    int c = connect_loopback(port);
    CHECK(c >= 0);
    const char *req = "POST /up/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 2\r\n\r\n{}";
    send(c, req, strlen(req), 0);
    char resp[1024];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof(resp) - 1 && (k = recv(c, resp + n, sizeof(resp) - 1 - n, 0)) > 0)
        n += (size_t)k;
    resp[n] = '\0';
    close(c);
    CHECK(strncmp(resp, "HTTP/1.1 429", 12) == 0);
    CHECK(strstr(resp, "budget exceeded") != NULL);
    CHECK(gateway_budget_exceeded(g, msg, sizeof(msg)));
    CHECK(strstr(msg, "max_usd_per_day is 3 USD") != NULL);
    struct gw_usage u;
    gateway_usage(g, &u);
    CHECK(u.requests == 0);
    gateway_stop(g);
}

int main(void)
{
    test_rewrite();
    test_headers();
    test_live();
    test_egress_rules();
    test_proxy();
    test_usage_scan();
    test_usage_cost();
    test_budget_refusal();
    return check_report();
}
