/*
 * test_ids_time.c - ids (common/ids.h), timestamps (common/timefmt.h) and
 * API keys (common/apikey.h).
 */
#include "apikey.h"
#include "check.h"
#include "ids.h"
#include "timefmt.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int all_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void test_ids(void)
{
    char a[ID_HEX_LEN + 1], b[ID_HEX_LEN + 1];
    CHECK(id_new(a) == 0);
    CHECK(id_new(b) == 0);
    CHECK(strlen(a) == 32);
    CHECK(all_lower_hex(a, 32));
    CHECK(strcmp(a, b) != 0);
    CHECK(id_valid(a) == 1);
    CHECK(id_valid(b) == 1);

    CHECK(id_valid("0123456789abcdef0123456789abcdef") == 1);
    CHECK(id_valid("0123456789abcdef0123456789abcde") == 0);    /* 31 */
    CHECK(id_valid("0123456789abcdef0123456789abcdef0") == 0);  /* 33 */
    CHECK(id_valid("0123456789ABCDEF0123456789abcdef") == 0);   /* uppercase */
    CHECK(id_valid("0123456789abcdeg0123456789abcdef") == 0);   /* non-hex */
    CHECK(id_valid("0123456789abcdef0123456789abcde/") == 0);
    CHECK(id_valid("../3456789abcdef0123456789abcdef") == 0);
    CHECK(id_valid("") == 0);
    CHECK(id_valid(NULL) == 0);
    char up[ID_HEX_LEN + 1];
    memcpy(up, a, sizeof(up));
    for (size_t i = 0; i < ID_HEX_LEN; i++)
        if (up[i] >= 'a' && up[i] <= 'f')
            up[i] = (char)(up[i] - 'a' + 'A');
    CHECK(id_valid(up) == (strcmp(up, a) == 0));

    /* Many ids: all distinct in a small sample, and every hex digit used. */
    int seen[16] = { 0 };
    char prev[ID_HEX_LEN + 1] = "";
    for (int i = 0; i < 200; i++) {
        char x[ID_HEX_LEN + 1];
        CHECK(id_new(x) == 0);
        CHECK(strcmp(x, prev) != 0);
        for (size_t k = 0; k < ID_HEX_LEN; k++)
            seen[x[k] <= '9' ? x[k] - '0' : x[k] - 'a' + 10]++;
        memcpy(prev, x, sizeof(prev));
    }
    int all = 1;
    for (int i = 0; i < 16; i++)
        all &= seen[i] > 0;
    CHECK(all);

    /* id_random_hex bounds. */
    char buf[200];
    CHECK(id_random_hex(buf, 5, 2) == 0 && strlen(buf) == 4 && all_lower_hex(buf, 4));
    memcpy(buf, "zzzz", 5);
    CHECK(id_random_hex(buf, 4, 2) == -1 && buf[0] == '\0');
    CHECK(id_random_hex(buf, sizeof(buf), 64) == 0 && strlen(buf) == 128);
    CHECK(id_random_hex(buf, sizeof(buf), 65) == -1 && buf[0] == '\0');
    CHECK(id_random_hex(buf, 1, 0) == 0 && buf[0] == '\0');
    CHECK(id_random_hex(buf, 0, 0) == -1);
}

static void iso_at(int line, int64_t usec, const char *want)
{
    char out[TIME_ISO_LEN];
    memset(out, 'X', sizeof(out));
    int rc = time_format_iso(usec, out);
    int ok = rc == 0 && memchr(out, '\0', sizeof(out)) != NULL && strcmp(out, want) == 0;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  line %d: %lld -> rc=%d \"%.*s\", want \"%s\"\n", line,
                (long long)usec, rc, (int)sizeof(out), out, want);
}
#define ISO(u, want) iso_at(__LINE__, (u), (want))

static void iso_refused_at(int line, int64_t usec)
{
    char out[TIME_ISO_LEN];
    memset(out, 'X', sizeof(out));
    int rc = time_format_iso(usec, out);
    CHECK(rc == -1);
    CHECK(out[0] == '\0');
    if (rc != -1)
        fprintf(stderr, "  line %d: %lld accepted as \"%s\"\n", line, (long long)usec, out);
}
#define ISO_REFUSED(u) iso_refused_at(__LINE__, (u))

