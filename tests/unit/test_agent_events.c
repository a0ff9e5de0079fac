/*
 * test_agent_events.c - unit tests for worker/agent_events.c.
 *
 * The EV_* lines were printed by the real opencode 1.18 (`opencode run
 * --format json`): a run against a small OpenAI-compatible server whose
 * first answer was text plus a write tool call and whose second was the
 * final text (with model costs configured), a tool call rejected by the
 * permission rules, an unknown model (-m nosuch/model) and a provider
 * answering HTTP 400.
 */
#include "agent_events.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CHECK_STR with both values printed, NULL-safe. */
#define EXPECT_STR(got, want)                                                 \
    do {                                                                      \
        const char *g_ = (got), *w_ = (want);                                 \
        int ok_ = (g_ == NULL && w_ == NULL) ||                               \
                  (g_ != NULL && w_ != NULL && strcmp(g_, w_) == 0);          \
        CHECK(ok_);                                                           \
        if (!ok_)                                                             \
            fprintf(stderr, "  %s is \"%s\", want \"%s\"\n", #got,            \
                    g_ ? g_ : "(null)", w_ ? w_ : "(null)");                  \
    } while (0)

static const char EV_STEP_START_1[] =
    "{\"type\":\"step_start\",\"timestamp\":1795863800586,\"sessionID\":\"ses_dde2d37fdffeRXB"
    "GKdHr2RJh1S\",\"part\":{\"id\":\"prt_221d2ea18001q0mmkSQpGk0Sql\",\"messageID\":\"msg_22"
    "1d2df810014xY2wU2E53C1vR\",\"sessionID\":\"ses_dde2d37fdffeRXBGKdHr2RJh1S\",\"type\":\"s"
    "tep-start\"}}";

static const char EV_TEXT_1[] =
    "{\"type\":\"text\",\"timestamp\":1795863800587,\"sessionID\":\"ses_dde2d37fdffeRXBGKdHr2"
    "RJh1S\",\"part\":{\"id\":\"prt_221d2ea2b001O7Ky5FoHk1peh5\",\"messageID\":\"msg_221d2df8"
    "10014xY2wU2E53C1vR\",\"sessionID\":\"ses_dde2d37fdffeRXBGKdHr2RJh1S\",\"type\":\"text\","
    "\"text\":\"I will write the file.\",\"time\":{\"start\":1795863800363,\"end\":1795863800"
    "529}}}";

static const char EV_TOOL_WRITE[] =
    "{\"type\":\"tool_use\",\"timestamp\":1795863800836,\"sessionID\":\"ses_dde2d37fdffeRXBGK"
    "dHr2RJh1S\",\"part\":{\"type\":\"tool\",\"tool\":\"write\",\"callID\":\"call_1\",\"state"
    "\":{\"status\":\"completed\",\"input\":{\"filePath\":\"b.txt\",\"content\":\"y\"},\"outp"
    "ut\":\"Wrote file successfully.\",\"metadata\":{\"diagnostics\":{},\"filepath\":\"/tmp/a"
    "gent-scratch/ws3/b.txt\",\"exists\":false,\"truncated\":false},\"title\":\"tmp/agent-scr"
    "atch/ws3/b.txt\",\"time\":{\"start\":1795863800486,\"end\":1795863800662}},\"id\":\"prt_"
    "221d2ea530011rZJ1P7V7aJhKf\",\"sessionID\":\"ses_dde2d37fdffeRXBGKdHr2RJh1S\",\"messageI"
    "D\":\"msg_221d2df810014xY2wU2E53C1vR\"}}";

static const char EV_STEP_FINISH_1[] =
    "{\"type\":\"step_finish\",\"timestamp\":1795863800836,\"sessionID\":\"ses_dde2d37fdffeRX"
    "BGKdHr2RJh1S\",\"part\":{\"id\":\"prt_221d2eb6d001NLWjwdUZTFLE1P\",\"reason\":\"tool-cal"
    "ls\",\"messageID\":\"msg_221d2df810014xY2wU2E53C1vR\",\"sessionID\":\"ses_dde2d37fdffeRX"
    "BGKdHr2RJh1S\",\"type\":\"step-finish\",\"tokens\":{\"total\":107,\"input\":60,\"output\""
    ":4,\"reasoning\":3,\"cache\":{\"write\":0,\"read\":40}},\"cost\":0.000074}}";

