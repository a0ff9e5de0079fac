/*
 * test_jsonutil.c - request body parsing and reply helpers
 * (common/jsonutil.h).
 */
#include "check.h"
#include "jsonutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses buf[0..len); must succeed. The caller deletes the tree. */
static cJSON *parse_ok_at(int line, const char *buf, size_t len)
{
    const char *why = NULL;
    cJSON *j = json_parse_body(buf, len, &why);
    CHECK(j != NULL);
    if (j == NULL)
        fprintf(stderr, "  line %d: refused: %s\n", line, why ? why : "(null)");
    return j;
}
#define PARSE_OK(s) parse_ok_at(__LINE__, (s), strlen(s))

/* Must be refused with a reason (containing want, when want is given). */
static void refuse_at(int line, const char *buf, size_t len, const char *want)
{
    const char *why = NULL;
    cJSON *j = json_parse_body(buf, len, &why);
    CHECK(j == NULL);
    CHECK(why != NULL && (want == NULL || strstr(why, want) != NULL));
    if (j != NULL || why == NULL || (want != NULL && strstr(why, want) == NULL))
        fprintf(stderr, "  line %d: got %s, why=\"%s\"\n", line, j ? "a tree" : "NULL",
                why ? why : "(null)");
    cJSON_Delete(j);
}
#define REFUSE(s, want) refuse_at(__LINE__, (s), strlen(s), (want))
#define REFUSE_N(s, n, want) refuse_at(__LINE__, (s), (n), (want))

/* n levels of '[' then n of ']'. */
static char *nested(int n, char open, char close)
{
    char *s = malloc((size_t)n * 2 + 1);
    if (s == NULL)
        abort();
    memset(s, open, (size_t)n);
    memset(s + n, close, (size_t)n);
    s[2 * n] = '\0';
    return s;
}

static void test_parse(void)
{
    cJSON *j = PARSE_OK("{\"prompt\": \"fix it\", \"timeout_s\": 60, \"files\": [{\"path\": \"a\"}]}");
    if (j != NULL) {
        CHECK(cJSON_IsObject(j));
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
        CHECK(cJSON_IsString(p) && strcmp(p->valuestring, "fix it") == 0);
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "files")) == 1);
        cJSON_Delete(j);
    }

    /* The length bounds the parse: what follows is not read. */
    {
        static const char buf[] = "{\"a\":1}GARBAGE";
        cJSON *t = parse_ok_at(__LINE__, buf, 7);
        cJSON_Delete(t);
    }
    cJSON_Delete(PARSE_OK("{}  \r\n\t"));
    cJSON_Delete(PARSE_OK(" \n{\"a\": 1}"));

    REFUSE_N("", 0, "empty");
    REFUSE_N("{}", 0, "empty");
    REFUSE("   ", NULL);
    REFUSE("{", NULL);
    REFUSE("{\"a\":}", NULL);
    REFUSE("{\"a\":1,}", NULL);
    REFUSE("nul", NULL);
    REFUSE("{'a':1}", NULL);
    REFUSE("{} x", NULL);
    REFUSE("{}{}", NULL);
    REFUSE("{\"a\":1} // comment", NULL);

    /* Depth. */
    char *s = nested(JSON_MAX_DEPTH, '[', ']');
    cJSON_Delete(PARSE_OK(s));
    free(s);
    s = nested(JSON_MAX_DEPTH + 1, '[', ']');
    REFUSE(s, "deep");
    free(s);
    s = nested(1000, '[', ']');
    REFUSE(s, "deep");
    free(s);
    {
        /* Objects count too: {"a":{"a":...{}...}} */
        char buf[512];
        size_t n = 0;
        for (int i = 0; i < JSON_MAX_DEPTH - 1; i++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{\"a\":");
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{}");
        for (int i = 0; i < JSON_MAX_DEPTH - 1; i++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "}");
        cJSON_Delete(PARSE_OK(buf));
        char deeper[600];
        snprintf(deeper, sizeof(deeper), "[%s]", buf);
        REFUSE(deeper, "deep");
    }
    /* Brackets inside strings do not count, even after an escaped quote. */
    j = PARSE_OK("{\"a\": \"[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{{{{{{{{{\", "
                 "\"b\": \"\\\"[[[[[[[[[[[[[[[[[[[[[[\"}");
    if (j != NULL) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "b");
        CHECK(cJSON_IsString(b) && strcmp(b->valuestring, "\"[[[[[[[[[[[[[[[[[[[[[[") == 0);
        cJSON_Delete(j);
    }
    /* An escaped backslash ends the escape: the quote after it closes the
     * string, so the brackets after it do count. */
    s = nested(JSON_MAX_DEPTH + 1, '[', ']');
    {
        char buf[256];
        snprintf(buf, sizeof(buf), "[\"\\\\\", %s]", s);
        REFUSE(buf, "deep");
    }
    free(s);

    /* \u0000 escapes. */
    REFUSE("{\"a\": \"x\\u0000y\"}", "u0000");
    REFUSE("{\"a\": \"\\u0000\"}", "u0000");
    REFUSE("{\"\\u0000\": 1}", "u0000");
    REFUSE("{\"a\": \"\\\\\\u0000\"}", "u0000");      /* "\\\u0000": escaped \, then \u0000 */
    j = PARSE_OK("{\"a\": \"\\\\u0000\"}");            /* "\\u0000": literal text */
    if (j != NULL) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "a");
        CHECK(cJSON_IsString(a));
        if (cJSON_IsString(a)) {
            CHECK(strlen(a->valuestring) == 6);       /* \ u 0 0 0 0 */
            CHECK_STR(a->valuestring, "\\u0000");
        }
        cJSON_Delete(j);
    }
    j = PARSE_OK("{\"a\": \"\\u0041\\u00e9\"}");       /* other escapes are fine */
    if (j != NULL) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "a");
        CHECK(cJSON_IsString(a) && strcmp(a->valuestring, "A\xc3\xa9") == 0);
        cJSON_Delete(j);
    }

    /* Raw NUL bytes anywhere in the buffer. */
    {
        static const char b1[] = "{\"a\": 1}";       /* NUL after the value */
        refuse_at(__LINE__, b1, sizeof(b1), NULL);
        static const char b2[] = "{\"a\":\0 1}";
        refuse_at(__LINE__, b2, sizeof(b2) - 1, NULL);
        static const char b3[] = "{\"a\": \"x\0y\"}";  /* NUL inside a string */
        refuse_at(__LINE__, b3, sizeof(b3) - 1, NULL);
        static const char b4[] = "\0{}";
        refuse_at(__LINE__, b4, sizeof(b4) - 1, NULL);
    }
}

