/* webhook_sign.c - see webhook_sign.h. */
#include "webhook_sign.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "xalloc.h"

#define WEBHOOK_PREFIX "whsec_"
#define WEBHOOK_SECRET_BYTES 32

int webhook_secret_new(char out[WEBHOOK_SECRET_MAX])
{
    unsigned char raw[WEBHOOK_SECRET_BYTES];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    memcpy(out, WEBHOOK_PREFIX, strlen(WEBHOOK_PREFIX));
    EVP_EncodeBlock((unsigned char *)out + strlen(WEBHOOK_PREFIX), raw, sizeof(raw));
    memset(raw, 0, sizeof(raw));
    return 0;
}

/* Decodes the base64 part of a secret into key (64 bytes). Returns the
 * key's length, or -1 when malformed. */
static int webhook_secret_key(const char *secret, unsigned char key[64])
{
    size_t plen = strlen(WEBHOOK_PREFIX);
    if (secret == NULL || strncmp(secret, WEBHOOK_PREFIX, plen) != 0)
        return -1;
    const char *b64 = secret + plen;
    size_t n = strlen(b64);
    if (n == 0 || n % 4 != 0 || n > 88)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = b64[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || (c == '=' && i >= n - 2);
        if (!ok || (c != '=' && i > 0 && b64[i - 1] == '='))
            return -1;
    }
    unsigned char buf[72];
    int len = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)n);
    if (len < 0)
        return -1;
    len -= (b64[n - 1] == '=') + (b64[n - 2] == '=');
    if (len < 16 || len > 64)
        return -1;
    memcpy(key, buf, (size_t)len);
    memset(buf, 0, sizeof(buf));
    return len;
}

int webhook_secret_valid(const char *s)
{
    unsigned char key[64];
    int ok = webhook_secret_key(s, key) > 0;
    memset(key, 0, sizeof(key));
    return ok;
}

int webhook_sign(const char *secret, const char *msg_id, long long timestamp,
                 const char *body, size_t body_len, char out[WEBHOOK_SIG_MAX])
{
    unsigned char key[64], mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    int key_len = webhook_secret_key(secret, key);
    if (key_len < 0)
        return -1;
    char head[160];
    int hn = snprintf(head, sizeof(head), "%s.%lld.", msg_id, timestamp);
    int ok = hn > 0 && (size_t)hn < sizeof(head);
    /* The one-shot HMAC() over one buffer: the streaming HMAC_CTX calls
     * are deprecated in OpenSSL 3. */
    unsigned char *msg = ok ? xmalloc((size_t)hn + body_len + 1) : NULL;
    if (ok) {
        memcpy(msg, head, (size_t)hn);
        if (body_len > 0)
            memcpy(msg + hn, body, body_len);
        ok = HMAC(EVP_sha256(), key, key_len, msg, (size_t)hn + body_len, mac, &mac_len) !=
                 NULL && mac_len == 32;
    }
    free(msg);
    memset(key, 0, sizeof(key));
    if (!ok)
        return -1;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mac_len);
    return 0;
}

int webhook_url_valid(const char *url)
{
    size_t skip;
    if (url == NULL)
        return 0;
    if (strncasecmp(url, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        skip = 8;
    else
        return 0;
    size_t n = strlen(url);
    if (n > WEBHOOK_URL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return 0;
    /* The authority: up to the first / ? #; a host after any userinfo. */
    size_t end = skip + strcspn(url + skip, "/?#");
    const char *at = memchr(url + skip, '@', end - skip);
    size_t host = at ? (size_t)(at - url) + 1 : skip;
    return end > host && url[host] != ':';
}

/* IPv4 (host byte order) rules. */
static int webhook_v4_public(uint32_t a, const char **why)
{
    static const struct { uint32_t net, mask; const char *why; } bad[] = {
        { 0x00000000, 0xff000000, "unspecified" },     /* 0/8 */
        { 0x7f000000, 0xff000000, "loopback" },        /* 127/8 */
        { 0x0a000000, 0xff000000, "private" },         /* 10/8 */
        { 0xac100000, 0xfff00000, "private" },         /* 172.16/12 */
        { 0xc0a80000, 0xffff0000, "private" },         /* 192.168/16 */
        { 0x64400000, 0xffc00000, "private" },         /* 100.64/10 (CGNAT) */
        { 0xa9fe0000, 0xffff0000, "link-local" },      /* 169.254/16 */
        { 0xe0000000, 0xf0000000, "multicast" },       /* 224/4 */
        { 0xf0000000, 0xf0000000, "reserved" },        /* 240/4, broadcast */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if ((a & bad[i].mask) == bad[i].net) {
            *why = bad[i].why;
            return 0;
        }
    return 1;
}

static int webhook_v6_public(const unsigned char *b, const char **why)
{
    static const unsigned char zero[16];
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (memcmp(b, mapped, 12) == 0 || (memcmp(b, zero, 12) == 0 && b[12] | b[13]))
        return webhook_v4_public((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                                     (uint32_t)b[14] << 8 | b[15], why);
    *why = NULL;
    if (memcmp(b, zero, 15) == 0)
        *why = b[15] == 1 ? "loopback" : b[15] == 0 ? "unspecified" : "reserved";
    else if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        *why = "link-local";
    else if ((b[0] & 0xfe) == 0xfc)
        *why = "private";
    else if (b[0] == 0xff)
        *why = "multicast";
    else if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        *why = "private";    /* fec0::/10, the old site-local */
    return *why == NULL;
}

int webhook_addr_public(const struct sockaddr *sa, const char **why)
{
    *why = "unsupported address family";
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return webhook_v4_public(ntohl(in->sin_addr.s_addr), why);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        return webhook_v6_public(in6->sin6_addr.s6_addr, why);
    }
    return 0;
}