static const char EV_STEP_START_2[] =
    "{\"type\":\"step_start\",\"timestamp\":1795863801386,\"sessionID\":\"ses_dde2d37fdffeRXB"
    "GKdHr2RJh1S\",\"part\":{\"id\":\"prt_221d2ed98001fyNyP459OHTU1E\",\"messageID\":\"msg_22"
    "1d2ebb0001JYOYQ1FjZr1k9Y\",\"sessionID\":\"ses_dde2d37fdffeRXBGKdHr2RJh1S\",\"type\":\"s"
    "tep-start\"}}";

static const char EV_TEXT_2[] =
    "{\"type\":\"text\",\"timestamp\":1795863801387,\"sessionID\":\"ses_dde2d37fdffeRXBGKdHr2"
    "RJh1S\",\"part\":{\"id\":\"prt_221d2eda8001V9Z7rCKMbEiOvD\",\"messageID\":\"msg_221d2ebb"
    "0001JYOYQ1FjZr1k9Y\",\"sessionID\":\"ses_dde2d37fdffeRXBGKdHr2RJh1S\",\"type\":\"text\","
    "\"text\":\"Final line one.\\nFinal line two.\",\"time\":{\"start\":1795863801256,\"end\""
    ":1795863801266}}}";

static const char EV_STEP_FINISH_2[] =
    "{\"type\":\"step_finish\",\"timestamp\":1795863801387,\"sessionID\":\"ses_dde2d37fdffeRX"
    "BGKdHr2RJh1S\",\"part\":{\"id\":\"prt_221d2edbe001RhnHr71aKdGn4x\",\"reason\":\"stop\",\""
    "messageID\":\"msg_221d2ebb0001JYOYQ1FjZr1k9Y\",\"sessionID\":\"ses_dde2d37fdffeRXBGKdHr2"
    "RJh1S\",\"type\":\"step-finish\",\"tokens\":{\"total\":205,\"input\":200,\"output\":5,\""
    "reasoning\":0,\"cache\":{\"write\":0,\"read\":0}},\"cost\":0.00021}}";

static const char EV_TOOL_REJECTED[] =
    "{\"type\":\"tool_use\",\"timestamp\":1795863595682,\"sessionID\":\"ses_dde3041caffeAODnR"
    "wgb41UwqZ\",\"part\":{\"type\":\"tool\",\"tool\":\"read\",\"callID\":\"call_f78052444bfa"
    "4c858c76be80\",\"state\":{\"status\":\"error\",\"input\":{\"filePath\":\"/tmp/agent-scra"
    "tch/prompt1.txt\"},\"error\":\"The user rejected permission to use this specific tool ca"
    "ll.\",\"time\":{\"start\":1795863595555,\"end\":1795863595580}},\"id\":\"prt_221cfca1100"
    "1znVYKTRBSWNmDh\",\"sessionID\":\"ses_dde3041caffeAODnRwgb41UwqZ\",\"messageID\":\"msg_2"
    "21cfc5e0001G4V3H2yzuvcCWp\"}}";

static const char EV_ERROR_UNKNOWN_MODEL[] =
    "{\"type\":\"error\",\"timestamp\":1795863581991,\"sessionID\":\"ses_dde3078b4ffe33mqcraE"
    "Gs76I1\",\"error\":{\"name\":\"UnknownError\",\"data\":{\"message\":\"Unexpected server "
    "error. Check server logs for details.\",\"ref\":\"err_0d1af948\"}}}";

static const char EV_ERROR_API[] =
    "{\"type\":\"error\",\"timestamp\":1795863814398,\"sessionID\":\"ses_dde2ceeeaffe9r5pjEa0"
    "sM4Tc5\",\"error\":{\"name\":\"APIError\",\"data\":{\"message\":\"scripted HTTP error 40"
    "0\",\"statusCode\":400,\"isRetryable\":false,\"responseHeaders\":{\"content-length\":\"1"
    "10\",\"content-type\":\"application/json\",\"date\":\"Sat, 28 Nov 2026 11:03:32 GMT\",\""
    "server\":\"fake-model/1 Python/3.11.7\"},\"responseBody\":\"{\\\"error\\\": {\\\"message"
    "\\\": \\\"scripted HTTP error 400\\\", \\\"type\\\": \\\"invalid_request_error\\\", \\\""
    "param\\\": null, \\\"code\\\": 400}}\",\"metadata\":{\"url\":\"http://127.0.0.1:40033/v1"
    "/chat/completions\"}}}}";