static void test_get_int(void)
{
    cJSON *j = PARSE_OK("{\"n\": 5, \"f\": 1.5, \"big\": 1e400, \"s\": \"5\", \"t\": true, "
                        "\"z\": null, \"neg\": -3, \"e\": 2e2, \"arr\": [1], \"o\": {}, "
                        "\"huge2\": 1e19, \"m\": -0}");
    if (j == NULL)
        return;
    long v = 7;
    CHECK(json_get_int(j, "absent", 0, 100, &v) == 0 && v == 7);
    CHECK(json_get_int(j, "z", 0, 100, &v) == 0 && v == 7);
    CHECK(json_get_int(j, "N", 0, 100, &v) == 0 && v == 7);   /* case-sensitive */
    CHECK(json_get_int(j, "n", 0, 100, &v) == 0 && v == 5);
    CHECK(json_get_int(j, "n", 5, 5, &v) == 0 && v == 5);
    CHECK(json_get_int(j, "e", 0, 1000, &v) == 0 && v == 200);
    CHECK(json_get_int(j, "neg", -10, 10, &v) == 0 && v == -3);
    CHECK(json_get_int(j, "m", 0, 10, &v) == 0 && v == 0);

    v = 7;
    CHECK(json_get_int(j, "f", 0, 100, &v) == -1);
    CHECK(json_get_int(j, "big", 0, LONG_MAX, &v) == -1);
    CHECK(json_get_int(j, "s", 0, 100, &v) == -1);
    CHECK(json_get_int(j, "t", 0, 100, &v) == -1);
    CHECK(json_get_int(j, "arr", 0, 100, &v) == -1);
    CHECK(json_get_int(j, "o", 0, 100, &v) == -1);
    CHECK(json_get_int(j, "n", 6, 100, &v) == -1);      /* below min */
    CHECK(json_get_int(j, "n", 0, 4, &v) == -1);        /* above max */
    CHECK(json_get_int(j, "neg", 0, 10, &v) == -1);
    CHECK(v == 7);
    CHECK(json_get_int(j, "huge2", 0, LONG_MAX, &v) == -1);   /* 1e19 */
    CHECK(v == 7);
    cJSON_Delete(j);
}

/* Run last: a build with -fno-sanitize-recover stops at the conversion
 * if json_get_int() makes it. */
