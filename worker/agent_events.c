/*
 * agent_events.c - see agent_events.h.
 *
 * Event shapes seen from `opencode run --format json` (opencode 1.18):
 *   {"type":"step_start","timestamp":N,"sessionID":S,"part":{"id","messageID",
 *       "sessionID","type":"step-start"}}
 *   {"type":"tool_use",...,"part":{"type":"tool","tool":"write","callID",
 *       "state":{"status":"completed"|"error","input":{...},"output":"..."
 *       | "error":"...","metadata":{...},"title","time":{...}},"id",
 *       "sessionID","messageID"}}
 *   {"type":"text",...,"part":{"id","messageID","sessionID","type":"text",
 *       "text":"...","time":{...}}}
 *   {"type":"step_finish",...,"part":{"id","reason":"tool-calls"|"stop",
 *       "messageID","sessionID","type":"step-finish","tokens":{"total",
 *       "input","output","reasoning","cache":{"write","read"}},"cost":0}}
 *   {"type":"error",...,"error":{"name":"UnknownError","data":{"message":
 *       "...","ref":"..."}}}
 * Every step is its own assistant message (its own messageID).
 */
#include "agent_events.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tool entries kept in the summary: enough to see what the agent did,
 * bounded so a runaway agent cannot bloat the job row. */
#define AGENT_TOOLS_MAX   200
/* The final text is stored in the job row and returned by the API; a
 * model that loops can print megabytes. */
#define AGENT_TEXT_MAX    (1024 * 1024)
/* An error message is for people to read. */
#define AGENT_ERROR_MAX   4096

/* Parser state beyond what agent_report holds. */
struct agent_parse {
    struct agent_report *r;
    char   *text_msg;     /* messageID of r->text, NULL when unknown */
    size_t  text_len;
    cJSON  *tools;        /* array, owned until moved into the summary */
    size_t  ntools;
};

/* Length of s cut to at most max bytes without splitting a UTF-8
 * sequence. */
static size_t agent_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    /* Step back over continuation bytes (10xxxxxx) to a sequence start. */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static const char *agent_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Adds a non-negative JSON number to *sum, ignoring anything else. */
static void agent_add_count(long long *sum, const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)
        return;
    /* Token counts are integers far below 2^53; clamp absurd ones. */
    double d = v->valuedouble;
    if (d > 1e15)
        d = 1e15;
    long long add = (long long)d;
    if (*sum > (long long)1e18 - add)
        *sum = (long long)1e18;
    else
        *sum += add;
}

static int agent_on_text(struct agent_parse *p, const cJSON *part)
{
    const char *text = agent_str(part, "text");
    if (text == NULL)
        return 0;
    const char *msg = agent_str(part, "messageID");
    size_t tlen = strlen(text);
    struct agent_report *r = p->r;

    /* Several text parts of one message belong together; a text part of
     * a later message replaces what came before (the last message is the
     * answer, earlier ones are commentary between tool calls). */
    int join = r->text != NULL && msg != NULL && p->text_msg != NULL &&
               strcmp(msg, p->text_msg) == 0;
    size_t base = join ? p->text_len + 1 : 0;
    if (base >= AGENT_TEXT_MAX)
        return 0;                       /* full: drop further parts */
    tlen = agent_utf8_cut(text, tlen, AGENT_TEXT_MAX - base);

    char *buf = malloc(base + tlen + 1);
    if (buf == NULL)
        return -1;
    if (join) {
        memcpy(buf, r->text, p->text_len);
        buf[p->text_len] = '\n';
    }
    memcpy(buf + base, text, tlen);
    buf[base + tlen] = '\0';

    char *msg_copy = NULL;
    if (msg != NULL && !join) {
        msg_copy = strdup(msg);
        if (msg_copy == NULL) {
            free(buf);
            return -1;
        }
    }
    free(r->text);
    r->text = buf;
    p->text_len = base + tlen;
    if (!join) {
        free(p->text_msg);
        p->text_msg = msg_copy;
    }
    return 0;
}