/* ---- helpers ---------------------------------------------------------- */

/* Joins lines with "\n" (and a trailing one when nl_end). Caller frees. */
static char *join_lines(const char *const *lines, size_t n, int nl_end)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(lines[i]) + 1;
    char *buf = malloc(len + 1);
    if (buf == NULL)
        abort();
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(lines[i]);
        memcpy(buf + pos, lines[i], l);
        pos += l;
        if (i + 1 < n || nl_end)
            buf[pos++] = '\n';
    }
    buf[pos] = '\0';
    return buf;
}

static int parse_str(const char *s, struct agent_report *r)
{
    return agent_report_parse(s, strlen(s), r);
}

static double sum_num(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *sum_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int valid_utf8(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (n == 0 || i + n > len)
            return 0;
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80)
                return 0;
        i += n;
    }
    return 1;
}

/* ---- tests ------------------------------------------------------------ */

/* A whole real run: text + tool call in one step, final text in the next. */
static void test_full_run(void)
{
    const char *lines[] = { EV_STEP_START_1, EV_TEXT_1, EV_TOOL_WRITE, EV_STEP_FINISH_1,
                            EV_STEP_START_2, EV_TEXT_2, EV_STEP_FINISH_2 };
    char *buf = join_lines(lines, 7, 1);
    struct agent_report r;
    CHECK(agent_report_parse(buf, strlen(buf), &r) == 0);
    EXPECT_STR(r.text, "Final line one.\nFinal line two.");
    CHECK(r.error == NULL);
    CHECK(r.has_usage == 1);
    CHECK(r.tokens_input == 260);
    CHECK(r.tokens_output == 9);
    CHECK(r.tokens_reasoning == 3);
    CHECK(r.tokens_cache_read == 40);
    CHECK(r.tokens_cache_write == 0);
    CHECK(fabs(r.cost - 0.000284) < 1e-12);
    CHECK(r.events == 7);

    const cJSON *s = r.summary;
    CHECK(cJSON_IsObject(s));
    EXPECT_STR(sum_str(s, "text"), "Final line one.\nFinal line two.");
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s, "error")));
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(s, "tokens");
    CHECK(sum_num(tok, "input") == 260);
    CHECK(sum_num(tok, "output") == 9);
    CHECK(sum_num(tok, "reasoning") == 3);
    CHECK(sum_num(tok, "cache_read") == 40);
    CHECK(sum_num(tok, "cache_write") == 0);
    CHECK(fabs(sum_num(s, "cost") - 0.000284) < 1e-12);
    CHECK(sum_num(s, "events") == 7);
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(s, "tools");
    CHECK(cJSON_GetArraySize(tools) == 1);
    EXPECT_STR(sum_str(cJSON_GetArrayItem(tools, 0), "tool"), "write");
    EXPECT_STR(sum_str(cJSON_GetArrayItem(tools, 0), "status"), "completed");

    /* The summary serialises (it becomes the job's result_json). */
    char *json = cJSON_PrintUnformatted(s);
    CHECK(json != NULL && strstr(json, "\"tools\":[{\"tool\":\"write\",\"status\":\"completed\"}]"));
    free(json);
    agent_report_free(&r);
    CHECK(r.summary == NULL && r.text == NULL);
    agent_report_free(&r);              /* twice is harmless */
    agent_report_free(NULL);
    free(buf);
}

/* The last line without "\n", a truncated line, junk and CRLF. */
static void test_junk_and_partial(void)
{
    const char *lines[] = { "", "not json", "   ", "[1,2,3]", "{\"no\":\"type\"}",
                            "{\"type\":\"step_start\"}\r", EV_TEXT_1,
                            "{\"type\":\"text\",\"part\":{\"text\":\"cut" };
    char *buf = join_lines(lines, 8, 0);
    struct agent_report r;
    CHECK(agent_report_parse(buf, strlen(buf), &r) == 0);
    EXPECT_STR(r.text, "I will write the file.");
    CHECK(r.events == 2);
    CHECK(r.has_usage == 0);
    agent_report_free(&r);
    free(buf);

    /* A complete last line without a newline still counts. */
    const char *l2[] = { EV_STEP_START_1, EV_TEXT_2 };
    buf = join_lines(l2, 2, 0);
    CHECK(agent_report_parse(buf, strlen(buf), &r) == 0);
    EXPECT_STR(r.text, "Final line one.\nFinal line two.");
    CHECK(r.events == 2);
    agent_report_free(&r);
    free(buf);

    /* len is honoured: the text line after len is not read. */
    const char *l3[] = { EV_STEP_START_1, EV_TEXT_2 };
    buf = join_lines(l3, 2, 1);
    CHECK(agent_report_parse(buf, strlen(EV_STEP_START_1) + 1, &r) == 0);
    CHECK(r.text == NULL);
    CHECK(r.events == 1);
    agent_report_free(&r);
    free(buf);
}

