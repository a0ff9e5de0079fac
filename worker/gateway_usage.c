/* gateway_usage.c - reading token counts from providers' answers as they
 * stream through the gateway, and pricing them (see gateway.h). */
#include "gateway.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

void gw_scan_init(struct gw_scan *s, enum gw_auth dialect)
{
    memset(s, 0, sizeof(*s));
    s->dialect = dialect;
    s->in = -1;
    s->out = -1;
}

/* The field names of a dialect: input, output. */
static void gw_scan_keys(enum gw_auth d, const char **in, const char **out)
{
    switch (d) {
    case GW_AUTH_ANTHROPIC:
        *in = "\"input_tokens\"";
        *out = "\"output_tokens\"";
        break;
    case GW_AUTH_GOOGLE:
        *in = "\"promptTokenCount\"";
        *out = "\"candidatesTokenCount\"";
        break;
    default:
        *in = "\"prompt_tokens\"";
        *out = "\"completion_tokens\"";
        break;
    }
}

/* Every complete `"key": N` in s->buf[0..len): the last N into *v. A key
 * inside a JSON string shows as \"key\" and is skipped; a number that
 * reaches the end of the window is not complete yet. */
static void gw_scan_key(const char *buf, size_t len, const char *key, long long *v)
{
    size_t kl = strlen(key);
    for (const char *p = buf; (p = strstr(p, key)) != NULL; p += kl) {
        if (p > buf && p[-1] == '\\')
            continue;
        const char *q = p + kl;
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
            q++;
        if (*q != ':')
            continue;
        q++;
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
            q++;
        if (!isdigit((unsigned char)*q))
            continue;
        char *end;
        long long n = strtoll(q, &end, 10);
        if ((size_t)(end - buf) >= len)
            continue;               /* may go on in the next piece */
        *v = n;
    }
}

static void gw_scan_window(struct gw_scan *s)
{
    const char *ki, *ko;
    gw_scan_keys(s->dialect, &ki, &ko);
    s->buf[s->len] = '\0';
    gw_scan_key(s->buf, s->len, ki, &s->in);
    gw_scan_key(s->buf, s->len, ko, &s->out);
}

void gw_scan_feed(struct gw_scan *s, const char *data, size_t len)
{
    while (len > 0) {
        size_t room = GW_SCAN_WINDOW - s->len;
        size_t n = len < room ? len : room;
        /* NULs would hide the rest of the window from strstr. */
        for (size_t i = 0; i < n; i++)
            s->buf[s->len + i] = data[i] != '\0' ? data[i] : ' ';
        const char *nl = memchr(data, '\n', n);
        s->len += n;
        data += n;
        len -= n;
        if (nl == NULL && s->len < GW_SCAN_WINDOW)
            continue;
        gw_scan_window(s);
        /* Keep the tail: a key or number cut at the end is read again
         * whole with what follows. */
        size_t keep = s->len < GW_SCAN_KEEP ? s->len : GW_SCAN_KEEP;
        memmove(s->buf, s->buf + s->len - keep, keep);
        s->len = keep;
    }
}

void gw_scan_end(struct gw_scan *s)
{
    /* At the end a number may close the window: add a terminator. */
    if (s->len < GW_SCAN_WINDOW)
        s->buf[s->len++] = '\n';
    gw_scan_window(s);
    s->len = 0;
}

void gw_request_model(const char *body, size_t body_len, const char *path, char *out,
                      size_t cap)
{
    out[0] = '\0';
    cJSON *j = body != NULL && body_len > 0 ? cJSON_ParseWithLength(body, body_len) : NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (cJSON_IsString(m)) {
        snprintf(out, cap, "%s", m->valuestring);
    } else if (path != NULL) {
        const char *p = strstr(path, "/models/");
        if (p != NULL) {
            p += strlen("/models/");
            size_t n = strcspn(p, ":/?");
            if (n < cap) {
                memcpy(out, p, n);
                out[n] = '\0';
            }
        }
    }
    cJSON_Delete(j);
}

double gw_cost(const struct gw_route *rt, const char *model, long long in, long long out)
{
    for (size_t i = 0; i < rt->models_n; i++) {
        const char *id = rt->models[i].id;
        const char *slash = strrchr(model, '/');
        if (strcmp(id, model) == 0 || (slash != NULL && strcmp(id, slash + 1) == 0))
            return ((double)in * rt->models[i].in + (double)out * rt->models[i].out) / 1e6;
    }
    return 0.0;
}