static void agent_on_step_finish(struct agent_parse *p, const cJSON *part)
{
    struct agent_report *r = p->r;
    r->has_usage = 1;
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(part, "tokens");
    if (cJSON_IsObject(tok)) {
        agent_add_count(&r->tokens_input, tok, "input");
        agent_add_count(&r->tokens_output, tok, "output");
        agent_add_count(&r->tokens_reasoning, tok, "reasoning");
        const cJSON *cache = cJSON_GetObjectItemCaseSensitive(tok, "cache");
        if (cJSON_IsObject(cache)) {
            agent_add_count(&r->tokens_cache_read, cache, "read");
            agent_add_count(&r->tokens_cache_write, cache, "write");
        }
    }
    const cJSON *cost = cJSON_GetObjectItemCaseSensitive(part, "cost");
    if (cJSON_IsNumber(cost) && isfinite(cost->valuedouble) && cost->valuedouble >= 0)
        r->cost += cost->valuedouble;
}

static int agent_on_tool(struct agent_parse *p, const cJSON *part)
{
    if (p->ntools >= AGENT_TOOLS_MAX)
        return 0;
    const char *tool = agent_str(part, "tool");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(part, "state");
    const char *status = cJSON_IsObject(state) ? agent_str(state, "status") : NULL;

    cJSON *e = cJSON_CreateObject();
    if (e == NULL)
        return -1;
    if ((tool ? cJSON_AddStringToObject(e, "tool", tool) : cJSON_AddNullToObject(e, "tool")) == NULL ||
        (status ? cJSON_AddStringToObject(e, "status", status)
                : cJSON_AddNullToObject(e, "status")) == NULL ||
        !cJSON_AddItemToArray(p->tools, e)) {
        cJSON_Delete(e);
        return -1;
    }
    p->ntools++;
    return 0;
}

/* "name: message" from {"name":..,"data":{"message":..}}; also takes a
 * bare string or a top-level "message", whichever the version printed.
 * Malloc'd, cut to AGENT_ERROR_MAX; NULL when out of memory. */
static char *agent_error_text(const cJSON *ev)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(ev, "error");
    const char *name = NULL, *msg = NULL;
    if (cJSON_IsString(err)) {
        msg = err->valuestring;
    } else if (cJSON_IsObject(err)) {
        name = agent_str(err, "name");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(err, "data");
        if (cJSON_IsObject(data))
            msg = agent_str(data, "message");
        if (msg == NULL)
            msg = agent_str(err, "message");
    }
    if (name != NULL && name[0] == '\0')
        name = NULL;
    if (msg != NULL && msg[0] == '\0')
        msg = NULL;
    if (name == NULL && msg == NULL)
        name = "unknown error";

    size_t nl = name ? strlen(name) : 0, ml = msg ? strlen(msg) : 0;
    size_t sep = name && msg ? 2 : 0;
    nl = agent_utf8_cut(name ? name : "", nl, AGENT_ERROR_MAX);
    ml = agent_utf8_cut(msg ? msg : "", ml, AGENT_ERROR_MAX - nl);
    char *s = malloc(nl + sep + ml + 1);
    if (s == NULL)
        return NULL;
    if (nl > 0)
        memcpy(s, name, nl);
    if (sep)
        memcpy(s + nl, ": ", 2);
    if (ml > 0)
        memcpy(s + nl + sep, msg, ml);
    s[nl + sep + ml] = '\0';
    return s;
}

static int agent_on_error(struct agent_parse *p, const cJSON *ev)
{
    if (p->r->error != NULL)
        return 0;                       /* the first error is the cause */
    p->r->error = agent_error_text(ev);
    return p->r->error != NULL ? 0 : -1;
}