static void test_empty(void)
{
    struct agent_report r;
    CHECK(agent_report_parse(NULL, 0, &r) == 0);
    CHECK(r.text == NULL && r.error == NULL && r.events == 0 && r.has_usage == 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r.summary, "text")));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.summary, "tools")) == 0);
    CHECK(sum_num(r.summary, "events") == 0);
    CHECK(sum_num(r.summary, "cost") == 0);
    agent_report_free(&r);

    CHECK(parse_str("\n\n\n", &r) == 0);
    CHECK(r.events == 0);
    agent_report_free(&r);
}

/* Several text parts of the same message join; a later message replaces. */
static void test_text_messages(void)
{
    struct agent_report r;
    CHECK(parse_str("{\"type\":\"text\",\"part\":{\"messageID\":\"m1\",\"text\":\"a\"}}\n"
                     "{\"type\":\"text\",\"part\":{\"messageID\":\"m2\",\"text\":\"b\"}}\n"
                     "{\"type\":\"tool_use\",\"part\":{\"messageID\":\"m2\",\"tool\":\"bash\"}}\n"
                     "{\"type\":\"text\",\"part\":{\"messageID\":\"m2\",\"text\":\"c\"}}\n",
                     &r) == 0);
    EXPECT_STR(r.text, "b\nc");
    agent_report_free(&r);

    CHECK(parse_str("{\"type\":\"text\",\"part\":{\"messageID\":\"m1\",\"text\":\"a\"}}\n"
                     "{\"type\":\"text\",\"part\":{\"messageID\":\"m1\",\"text\":\"b\"}}\n"
                     "{\"type\":\"text\",\"part\":{\"messageID\":\"m3\",\"text\":\"z\"}}\n",
                     &r) == 0);
    EXPECT_STR(r.text, "z");
    agent_report_free(&r);

    /* Without messageID every part replaces the previous one. */
    CHECK(parse_str("{\"type\":\"text\",\"part\":{\"text\":\"a\"}}\n"
                     "{\"type\":\"text\",\"part\":{\"text\":\"b\"}}\n", &r) == 0);
    EXPECT_STR(r.text, "b");
    agent_report_free(&r);

    /* A text event without text, or with a non-string, changes nothing. */
    CHECK(parse_str("{\"type\":\"text\",\"part\":{\"text\":\"a\"}}\n"
                     "{\"type\":\"text\",\"part\":{\"text\":5}}\n"
                     "{\"type\":\"text\",\"part\":null}\n"
                     "{\"type\":\"text\"}\n", &r) == 0);
    EXPECT_STR(r.text, "a");
    CHECK(r.events == 4);
    agent_report_free(&r);
}

