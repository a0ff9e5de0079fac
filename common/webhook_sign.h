/*
 * webhook_sign.h - the pieces of webhooks (README, "Webhooks") that need
 * no I/O: Standard Webhooks signatures, signing secrets, the URL rule of
 * POST /job and the address rule the janitor applies when it connects.
 *
 * Ownership: every function writes into the caller's buffers.
 * Threading: no state; safe from any thread.
 */
#ifndef OC_WEBHOOK_SIGN_H
#define OC_WEBHOOK_SIGN_H

#include <stddef.h>

struct sockaddr;

/* "whsec_" + base64 of 32 bytes + NUL, with room to spare. */
#define WEBHOOK_SECRET_MAX 128
/* "v1," + base64 of a SHA-256 + NUL. */
#define WEBHOOK_SIG_MAX 64
/* Longest webhook_url accepted. */
#define WEBHOOK_URL_MAX 2048

/* A fresh secret: "whsec_" + base64 of 32 random bytes. Returns 0, or -1
 * when the random source fails. */
int webhook_secret_new(char out[WEBHOOK_SECRET_MAX]);

/* 1 when s is "whsec_" followed by base64 of 16 to 64 bytes. */
int webhook_secret_valid(const char *s);

/*
 * The Standard Webhooks signature of one message: "v1," + base64 of
 * HMAC-SHA256(key, "<msg_id>.<timestamp>.<body>") where key is the
 * base64-decoded part of secret after "whsec_". Returns 0, or -1 when the
 * secret is malformed.
 */
int webhook_sign(const char *secret, const char *msg_id, long long timestamp,
                 const char *body, size_t body_len, char out[WEBHOOK_SIG_MAX]);

/* 1 when url may be a webhook_url: http:// or https:// (any case), a
 * non-empty host, at most WEBHOOK_URL_MAX bytes of printable ASCII
 * without spaces. */
int webhook_url_valid(const char *url);

/*
 * 1 when a webhook may connect to this address (IPv4 or IPv6): 0 for
 * loopback, link-local (169.254/16, fe80::/10), private (10/8, 172.16/12,
 * 192.168/16, fc00::/7, 100.64/10), unspecified, multicast, broadcast and
 * the IPv4-mapped forms of these, with the reason ("loopback", ...) in
 * why. Other address families are refused.
 */
int webhook_addr_public(const struct sockaddr *sa, const char **why);

#endif