/* One line. Returns 0 (also for junk), -1 when out of memory. */
static int agent_parse_line(struct agent_parse *p, const char *line, size_t len)
{
    /* Blank lines (and a trailing "\r") are not events. */
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (len == 0)
        return 0;
    cJSON *ev = cJSON_ParseWithLength(line, len);
    if (ev == NULL)
        return 0;                       /* junk, or a truncated last line */
    const char *type = cJSON_IsObject(ev) ? agent_str(ev, "type") : NULL;
    if (type == NULL) {
        cJSON_Delete(ev);
        return 0;
    }
    p->r->events++;
    const cJSON *part = cJSON_GetObjectItemCaseSensitive(ev, "part");
    int rc = 0;
    if (strcmp(type, "error") == 0)
        rc = agent_on_error(p, ev);
    else if (!cJSON_IsObject(part))
        rc = 0;
    else if (strcmp(type, "text") == 0)
        rc = agent_on_text(p, part);
    else if (strcmp(type, "step_finish") == 0)
        agent_on_step_finish(p, part);
    else if (strcmp(type, "tool_use") == 0)
        rc = agent_on_tool(p, part);
    cJSON_Delete(ev);
    return rc;
}

static int agent_add_str_or_null(cJSON *obj, const char *key, const char *s)
{
    return (s ? cJSON_AddStringToObject(obj, key, s) : cJSON_AddNullToObject(obj, key)) ? 0 : -1;
}

static int agent_build_summary(struct agent_parse *p)
{
    struct agent_report *r = p->r;
    cJSON *sum = cJSON_CreateObject();
    if (sum == NULL)
        return -1;
    int rc = -1;
    if (agent_add_str_or_null(sum, "text", r->text) != 0 ||
        agent_add_str_or_null(sum, "error", r->error) != 0)
        goto out;
    cJSON *tok = cJSON_AddObjectToObject(sum, "tokens");
    if (tok == NULL ||
        cJSON_AddNumberToObject(tok, "input", (double)r->tokens_input) == NULL ||
        cJSON_AddNumberToObject(tok, "output", (double)r->tokens_output) == NULL ||
        cJSON_AddNumberToObject(tok, "reasoning", (double)r->tokens_reasoning) == NULL ||
        cJSON_AddNumberToObject(tok, "cache_read", (double)r->tokens_cache_read) == NULL ||
        cJSON_AddNumberToObject(tok, "cache_write", (double)r->tokens_cache_write) == NULL ||
        cJSON_AddNumberToObject(sum, "cost", r->cost) == NULL)
        goto out;
    if (!cJSON_AddItemToObject(sum, "tools", p->tools))
        goto out;
    p->tools = NULL;                    /* owned by sum now */
    if (cJSON_AddNumberToObject(sum, "events", (double)r->events) == NULL)
        goto out;
    r->summary = sum;
    sum = NULL;
    rc = 0;
out:
    cJSON_Delete(sum);
    return rc;
}

int agent_report_parse(const char *buf, size_t len, struct agent_report *r)
{
    memset(r, 0, sizeof(*r));
    struct agent_parse p = { .r = r };
    int rc = -1;
    p.tools = cJSON_CreateArray();
    if (p.tools == NULL)
        goto out;

    size_t pos = 0;
    while (buf != NULL && pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        if (agent_parse_line(&p, buf + pos, end - pos) != 0)
            goto out;
        pos = end + 1;
    }
    if (agent_build_summary(&p) != 0)
        goto out;
    rc = 0;
out:
    free(p.text_msg);
    cJSON_Delete(p.tools);
    if (rc != 0)
        agent_report_free(r);
    return rc;
}

void agent_report_free(struct agent_report *r)
{
    if (r == NULL)
        return;
    free(r->text);
    free(r->error);
    cJSON_Delete(r->summary);
    memset(r, 0, sizeof(*r));
}

/* ---- The live form (GET /job/events) ------------------------------------ */

/* A text event's text, as streamed: enough to follow along. */
#define AGENT_LIVE_TEXT_MAX (16 * 1024)

static int agent_live_text(cJSON *data, const cJSON *part)
{
    const char *text = agent_str(part, "text");
    if (text == NULL)
        return -1;
    size_t len = strlen(text), n = agent_utf8_cut(text, len, AGENT_LIVE_TEXT_MAX);
    char *cut = malloc(n + 1);
    if (cut == NULL)
        return -1;
    memcpy(cut, text, n);
    cut[n] = '\0';
    int ok = cJSON_AddStringToObject(data, "text", cut) != NULL &&
             cJSON_AddBoolToObject(data, "truncated", n < len) != NULL;
    free(cut);
    return ok ? 0 : -1;
}