static void test_errors(void)
{
    struct agent_report r;
    char *buf;
    const char *both[] = { EV_ERROR_UNKNOWN_MODEL, EV_ERROR_API };
    buf = join_lines(both, 2, 1);
    CHECK(agent_report_parse(buf, strlen(buf), &r) == 0);
    EXPECT_STR(r.error, "UnknownError: Unexpected server error. Check server logs for details.");
    EXPECT_STR(sum_str(r.summary, "error"), r.error);
    CHECK(r.text == NULL && r.has_usage == 0);
    agent_report_free(&r);
    free(buf);

    CHECK(parse_str(EV_ERROR_API, &r) == 0);
    EXPECT_STR(r.error, "APIError: scripted HTTP error 400");
    agent_report_free(&r);

    CHECK(parse_str("{\"type\":\"error\"}", &r) == 0);
    EXPECT_STR(r.error, "unknown error");
    agent_report_free(&r);

    CHECK(parse_str("{\"type\":\"error\",\"error\":{\"name\":\"OnlyName\",\"data\":{}}}", &r) == 0);
    EXPECT_STR(r.error, "OnlyName");
    agent_report_free(&r);

    CHECK(parse_str("{\"type\":\"error\",\"error\":{\"data\":{\"message\":\"only msg\"}}}", &r) == 0);
    EXPECT_STR(r.error, "only msg");
    agent_report_free(&r);

    CHECK(parse_str("{\"type\":\"error\",\"error\":{\"name\":\"N\",\"message\":\"top\"}}", &r) == 0);
    EXPECT_STR(r.error, "N: top");
    agent_report_free(&r);

    CHECK(parse_str("{\"type\":\"error\",\"error\":\"plain string\"}", &r) == 0);
    EXPECT_STR(r.error, "plain string");
    agent_report_free(&r);

    CHECK(parse_str("{\"type\":\"error\",\"error\":{\"name\":7,\"data\":{\"message\":[]}}}", &r) == 0);
    EXPECT_STR(r.error, "unknown error");
    agent_report_free(&r);
}

static void test_tools(void)
{
    struct agent_report r;
    const char *lines[] = { EV_TOOL_WRITE, EV_TOOL_REJECTED,
                            "{\"type\":\"tool_use\",\"part\":{\"state\":{}}}" };
    char *buf = join_lines(lines, 3, 1);
    CHECK(agent_report_parse(buf, strlen(buf), &r) == 0);
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(r.summary, "tools");
    CHECK(cJSON_GetArraySize(tools) == 3);
    EXPECT_STR(sum_str(cJSON_GetArrayItem(tools, 1), "tool"), "read");
    EXPECT_STR(sum_str(cJSON_GetArrayItem(tools, 1), "status"), "error");
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(tools, 2), "tool")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(tools, 2), "status")));
    CHECK(r.error == NULL);            /* a failed tool is not a run error */
    agent_report_free(&r);
    free(buf);

    /* At most 200 entries, while every event still counts. */
    size_t n = 250, one = strlen(EV_TOOL_WRITE) + 1;
    buf = malloc(n * one + 1);
    CHECK(buf != NULL);
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + i * one, EV_TOOL_WRITE, one - 1);
        buf[i * one + one - 1] = '\n';
    }
    CHECK(agent_report_parse(buf, n * one, &r) == 0);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.summary, "tools")) == 200);
    CHECK(r.events == 250);
    agent_report_free(&r);
    free(buf);
}

static void test_usage_numbers(void)
{
    struct agent_report r;
    CHECK(parse_str("{\"type\":\"step_finish\",\"part\":{\"tokens\":{\"input\":-5,"
                     "\"output\":\"7\",\"reasoning\":1e300,\"cache\":5},\"cost\":-1}}\n"
                     "{\"type\":\"step_finish\",\"part\":{\"tokens\":{\"input\":10,"
                     "\"output\":2,\"cache\":{\"read\":3,\"write\":4}},\"cost\":0.5}}\n"
                     "{\"type\":\"step_finish\",\"part\":{}}\n", &r) == 0);
    CHECK(r.has_usage == 1);
    CHECK(r.tokens_input == 10);
    CHECK(r.tokens_output == 2);
    CHECK(r.tokens_reasoning == 1000000000000000LL);   /* clamped */
    CHECK(r.tokens_cache_read == 3);
    CHECK(r.tokens_cache_write == 4);
    CHECK(r.cost == 0.5);
    agent_report_free(&r);
}