static void test_time(void)
{
    ISO(0, "1970-01-01T00:00:00.000000Z");
    ISO(1, "1970-01-01T00:00:00.000001Z");
    ISO(999999, "1970-01-01T00:00:00.999999Z");
    ISO(1000000, "1970-01-01T00:00:01.000000Z");
    /* 1764331786 s = 20420 days (2025-11-28) + 43786 s (12:09:46). */
    ISO(1764331786123456LL, "2025-11-28T12:09:46.123456Z");
    /* 2026-01-02T03:04:05Z = 20455 days + 11045 s. */
    ISO(1767323045123456LL, "2026-01-02T03:04:05.123456Z");
    /* 2000-02-29 (leap day): 11016 days. */
    ISO(951782400000000LL, "2000-02-29T00:00:00.000000Z");
    ISO(-1, "1969-12-31T23:59:59.999999Z");
    ISO(-1000000, "1969-12-31T23:59:59.000000Z");
    ISO(-1000001, "1969-12-31T23:59:58.999999Z");
    ISO(-999999, "1969-12-31T23:59:59.000001Z");
    ISO(253402300799999999LL, "9999-12-31T23:59:59.999999Z");
    ISO(-62167219200000000LL, "0000-01-01T00:00:00.000000Z");

    ISO_REFUSED(253402300800000000LL);     /* 10000-01-01 */
    ISO_REFUSED(-62167219200000001LL);     /* year -1 */
    ISO_REFUSED(INT64_MAX);
    ISO_REFUSED(INT64_MIN);

    /* Wall clock: close to time(). */
    int64_t now = time_now_usec();
    int64_t t = (int64_t)time(NULL) * 1000000;
    CHECK(now > 1700000000LL * 1000000);
    CHECK(now - t < 5000000 && t - now < 5000000);

    /* Monotonic clock: never goes back, and sees a 20 ms sleep. */
    int64_t m0 = time_mono_ms(), prevm = m0;
    int back = 0;
    for (int i = 0; i < 10000; i++) {
        int64_t m = time_mono_ms();
        back |= m < prevm;
        prevm = m;
    }
    CHECK(!back);
    CHECK(m0 > 0);
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    int64_t before = time_mono_ms();
    nanosleep(&ts, NULL);
    int64_t after = time_mono_ms();
    CHECK(after - before >= 20);
    CHECK(after - before < 10000);
}

static void test_apikey(void)
{
    static const unsigned char abc[APIKEY_HASH_LEN] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
    };
    static const unsigned char empty[APIKEY_HASH_LEN] = {
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
        0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
        0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
    };
    unsigned char h[APIKEY_HASH_LEN], h2[APIKEY_HASH_LEN];
    CHECK(apikey_hash("abc", 3, h) == 0);
    CHECK(memcmp(h, abc, sizeof(h)) == 0);
    CHECK(apikey_hash_equal(h, abc) == 1);
    CHECK(apikey_hash("", 0, h2) == 0);
    CHECK(memcmp(h2, empty, sizeof(h2)) == 0);
    CHECK(apikey_hash_equal(h, h2) == 0);
    /* The length counts, not a terminator. */
    CHECK(apikey_hash("abcd", 3, h2) == 0 && apikey_hash_equal(h, h2) == 1);
    CHECK(apikey_hash("abc", 4, h2) == 0 && apikey_hash_equal(h, h2) == 0);
    /* One bit anywhere makes them differ. */
    memcpy(h2, abc, sizeof(h2));
    h2[APIKEY_HASH_LEN - 1] ^= 1;
    CHECK(apikey_hash_equal(abc, h2) == 0);
    memcpy(h2, abc, sizeof(h2));
    h2[0] ^= 0x80;
    CHECK(apikey_hash_equal(abc, h2) == 0);

    char key[APIKEY_LEN + 1], id[APIKEY_ID_LEN + 1];
    char key2[APIKEY_LEN + 1], id2[APIKEY_ID_LEN + 1];
    CHECK(apikey_generate(key, id) == 0);
    CHECK(apikey_generate(key2, id2) == 0);
    CHECK(strlen(key) == 68 && APIKEY_LEN == 68);
    CHECK(strncmp(key, "ock_", 4) == 0);
    CHECK(all_lower_hex(key + 4, 64));
    CHECK(strlen(id) == 20 && APIKEY_ID_LEN == 20);
    CHECK(strncmp(id, "key_", 4) == 0);
    CHECK(all_lower_hex(id + 4, 16));
    CHECK(strcmp(key, key2) != 0);
    CHECK(strcmp(id, id2) != 0);
    /* A generated key hashes like any other string. */
    unsigned char hk[APIKEY_HASH_LEN], hk2[APIKEY_HASH_LEN];
    CHECK(apikey_hash(key, strlen(key), hk) == 0);
    CHECK(apikey_hash(key2, strlen(key2), hk2) == 0);
    CHECK(apikey_hash_equal(hk, hk2) == 0);
    CHECK(apikey_hash(key, strlen(key), hk2) == 0 && apikey_hash_equal(hk, hk2) == 1);
}

int main(void)
{
    test_ids();
    test_time();
    test_apikey();
    return check_report();
}