static int agent_live_tool(cJSON *data, const cJSON *part)
{
    const char *tool = agent_str(part, "tool");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(part, "state");
    const char *status = cJSON_IsObject(state) ? agent_str(state, "status") : NULL;
    int done = status != NULL && (strcmp(status, "completed") == 0 || strcmp(status, "error") == 0);
    return agent_add_str_or_null(data, "tool", tool) == 0 &&
           agent_add_str_or_null(data, "status", status) == 0 &&
           cJSON_AddStringToObject(data, "phase", done ? "finished" : "started") != NULL
               ? 0 : -1;
}

static int agent_live_step(cJSON *data, const cJSON *part)
{
    long long in = 0, out = 0, reasoning = 0, cache_read = 0, cache_write = 0;
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(part, "tokens");
    if (cJSON_IsObject(tok)) {
        agent_add_count(&in, tok, "input");
        agent_add_count(&out, tok, "output");
        agent_add_count(&reasoning, tok, "reasoning");
        const cJSON *cache = cJSON_GetObjectItemCaseSensitive(tok, "cache");
        if (cJSON_IsObject(cache)) {
            agent_add_count(&cache_read, cache, "read");
            agent_add_count(&cache_write, cache, "write");
        }
    }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(part, "cost");
    double cost = cJSON_IsNumber(c) && isfinite(c->valuedouble) && c->valuedouble >= 0
                      ? c->valuedouble : 0;
    cJSON *t = cJSON_AddObjectToObject(data, "tokens");
    return t != NULL && cJSON_AddStringToObject(data, "phase", "finished") != NULL &&
           agent_add_str_or_null(data, "reason", agent_str(part, "reason")) == 0 &&
           cJSON_AddNumberToObject(t, "input", (double)in) != NULL &&
           cJSON_AddNumberToObject(t, "output", (double)out) != NULL &&
           cJSON_AddNumberToObject(t, "reasoning", (double)reasoning) != NULL &&
           cJSON_AddNumberToObject(t, "cache_read", (double)cache_read) != NULL &&
           cJSON_AddNumberToObject(t, "cache_write", (double)cache_write) != NULL &&
           cJSON_AddNumberToObject(data, "cost_usd", cost) != NULL
               ? 0 : -1;
}

static int agent_live_error(cJSON *data, const cJSON *ev)
{
    char *msg = agent_error_text(ev);
    int ok = msg != NULL && cJSON_AddStringToObject(data, "message", msg) != NULL;
    free(msg);
    return ok ? 0 : -1;
}

/* Fills data for one event of the given type; sets *kind. -1 when the
 * type is not streamed or out of memory. */
static int agent_live_fill(cJSON *data, const cJSON *ev, const char *type, const char **kind)
{
    const cJSON *part = cJSON_GetObjectItemCaseSensitive(ev, "part");
    if (strcmp(type, "error") == 0) {
        *kind = "error";
        return agent_live_error(data, ev);
    }
    if (!cJSON_IsObject(part))
        return -1;
    if (strcmp(type, "text") == 0) {
        *kind = "text";
        return agent_live_text(data, part);
    }
    if (strcmp(type, "tool_use") == 0) {
        *kind = "tool";
        return agent_live_tool(data, part);
    }
    if (strcmp(type, "step_finish") == 0) {
        *kind = "step";
        return agent_live_step(data, part);
    }
    return -1;
}

cJSON *agent_event_live(const char *line, size_t len, const char **kind)
{
    cJSON *ev = cJSON_ParseWithLength(line, len);
    const char *type = cJSON_IsObject(ev) ? agent_str(ev, "type") : NULL;
    cJSON *data = type != NULL ? cJSON_CreateObject() : NULL;
    if (data != NULL && agent_live_fill(data, ev, type, kind) != 0) {
        cJSON_Delete(data);
        data = NULL;
    }
    cJSON_Delete(ev);
    return data;
}
