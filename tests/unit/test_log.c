/*
 * test_log.c - common/log.h: the text format stays as it was, LOG_ESC
 * escapes, and the JSON format gives one valid JSON object per line with
 * the caller's key=value fields as members, whatever bytes it is fed.
 */
#include "check.h"
#include "log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Captures what one log_msg() call writes to stderr. */
static char captured[16384];
static FILE *cap_file;

static const char *cap_end(int saved)
{
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t got = pread(fileno(cap_file), captured, sizeof(captured) - 1, 0);
    captured[got > 0 ? got : 0] = '\0';
    return captured;
}

static int cap_begin(void)
{
    if (cap_file == NULL)
        cap_file = tmpfile();
    int r = ftruncate(fileno(cap_file), 0);
    (void)r;
    lseek(fileno(cap_file), 0, SEEK_SET);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(cap_file), STDERR_FILENO);
    return saved;
}

#define CAPTURE(stmt) (cap_begin_saved = cap_begin(), (stmt), cap_end(cap_begin_saved))
static int cap_begin_saved;

/* Exactly one line, ending in \n. */
static int one_line(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && s[n - 1] == '\n' && memchr(s, '\n', n - 1) == NULL;
}

static void test_text(void)
{
    log_set_format(LOG_FORMAT_TEXT);
    const char *out = CAPTURE(log_info("job.queued", "job=%s model=\"%s\"", "ab12",
                                       LOG_ESC("x\"y\n")));
    CHECK(one_line(out));
    /* 2024-05-01T12:00:00.000Z info test job.queued job=ab12 model="x\"y\n" */
    CHECK(strlen(out) > 25 && out[24] == ' ');
    CHECK(strstr(out + 24, " info test job.queued job=ab12 model=\"x\\\"y\\n\"\n") == out + 24);
}

static cJSON *json_of(const char *line)
{
    CHECK(one_line(line));
    cJSON *j = cJSON_Parse(line);
    CHECK(j != NULL && cJSON_IsObject(j));
    if (j == NULL)
        fprintf(stderr, "not JSON: %s", line);
    return j;
}

static const char *member_str(const cJSON *j, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, name);
    return cJSON_IsString(m) ? m->valuestring : NULL;
}

static void test_json_fields(void)
{
    log_set_format(LOG_FORMAT_JSON);
    cJSON *j = json_of(CAPTURE(log_warn("job.queued",
        "job=%s model=\"%s\" bytes=%d neg=-3 big=12345678901234567 lead=007 ver=1.5 "
        "event=x loose words path=\"%s\"", "ab12", LOG_ESC("a\"b\\c\td"), 42,
        LOG_ESC("\x01\xff/é"))));
    if (j == NULL)
        return;
    CHECK(member_str(j, "time") != NULL && strlen(member_str(j, "time")) == 24);
    CHECK_STR(member_str(j, "level"), "warn");
    CHECK_STR(member_str(j, "program"), "test");
    CHECK_STR(member_str(j, "event"), "job.queued");
    CHECK_STR(member_str(j, "job"), "ab12");
    CHECK_STR(member_str(j, "model"), "a\"b\\c\td");
    const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(j, "bytes");
    CHECK(cJSON_IsNumber(bytes) && bytes->valuedouble == 42);
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "neg")));
    CHECK_STR(member_str(j, "big"), "12345678901234567");
    CHECK_STR(member_str(j, "lead"), "007");
    CHECK_STR(member_str(j, "ver"), "1.5");
    CHECK_STR(member_str(j, "_event"), "x");
    CHECK_STR(member_str(j, "msg"), "loose words");
    /* A control byte comes back; a byte that is not UTF-8 stays as text. */
    CHECK_STR(member_str(j, "path"), "\x01\\xff/é");
    cJSON_Delete(j);

    j = json_of(CAPTURE(log_info("plain", "%s", "")));
    CHECK(j != NULL && cJSON_GetArraySize(j) == 4);
    cJSON_Delete(j);
    /* A forgotten LOG_ESC: still one line of JSON. */
    j = json_of(CAPTURE(log_info("raw", "x=\"%s\" y=%s", "a\"b c\n=\"", "\\\"\r")));
    cJSON_Delete(j);
}

/* Random text from an alphabet rich in the characters the parser reacts to. */
static void random_text(char *buf, size_t n, unsigned *seed)
{
    static const char alpha[] = "ab=\"\\ x= =\"\\\"\t\n\x01\x7f\xc3\xa9\xff\xe2\x82 0-9k.";
    for (size_t i = 0; i < n; i++) {
        int r = rand_r(seed);
        buf[i] = (r & 7) == 0 ? (char)(1 + (r >> 3) % 255)
                              : alpha[(r >> 3) % (sizeof(alpha) - 1)];
    }
    buf[n] = '\0';
}

static void test_json_fuzz(void)
{
    log_set_format(LOG_FORMAT_JSON);
    unsigned seed = 12345;
    static char text[6000];
    int bad = 0;
    for (int i = 0; i < 3000 && bad < 5; i++) {
        size_t n = (size_t)(rand_r(&seed) % (i % 10 == 0 ? 5000 : 300));
        random_text(text, n, &seed);
        const char *out = (i & 1) ? CAPTURE(log_error("fuzz", "%s", text))
                                  : CAPTURE(log_error("fuzz", "k=\"%s\" %s", LOG_ESC(text), text));
        cJSON *j = one_line(out) ? cJSON_Parse(out) : NULL;
        if (j == NULL || member_str(j, "event") == NULL ||
            strcmp(member_str(j, "event"), "fuzz") != 0) {
            bad++;
            fprintf(stderr, "bad line for input %d: %s\n", i, out);
        }
        cJSON_Delete(j);
    }
    CHECK(bad == 0);
}

int main(void)
{
    log_init("test", LOG_DEBUG);
    test_text();
    test_json_fields();
    test_json_fuzz();
    return check_report();
}