static void test_get_int_2p63(void)
{
    cJSON *j = PARSE_OK("{\"huge\": 9223372036854775808, \"lmin\": -9223372036854775808}");
    if (j == NULL)
        return;
    long v = 7;
    /* -2^63 is a long. */
    CHECK(json_get_int(j, "lmin", LONG_MIN, 0, &v) == 0 && v == LONG_MIN);
    /* 2^63 is not: refused even when max is LONG_MAX ((double)LONG_MAX
     * rounds up to 2^63), never converted (that is undefined behaviour). */
    v = 7;
    CHECK(json_get_int(j, "huge", 0, LONG_MAX, &v) == -1);
    CHECK(v == 7);
    cJSON_Delete(j);
}

static void test_add(void)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        abort();
    /* 2026-01-02T03:04:05Z is 1767323045 s after the epoch. */
    CHECK(json_add_time(o, "t", 1767323045123456LL, 0) == 0);
    CHECK(json_add_time(o, "n", 1767323045123456LL, 1) == 0);
    CHECK(json_add_time(o, "e", 0, 0) == 0);
    CHECK(json_add_str_or_null(o, "s", "x\"y") == 0);
    CHECK(json_add_str_or_null(o, "z", NULL) == 0);

    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "t");
    CHECK(cJSON_IsString(t) && strcmp(t->valuestring, "2026-01-02T03:04:05.123456Z") == 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "n")));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "e");
    CHECK(cJSON_IsString(e) && strcmp(e->valuestring, "1970-01-01T00:00:00.000000Z") == 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "z")));

    char *txt = cJSON_PrintUnformatted(o);
    CHECK(txt != NULL &&
          strcmp(txt, "{\"t\":\"2026-01-02T03:04:05.123456Z\",\"n\":null,"
                      "\"e\":\"1970-01-01T00:00:00.000000Z\",\"s\":\"x\\\"y\",\"z\":null}") == 0);
    cJSON_free(txt);
    cJSON_Delete(o);
}

static void sanitize_at(int line, const char *in, size_t len, const char *want)
{
    char buf[128];
    memcpy(buf, in, len);
    buf[len] = '\0';
    json_sanitize_utf8(buf, len);
    int ok = memcmp(buf, want, len) == 0;
    CHECK(ok);
    if (!ok) {
        fprintf(stderr, "  line %d: got", line);
        for (size_t i = 0; i < len; i++)
            fprintf(stderr, " %02x", (unsigned char)buf[i]);
        fprintf(stderr, "\n");
    }
}
#define SANITIZE(in, want)                                                     \
    do {                                                                       \
        CHECK(sizeof(in) == sizeof(want));                                     \
        sanitize_at(__LINE__, (in), sizeof(in) - 1, (want));                   \
    } while (0)

static void test_sanitize(void)
{
    /* Valid text, multibyte included, is left alone. */
    SANITIZE("plain ascii\n\t", "plain ascii\n\t");
    SANITIZE("\xc3\xbc \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
             "\xc3\xbc \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");

    SANITIZE("A\xff" "B", "A?B");
    SANITIZE("A\0B", "A?B");
    SANITIZE("\0\0", "??");
    SANITIZE("\xc0\xaf", "??");                         /* overlong */
    SANITIZE("\xed\xa0\x80", "???");                     /* surrogate */
    SANITIZE("x\xe2\x82", "x??");                        /* truncated at the end */
    SANITIZE("\xe2\x82" "Z", "??Z");                     /* truncated mid-text */
    SANITIZE("\x80\xbf", "??");                          /* lone continuations */
    SANITIZE("\xf4\x90\x80\x80", "????");                /* past U+10FFFF */
    SANITIZE("\xf8\x88\x80\x80\x80", "?????");
    SANITIZE("\xc3\xbc\xff\xe2\x82\xac", "\xc3\xbc?\xe2\x82\xac");
    SANITIZE("A\xc3\xbc" "B\xe2\x82\xac" "C\xf0\x9f\x98\x80" "D\xff" "E\0F\xc0\xaf"
             "G\xed\xa0\x80" "H\xe2\x82",
             "A\xc3\xbc" "B\xe2\x82\xac" "C\xf0\x9f\x98\x80" "D?E?F??G???H??");

    /* Only len bytes are looked at. */
    char buf[4] = { (char)0xff, (char)0xff, 'x', '\0' };
    json_sanitize_utf8(buf, 1);
    CHECK(buf[0] == '?' && (unsigned char)buf[1] == 0xff && buf[2] == 'x');
    /* A sequence cut by len is invalid within len. */
    char cut[3] = { (char)0xc3, (char)0xbc, '\0' };
    json_sanitize_utf8(cut, 1);
    CHECK(cut[0] == '?' && (unsigned char)cut[1] == 0xbc);
    json_sanitize_utf8(cut, 0);
    CHECK(cut[0] == '?');
}

int main(void)
{
    test_parse();
    test_get_int();
    test_add();
    test_sanitize();
    test_get_int_2p63();
    return check_report();
}
