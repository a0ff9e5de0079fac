/*
 * ids.h - random identifiers for sessions, jobs, leases and API keys.
 *
 * Ids are 128 random bits from OpenSSL's CSPRNG written as 32 lowercase
 * hex digits, the same form as the seed service's uuid4().hex, so they are
 * unguessable and safe in paths, URLs and logs.
 */
#ifndef OC_IDS_H
#define OC_IDS_H

#include <stddef.h>

#define ID_HEX_LEN 32

/* Writes 32 hex digits and a NUL into out. Returns 0, or -1 if the random
 * generator failed (out is then an empty string). */
int id_new(char out[ID_HEX_LEN + 1]);

/* Writes nbytes random bytes as 2*nbytes hex digits plus NUL into out
 * (out_len >= 2*nbytes+1). Returns 0 or -1. */
int id_random_hex(char *out, size_t out_len, size_t nbytes);

/* 1 if s is exactly 32 lowercase hex digits, else 0. */
int id_valid(const char *s);

#endif