/* Long lines parse; the text is capped at 1 MiB on a UTF-8 boundary. */
static void test_long_text(void)
{
    const char *pre = "{\"type\":\"text\",\"part\":{\"text\":\"a";
    const char *post = "\"}}\n";
    size_t nchars = 700000;             /* "é" = 2 bytes: 1.4 MB of text */
    size_t len = strlen(pre) + nchars * 2 + strlen(post);
    char *buf = malloc(len + 1);
    CHECK(buf != NULL);
    size_t pos = 0;
    memcpy(buf, pre, strlen(pre));
    pos += strlen(pre);
    for (size_t i = 0; i < nchars; i++) {
        buf[pos++] = (char)0xC3;
        buf[pos++] = (char)0xA9;
    }
    memcpy(buf + pos, post, strlen(post));
    pos += strlen(post);
    buf[pos] = '\0';

    struct agent_report r;
    CHECK(agent_report_parse(buf, pos, &r) == 0);
    CHECK(r.text != NULL);
    size_t tl = r.text ? strlen(r.text) : 0;
    /* "a" + é...: 1 MiB would split an "é", so one byte less. */
    CHECK(tl == 1024 * 1024 - 1);
    CHECK(r.text && valid_utf8(r.text, tl));
    agent_report_free(&r);

    /* 100 KB of plain text passes whole. */
    nchars = 100000;
    pos = 0;
    memcpy(buf, pre, strlen(pre));
    pos += strlen(pre);
    memset(buf + pos, 'x', nchars);
    pos += nchars;
    memcpy(buf + pos, post, strlen(post));
    pos += strlen(post);
    CHECK(agent_report_parse(buf, pos, &r) == 0);
    CHECK(r.text && strlen(r.text) == nchars + 1);
    agent_report_free(&r);
    free(buf);
}

/* The live form GET /job/events streams, one line at a time. */
static void test_live_events(void)
{
    const char *kind = NULL;
    cJSON *d = agent_event_live(EV_TEXT_1, strlen(EV_TEXT_1), &kind);
    CHECK(d != NULL);
    EXPECT_STR(kind, "text");
    EXPECT_STR(cJSON_GetStringValue(cJSON_GetObjectItem(d, "text")), "I will write the file.");
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(d, "truncated")));
    cJSON_Delete(d);

    d = agent_event_live(EV_TOOL_WRITE, strlen(EV_TOOL_WRITE), &kind);
    CHECK(d != NULL);
    EXPECT_STR(kind, "tool");
    EXPECT_STR(cJSON_GetStringValue(cJSON_GetObjectItem(d, "tool")), "write");
    EXPECT_STR(cJSON_GetStringValue(cJSON_GetObjectItem(d, "status")), "completed");
    EXPECT_STR(cJSON_GetStringValue(cJSON_GetObjectItem(d, "phase")), "finished");
    cJSON_Delete(d);

    d = agent_event_live(EV_STEP_FINISH_1, strlen(EV_STEP_FINISH_1), &kind);
    CHECK(d != NULL);
    EXPECT_STR(kind, "step");
    cJSON *tok = cJSON_GetObjectItem(d, "tokens");
    CHECK(cJSON_IsObject(tok) && cJSON_GetObjectItem(tok, "input") != NULL);
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(d, "cost_usd")));
    cJSON_Delete(d);

    const char *err = "{\"type\":\"error\",\"error\":{\"name\":\"APIError\","
                      "\"data\":{\"message\":\"Bad Request\"}}}";
    d = agent_event_live(err, strlen(err), &kind);
    CHECK(d != NULL);
    EXPECT_STR(kind, "error");
    EXPECT_STR(cJSON_GetStringValue(cJSON_GetObjectItem(d, "message")), "APIError: Bad Request");
    cJSON_Delete(d);

    /* Not streamed: step_start, junk, a cut line, a tool without part. */
    const char *skip[] = { EV_STEP_START_1, "junk", "{\"type\":\"text\"", "{\"type\":\"tool_use\"}" };
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
        CHECK(agent_event_live(skip[i], strlen(skip[i]), &kind) == NULL);

    /* A long text is cut for the stream, on a UTF-8 boundary. */
    size_t n = 40000;
    char *line = malloc(n + 64);
    int off = snprintf(line, n + 64, "{\"type\":\"text\",\"part\":{\"text\":\"");
    for (size_t i = 0; i < n / 2; i++, off += 2)
        memcpy(line + off, "\xc3\xa9", 2);
    off += snprintf(line + off, 8, "\"}}");
    d = agent_event_live(line, (size_t)off, &kind);
    CHECK(d != NULL && cJSON_IsTrue(cJSON_GetObjectItem(d, "truncated")));
    const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(d, "text"));
    CHECK(t != NULL && strlen(t) <= 16 * 1024 && strlen(t) % 2 == 0);
    cJSON_Delete(d);
    free(line);
}

int main(void)
{
    test_full_run();
    test_junk_and_partial();
    test_empty();
    test_text_messages();
    test_errors();
    test_tools();
    test_usage_numbers();
    test_long_text();
    test_live_events();
    return check_report();
}
