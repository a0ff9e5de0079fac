/*
 * test_webhook_sign.c - webhook signatures, secrets, the URL rule and the
 * address rule (common/webhook_sign.c).
 *
 * The signature vector is the Standard Webhooks reference one (the
 * specification's libraries test with it), recomputed with Python's hmac
 * when this test was written.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"
#include "webhook_sign.h"

static void test_vector(void)
{
    char sig[WEBHOOK_SIG_MAX];
    const char *body = "{\"test\": 2432232314}";
    CHECK(webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                       1614265330, body, strlen(body), sig) == 0);
    CHECK_STR(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* Any change of id, time or body changes it. */
    char other[WEBHOOK_SIG_MAX];
    CHECK(webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                       1614265331, body, strlen(body), other) == 0);
    CHECK(strcmp(sig, other) != 0);
    /* Malformed secrets are refused. */
    CHECK(webhook_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, "", 0, sig) == -1);
    CHECK(webhook_sign("whsec_", "m", 1, "", 0, sig) == -1);
    CHECK(webhook_sign("whsec_not base64!", "m", 1, "", 0, sig) == -1);
    CHECK(webhook_sign("whsec_QUJD", "m", 1, "", 0, sig) == -1);   /* 3 bytes: too short */
}

static void test_secret_new(void)
{
    char a[WEBHOOK_SECRET_MAX], b[WEBHOOK_SECRET_MAX];
    CHECK(webhook_secret_new(a) == 0);
    CHECK(webhook_secret_new(b) == 0);
    CHECK(strncmp(a, "whsec_", 6) == 0);
    CHECK(strlen(a) == 6 + 44);              /* base64 of 32 bytes */
    CHECK(strcmp(a, b) != 0);
    CHECK(webhook_secret_valid(a));
    CHECK(!webhook_secret_valid("whsec_abc"));
    char sig[WEBHOOK_SIG_MAX];
    CHECK(webhook_sign(a, "msg_x", 1, "{}", 2, sig) == 0);
    CHECK(strncmp(sig, "v1,", 3) == 0 && strlen(sig) == 3 + 44);
}

static void test_url(void)
{
    CHECK(webhook_url_valid("http://example.com/hook"));
    CHECK(webhook_url_valid("https://example.com"));
    CHECK(webhook_url_valid("HTTPS://127.0.0.1:8080/x?y=1"));
    CHECK(webhook_url_valid("http://[::1]:80/"));
    CHECK(!webhook_url_valid("ftp://example.com/"));
    CHECK(!webhook_url_valid("not a url"));
    CHECK(!webhook_url_valid("http://"));
    CHECK(!webhook_url_valid("http:///path"));
    CHECK(!webhook_url_valid("http://exa mple.com/"));
    CHECK(!webhook_url_valid("javascript:alert(1)"));
    CHECK(!webhook_url_valid("file:///etc/passwd"));
    CHECK(!webhook_url_valid(""));
    CHECK(!webhook_url_valid(NULL));
    char big[WEBHOOK_URL_MAX + 16];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "http://", 7);
    CHECK(!webhook_url_valid(big));
}

static int v4(const char *ip, const char **why)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a.sin_addr);
    return webhook_addr_public((const struct sockaddr *)&a, why);
}

static int v6(const char *ip, const char **why)
{
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return webhook_addr_public((const struct sockaddr *)&a, why);
}

static void test_addresses(void)
{
    const char *why = NULL;
    CHECK(v4("93.184.216.34", &why));
    CHECK(v4("8.8.8.8", &why));
    CHECK(!v4("127.0.0.1", &why) && strcmp(why, "loopback") == 0);
    CHECK(!v4("10.1.2.3", &why) && strcmp(why, "private") == 0);
    CHECK(!v4("172.16.0.1", &why) && !v4("172.31.255.255", &why));
    CHECK(v4("172.32.0.1", &why));
    CHECK(!v4("192.168.1.1", &why));
    CHECK(!v4("169.254.169.254", &why) && strcmp(why, "link-local") == 0);
    CHECK(!v4("0.0.0.0", &why) && strcmp(why, "unspecified") == 0);
    CHECK(!v4("224.0.0.1", &why) && strcmp(why, "multicast") == 0);
    CHECK(!v4("255.255.255.255", &why));
    CHECK(v6("2606:4700::1111", &why));
    CHECK(!v6("::1", &why) && strcmp(why, "loopback") == 0);
    CHECK(!v6("::", &why) && strcmp(why, "unspecified") == 0);
    CHECK(!v6("fe80::1", &why) && strcmp(why, "link-local") == 0);
    CHECK(!v6("fc00::1", &why) && !v6("fd12:3456::1", &why));
    CHECK(!v6("ff02::1", &why) && strcmp(why, "multicast") == 0);
    CHECK(!v6("::ffff:127.0.0.1", &why) && strcmp(why, "loopback") == 0);
    CHECK(!v6("::ffff:10.0.0.1", &why));
    CHECK(v6("::ffff:8.8.8.8", &why));
    struct sockaddr other;
    memset(&other, 0, sizeof(other));
    other.sa_family = AF_UNIX;
    CHECK(!webhook_addr_public(&other, &why));
}

int main(void)
{
    test_vector();
    test_secret_new();
    test_url();
    test_addresses();
    return check_report();
}
