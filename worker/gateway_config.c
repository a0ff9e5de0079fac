/* gateway_config.c - the agent's copy of the provider configuration and
 * the gateway's routes and header rules (see gateway.h). */
#include "gateway.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "xalloc.h"

/* opencode's built-in providers the gateway knows without a baseURL. */
static const struct {
    const char *name, *base, *env, *env2;
} gw_builtin[] = {
    { "anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY", NULL },
    { "openai", "https://api.openai.com/v1", "OPENAI_API_KEY", NULL },
    { "openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", NULL },
    { "google", "https://generativelanguage.googleapis.com/v1beta", "GEMINI_API_KEY",
      "GOOGLE_GENERATIVE_AI_API_KEY" },
};
#define GW_NBUILTIN (sizeof(gw_builtin) / sizeof(gw_builtin[0]))

static int gw_name_ok(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

static void gw_hide(struct gw_routes *r, const char *name, size_t len)
{
    for (size_t i = 0; i < r->hidden_n; i++)
        if (strlen(r->hidden[i]) == len && strncmp(r->hidden[i], name, len) == 0)
            return;
    r->hidden = xrealloc(r->hidden, (r->hidden_n + 1) * sizeof(*r->hidden));
    char *s = xmalloc(len + 1);
    memcpy(s, name, len);
    s[len] = '\0';
    r->hidden[r->hidden_n++] = s;
}

/* Every "{env:NAME}" anywhere in the configuration: hidden. */
static void gw_hide_env_refs(struct gw_routes *r, const char *text)
{
    for (const char *p = text; (p = strstr(p, "{env:")) != NULL;) {
        p += 5;
        const char *end = strchr(p, '}');
        if (end == NULL)
            break;
        if (end > p)
            gw_hide(r, p, (size_t)(end - p));
        p = end;
    }
}

static enum gw_auth gw_auth_of(const char *name, const cJSON *prov)
{
    const cJSON *npm = cJSON_GetObjectItemCaseSensitive(prov, "npm");
    const char *n = cJSON_IsString(npm) ? npm->valuestring : NULL;
    if (n != NULL)
        return strstr(n, "anthropic") ? GW_AUTH_ANTHROPIC
             : strstr(n, "google") ? GW_AUTH_GOOGLE : GW_AUTH_BEARER;
    if (strcmp(name, "anthropic") == 0)
        return GW_AUTH_ANTHROPIC;
    if (strcmp(name, "google") == 0)
        return GW_AUTH_GOOGLE;
    return GW_AUTH_BEARER;
}

static int gw_builtin_index(const char *name)
{
    for (size_t i = 0; i < GW_NBUILTIN; i++)
        if (strcmp(gw_builtin[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The provider's key: options.apiKey (literal or "{env:NAME}"), else its
 * usual variable. NULL: none. */
static const char *gw_key_of(const char *name, const cJSON *opts)
{
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(opts, "apiKey");
    if (cJSON_IsString(k) && k->valuestring[0] != '\0') {
        const char *v = k->valuestring;
        size_t n = strlen(v);
        if (strncmp(v, "{env:", 5) == 0 && v[n - 1] == '}') {
            char var[256];
            if (n - 6 >= sizeof(var))
                return NULL;
            memcpy(var, v + 5, n - 6);
            var[n - 6] = '\0';
            return getenv(var);
        }
        return v;
    }
    int b = gw_builtin_index(name);
    if (b < 0)
        return NULL;
    const char *v = getenv(gw_builtin[b].env);
    if (v == NULL && gw_builtin[b].env2 != NULL)
        v = getenv(gw_builtin[b].env2);
    return v;
}

static char *gw_header(enum gw_auth auth, const char *key)
{
    static const char *const name[] = {
        [GW_AUTH_BEARER] = "Authorization: Bearer ",
        [GW_AUTH_ANTHROPIC] = "x-api-key: ",
        [GW_AUTH_GOOGLE] = "x-goog-api-key: ",
    };
    /* A key with a line break would inject headers: refused. */
    if (key == NULL || *key == '\0' || strpbrk(key, "\r\n") != NULL)
        return NULL;
    size_t len = strlen(name[auth]) + strlen(key) + 1;
    char *h = xmalloc(len);
    snprintf(h, len, "%s%s", name[auth], key);
    return h;
}

/* models.<id>.cost {input, output} (USD per million tokens) of prov. */
static void gw_route_models(struct gw_route *rt, const cJSON *prov)
{
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(prov, "models");
    const cJSON *m;
    cJSON_ArrayForEach(m, models) {
        const cJSON *cost = cJSON_GetObjectItemCaseSensitive(m, "cost");
        const cJSON *ci = cJSON_GetObjectItemCaseSensitive(cost, "input");
        const cJSON *co = cJSON_GetObjectItemCaseSensitive(cost, "output");
        if (m->string == NULL || (!cJSON_IsNumber(ci) && !cJSON_IsNumber(co)))
            continue;
        rt->models = xrealloc(rt->models, (rt->models_n + 1) * sizeof(*rt->models));
        struct gw_model *gm = &rt->models[rt->models_n++];
        gm->id = xstrdup(m->string);
        gm->in = cJSON_IsNumber(ci) && ci->valuedouble > 0 ? ci->valuedouble : 0.0;
        gm->out = cJSON_IsNumber(co) && co->valuedouble > 0 ? co->valuedouble : 0.0;
    }
}

static void gw_route_add(struct gw_routes *r, const char *name, const char *base, char *header)
{
    r->v = xrealloc(r->v, (r->n + 1) * sizeof(*r->v));
    struct gw_route *rt = &r->v[r->n++];
    memset(rt, 0, sizeof(*rt));
    rt->name = xstrdup(name);
    rt->base = xstrdup(base);
    size_t n = strlen(rt->base);
    while (n > 0 && rt->base[n - 1] == '/')
        rt->base[--n] = '\0';
    rt->header = header;
}

static void gw_set_string(cJSON *obj, const char *name, const char *value)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
    cJSON_AddStringToObject(obj, name, value);
}

/* One provider: its route, and the agent's copy pointed at the gateway.
 * A provider the gateway cannot route keeps its URL but loses its key. */
static void gw_provider(struct gw_routes *r, const char *name, cJSON *prov, int port)
{
    cJSON *opts = cJSON_GetObjectItemCaseSensitive(prov, "options");
    if (!cJSON_IsObject(opts)) {
        cJSON_DeleteItemFromObjectCaseSensitive(prov, "options");
        opts = cJSON_AddObjectToObject(prov, "options");
    }
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(opts, "baseURL");
    int b = gw_builtin_index(name);
    const char *base = cJSON_IsString(url) ? url->valuestring
                     : b >= 0 ? gw_builtin[b].base : NULL;
    if (base != NULL && gw_name_ok(name) &&
        (strncmp(base, "http://", 7) == 0 || strncmp(base, "https://", 8) == 0)) {
        enum gw_auth auth = gw_auth_of(name, prov);
        gw_route_add(r, name, base, gw_header(auth, gw_key_of(name, opts)));
        r->v[r->n - 1].auth = auth;
        gw_route_models(&r->v[r->n - 1], prov);
        char local[128];
        snprintf(local, sizeof(local), "http://127.0.0.1:%d/%s", port, name);
        gw_set_string(opts, "baseURL", local);
    }
    gw_set_string(opts, "apiKey", GATEWAY_DUMMY_KEY);
}

char *gateway_rewrite_config(const char *config_json, int port, struct gw_routes *r)
{
    memset(r, 0, sizeof(*r));
    cJSON *c = config_json ? cJSON_Parse(config_json) : cJSON_CreateObject();
    if (!cJSON_IsObject(c)) {
        cJSON_Delete(c);
        return NULL;
    }
    if (config_json != NULL)
        gw_hide_env_refs(r, config_json);
    for (size_t i = 0; i < GW_NBUILTIN; i++) {
        gw_hide(r, gw_builtin[i].env, strlen(gw_builtin[i].env));
        if (gw_builtin[i].env2 != NULL)
            gw_hide(r, gw_builtin[i].env2, strlen(gw_builtin[i].env2));
    }
    cJSON *provs = cJSON_GetObjectItemCaseSensitive(c, "provider");
    if (!cJSON_IsObject(provs)) {
        cJSON_DeleteItemFromObjectCaseSensitive(c, "provider");
        provs = cJSON_AddObjectToObject(c, "provider");
    }
    /* Built-in providers the worker has a key for, when not configured. */
    for (size_t i = 0; i < GW_NBUILTIN; i++)
        if (!cJSON_HasObjectItem(provs, gw_builtin[i].name) &&
            gw_key_of(gw_builtin[i].name, NULL) != NULL)
            cJSON_AddObjectToObject(provs, gw_builtin[i].name);
    cJSON *p;
    cJSON_ArrayForEach(p, provs) {
        if (cJSON_IsObject(p))
            gw_provider(r, p->string, p, port);
    }
    char *text = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return text;
}

void gateway_routes_free(struct gw_routes *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].name);
        free(r->v[i].base);
        free(r->v[i].header);
        for (size_t m = 0; m < r->v[i].models_n; m++)
            free(r->v[i].models[m].id);
        free(r->v[i].models);
    }
    free(r->v);
    for (size_t i = 0; i < r->hidden_n; i++)
        free(r->hidden[i]);
    free(r->hidden);
    memset(r, 0, sizeof(*r));
}

int gateway_env_hidden(const struct gw_routes *r, const char *name)
{
    for (size_t i = 0; i < r->hidden_n; i++)
        if (strcmp(r->hidden[i], name) == 0)
            return 1;
    return 0;
}

const struct gw_route *gateway_route_find(const struct gw_routes *r, const char *path,
                                          const char **rest)
{
    if (path[0] != '/')
        return NULL;
    path++;
    size_t n = strcspn(path, "/?");
    for (size_t i = 0; i < r->n; i++) {
        if (strlen(r->v[i].name) == n && strncmp(r->v[i].name, path, n) == 0) {
            *rest = path + n;
            return &r->v[i];
        }
    }
    return NULL;
}

static int gw_in(const char *name, size_t len, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strlen(*list) == len && strncasecmp(*list, name, len) == 0)
            return 1;
    return 0;
}

