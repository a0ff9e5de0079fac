/*
 * test_path.c - path_validate(), path_list_check(), path_utf8_valid()
 * (common/path.h).
 */
#include "check.h"
#include "path.h"

#include <stdio.h>
#include <string.h>

static void accept_at(int line, const char *p, size_t len)
{
    const char *why = "(unset)";
    int rc = path_validate(p, len, &why);
    CHECK(rc == 0);
    if (rc != 0)
        fprintf(stderr, "  line %d: refused a good path: %s\n", line, why);
}
#define ACCEPT(s) accept_at(__LINE__, (s), strlen(s))

/* Refused, with a reason that contains want. */
static void refuse_at(int line, const char *p, size_t len, const char *want)
{
    const char *why = NULL;
    int rc = path_validate(p, len, &why);
    CHECK(rc == -1);
    CHECK(why != NULL && strstr(why, want) != NULL);
    if (rc != -1 || why == NULL || strstr(why, want) == NULL)
        fprintf(stderr, "  line %d: rc=%d why=\"%s\", wanted a reason with \"%s\"\n", line,
                rc, why ? why : "(null)", want);
}
#define REFUSE(s, want) refuse_at(__LINE__, (s), strlen(s), (want))
#define REFUSE_N(s, n, want) refuse_at(__LINE__, (s), (n), (want))

static void test_validate(void)
{
    ACCEPT("a");
    ACCEPT("src/math_utils.py");
    ACCEPT("dir/sub/file.txt");
    ACCEPT("\xc3\xbc.txt");                 /* ü.txt */
    ACCEPT("a..b");
    ACCEPT(".hidden");
    ACCEPT("...");
    ACCEPT("..a");
    ACCEPT("a..");
    ACCEPT("dir/.hidden/x");
    ACCEPT("with space.txt");
    ACCEPT("\xe2\x82\xac/\xf0\x9f\x98\x80");  /* €/😀 */

    REFUSE("", "empty");
    REFUSE("/etc/passwd", "relative");
    REFUSE("/", "relative");
    REFUSE("../x", "..");
    REFUSE("..", "..");
    REFUSE(".", "\".\"");
    REFUSE("a/../b", "..");
    REFUSE("a/..", "..");
    REFUSE("a/./b", "\".\"");
    REFUSE("./a", "\".\"");
    REFUSE("a/.", "\".\"");
    REFUSE("a//b", "empty component");
    REFUSE("a/", "empty component");
    REFUSE("a\\b", "backslash");
    REFUSE("..\\x", "backslash");
    REFUSE("a\nb", "control");
    REFUSE("a\rb", "control");
    REFUSE("a\tb", "control");
    REFUSE("\x1b[31m", "control");
    REFUSE("a\x7f", "control");
    REFUSE_N("a\0b", 3, "NUL");
    REFUSE_N("abc\0", 4, "NUL");
    REFUSE_N("\0", 1, "NUL");

    /* The length is what counts, not a terminator. */
    CHECK(path_validate("abc/../x", 3, &(const char *){ NULL }) == 0);

    REFUSE("\xff", "UTF-8");
    REFUSE("a\xff" "b", "UTF-8");
    REFUSE("\xc0\xaf", "UTF-8");            /* overlong '/' */
    REFUSE("\xe0\x80\xaf", "UTF-8");        /* overlong, 3 bytes */
    REFUSE("\xed\xa0\x80", "UTF-8");        /* surrogate U+D800 */
    REFUSE("\xe2\x82", "UTF-8");            /* truncated */
    REFUSE("x\xe2\x82", "UTF-8");
    REFUSE("\xe2\x82x", "UTF-8");
    REFUSE("\x80", "UTF-8");                /* lone continuation */
    REFUSE("\xf4\x90\x80\x80", "UTF-8");    /* past U+10FFFF */

    /* Lengths: whole path <= 1024, component <= 255. */
    char buf[1100];
    memset(buf, 'a', sizeof(buf));
    accept_at(__LINE__, buf, 255);
    refuse_at(__LINE__, buf, 256, "255");
    for (int i = 0; i < 4; i++)
        buf[i * 201 + 200] = '/';           /* 4 x (200 + "/") + 220 = 1024 */
    accept_at(__LINE__, buf, 1024);
    refuse_at(__LINE__, buf, 1025, "too long");
    memset(buf, 'a', sizeof(buf));
    buf[255] = '/';
    accept_at(__LINE__, buf, 511);          /* 255 + "/" + 255 */
    refuse_at(__LINE__, buf, 512, "255");   /* 255 + "/" + 256 */
}