int gateway_header_forwarded(const char *name, size_t len)
{
    static const char *const drop[] = {
        "authorization", "x-api-key", "api-key", "x-goog-api-key", "proxy-authorization",
        "cookie", "host", "connection", "keep-alive", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "content-length", "expect", NULL,
    };
    return !gw_in(name, len, drop);
}

int gateway_response_header_passed(const char *name, size_t len)
{
    static const char *const drop[] = {
        "connection", "keep-alive", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "content-length", "set-cookie", NULL,
    };
    return !gw_in(name, len, drop);
}

/* ---- egress allowlist ------------------------------------------------------ */

static int gw_is_address(const char *h, size_t n)
{
    char buf[64];
    unsigned char addr[16];
    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, h, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

int gateway_parse_port(const char *s, size_t n)
{
    long v = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

/* One entry "name", "*.suffix", "address", "[v6]" with ":port". */
static int gw_entry_matches(const char *e, size_t n, const char *host, int port, int *by_addr)
{
    int eport = 0;
    const char *h = e;
    size_t hl = n;
    if (n > 0 && e[0] == '[') {
        const char *rb = memchr(e, ']', n);
        if (rb == NULL)
            return 0;
        h = e + 1;
        hl = (size_t)(rb - h);
        if ((size_t)(rb + 1 - e) < n && rb[1] == ':')
            eport = gateway_parse_port(rb + 2, n - (size_t)(rb + 2 - e));
    } else {
        const char *colon = memchr(e, ':', n);
        if (colon != NULL && memchr(colon + 1, ':', n - (size_t)(colon + 1 - e)) == NULL) {
            hl = (size_t)(colon - e);
            eport = gateway_parse_port(colon + 1, n - (size_t)(colon + 1 - e));
        }
    }
    if (eport < 0 || (eport != 0 ? port != eport : (port != 80 && port != 443)))
        return 0;
    size_t L = strlen(host);
    int match;
    if (hl > 2 && h[0] == '*' && h[1] == '.')
        match = L > hl - 1 && strncasecmp(host + L - (hl - 1), h + 1, hl - 1) == 0;
    else
        match = L == hl && strncasecmp(host, h, hl) == 0;
    if (match)
        *by_addr = gw_is_address(h, hl);
    return match;
}

int gateway_egress_listed(const char *allow, const char *host, int port, int *by_address)
{
    *by_address = 0;
    if (allow == NULL || host == NULL || *host == '\0' || port <= 0 || port > 65535)
        return 0;
    for (const char *p = allow; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && isspace((unsigned char)*p)) {
            p++;
            n--;
        }
        while (n > 0 && isspace((unsigned char)p[n - 1]))
            n--;
        if (n > 0 && gw_entry_matches(p, n, host, port, by_address))
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

static int gw_v4_blocked(uint32_t a)
{
    static const struct { uint32_t net, mask; } blocked[] = {
        { 0x00000000, 0xff000000 },  /* 0/8 */
        { 0x0a000000, 0xff000000 },  /* 10/8 */
        { 0x64400000, 0xffc00000 },  /* 100.64/10 */
        { 0x7f000000, 0xff000000 },  /* 127/8 */
        { 0xa9fe0000, 0xffff0000 },  /* 169.254/16: link-local, metadata */
        { 0xac100000, 0xfff00000 },  /* 172.16/12 */
        { 0xc0a80000, 0xffff0000 },  /* 192.168/16 */
        { 0xe0000000, 0xe0000000 },  /* multicast, reserved, broadcast */
    };
    for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++)
        if ((a & blocked[i].mask) == blocked[i].net)
            return 1;
    return 0;
}

int gateway_addr_blocked(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return gw_v4_blocked(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6)
        return 1;
    const unsigned char *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (memcmp(b, mapped, 12) == 0)
        return gw_v4_blocked((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                             (uint32_t)b[14] << 8 | b[15]);
    static const unsigned char zero[15] = { 0 };
    if (memcmp(b, zero, 15) == 0)
        return 1;                                   /* :: and ::1 */
    return (b[0] & 0xfe) == 0xfc                    /* fc00::/7 unique local */
        || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)  /* fe80::/10 link-local */
        || b[0] == 0xff;                            /* multicast */
}