static void test_utf8(void)
{
    CHECK(path_utf8_valid("", 0) == 1);
    CHECK(path_utf8_valid("plain", 5) == 1);
    CHECK(path_utf8_valid("\xc2\x80", 2) == 1);           /* U+0080 */
    CHECK(path_utf8_valid("\xdf\xbf", 2) == 1);           /* U+07FF */
    CHECK(path_utf8_valid("\xe0\xa0\x80", 3) == 1);       /* U+0800 */
    CHECK(path_utf8_valid("\xed\x9f\xbf", 3) == 1);       /* U+D7FF */
    CHECK(path_utf8_valid("\xee\x80\x80", 3) == 1);       /* U+E000 */
    CHECK(path_utf8_valid("\xef\xbf\xbf", 3) == 1);       /* U+FFFF */
    CHECK(path_utf8_valid("\xf0\x90\x80\x80", 4) == 1);   /* U+10000 */
    CHECK(path_utf8_valid("\xf4\x8f\xbf\xbf", 4) == 1);   /* U+10FFFF */

    CHECK(path_utf8_valid("\xc0\x80", 2) == 0);           /* overlong NUL */
    CHECK(path_utf8_valid("\xc1\xbf", 2) == 0);
    CHECK(path_utf8_valid("\xe0\x9f\xbf", 3) == 0);       /* overlong */
    CHECK(path_utf8_valid("\xf0\x8f\xbf\xbf", 4) == 0);   /* overlong */
    CHECK(path_utf8_valid("\xed\xbf\xbf", 3) == 0);       /* surrogate U+DFFF */
    CHECK(path_utf8_valid("\xf4\x90\x80\x80", 4) == 0);   /* U+110000 */
    CHECK(path_utf8_valid("\xf8\x88\x80\x80\x80", 5) == 0);
    CHECK(path_utf8_valid("\xfe", 1) == 0);
    CHECK(path_utf8_valid("\xbf", 1) == 0);
    CHECK(path_utf8_valid("\xc3", 1) == 0);               /* truncated */
    CHECK(path_utf8_valid("\xf0\x9f\x98", 3) == 0);       /* truncated */
    CHECK(path_utf8_valid("\xc3" "a", 2) == 0);           /* bad continuation */
    /* len bounds the scan: a sequence cut by len is invalid. */
    CHECK(path_utf8_valid("\xc3\xbc", 1) == 0);
    CHECK(path_utf8_valid("a\xc3\xbc", 1) == 1);
}

/* path_list_check must refuse with *bad one of the allowed indices. */
static void list_refuse_at(int line, const char *const *paths, size_t n, size_t bad1,
                           size_t bad2, const char *want)
{
    size_t bad = (size_t)-1;
    const char *why = NULL;
    int rc = path_list_check(paths, n, &bad, &why);
    int ok = rc == -1 && (bad == bad1 || bad == bad2) && why != NULL && strstr(why, want);
    CHECK(rc == -1);
    CHECK(bad == bad1 || bad == bad2);
    CHECK(why != NULL && strstr(why, want) != NULL);
    if (!ok)
        fprintf(stderr, "  line %d: rc=%d bad=%zu why=\"%s\"\n", line, rc, bad,
                why ? why : "(null)");
}

static void list_accept_at(int line, const char *const *paths, size_t n)
{
    size_t bad = (size_t)-1;
    const char *why = NULL;
    int rc = path_list_check(paths, n, &bad, &why);
    CHECK(rc == 0);
    if (rc != 0)
        fprintf(stderr, "  line %d: rc=%d bad=%zu why=\"%s\"\n", line, rc, bad,
                why ? why : "(null)");
}
#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_list(void)
{
    list_accept_at(__LINE__, NULL, 0);
    {
        const char *l[] = { "a" };
        list_accept_at(__LINE__, l, N(l));
    }
    {
        const char *l[] = { "a/b", "a/bc" };
        list_accept_at(__LINE__, l, N(l));
    }
    {
        const char *l[] = { "a/bc", "a/b", "ab", "a.txt", "b/a", "a-b" };
        list_accept_at(__LINE__, l, N(l));
    }
    {
        const char *l[] = { "ab", "a/b" };
        list_accept_at(__LINE__, l, N(l));
    }

    /* Duplicates: distinct buffers so the index cannot come from a merged
     * string literal. Either copy may be named. */
    {
        char a1[] = "a", a2[] = "a";
        const char *l[] = { "x", a1, "b", a2 };
        list_refuse_at(__LINE__, l, N(l), 1, 3, "twice");
    }
    {
        char d1[] = "dir/f.txt", d2[] = "dir/f.txt";
        const char *l[] = { d1, d2 };
        list_refuse_at(__LINE__, l, N(l), 0, 1, "twice");
    }

    /* A file that is also a folder: the path inside it is named. */
    {
        const char *l[] = { "a", "a/b" };
        list_refuse_at(__LINE__, l, N(l), 1, 1, "inside");
    }
    {
        const char *l[] = { "a/b", "a" };
        list_refuse_at(__LINE__, l, N(l), 0, 0, "inside");
    }
    {
        const char *l[] = { "a", "a-b", "a/b" };   /* "a-b" sorts between */
        list_refuse_at(__LINE__, l, N(l), 2, 2, "inside");
    }
    {
        const char *l[] = { "a/b", "a-b", "a" };
        list_refuse_at(__LINE__, l, N(l), 0, 0, "inside");
    }
    {
        const char *l[] = { "z", "a/b/c", "a.txt", "a/b", "a!" };
        list_refuse_at(__LINE__, l, N(l), 1, 1, "inside");
    }
    {
        const char *l[] = { "x/y/z/w", "x" };
        list_refuse_at(__LINE__, l, N(l), 0, 0, "inside");
    }

    /* A larger list: 1000 files in 1000 folders, then one folder as a file. */
    static char names[1001][32];
    static const char *big[1001];
    for (int i = 0; i < 1000; i++) {
        snprintf(names[i], sizeof(names[i]), "d%03d/f%d", i, i);
        big[i] = names[i];
    }
    list_accept_at(__LINE__, big, 1000);
    snprintf(names[1000], sizeof(names[1000]), "d500");
    big[1000] = names[1000];
    list_refuse_at(__LINE__, big, 1001, 500, 500, "inside");
}

int main(void)
{
    test_validate();
    test_utf8();
    test_list();
    return check_report();
}
