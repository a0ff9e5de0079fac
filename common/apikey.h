/*
 * apikey.h - API key hashing, comparison and generation.
 *
 * Keys are never stored: the database holds SHA-256(key). Comparing the
 * hashes in constant time means neither the bootstrap key nor a stored
 * hash leaks through response timing.
 */
#ifndef OC_APIKEY_H
#define OC_APIKEY_H

#include <stddef.h>

#define APIKEY_HASH_LEN 32
#define APIKEY_ID_LEN   20   /* "key_" + 16 hex */
#define APIKEY_LEN      68   /* "ock_" + 64 hex */

/* SHA-256 of the len bytes at key into out. Returns 0 or -1. */
int apikey_hash(const char *key, size_t len, unsigned char out[APIKEY_HASH_LEN]);

/* 1 when the two hashes are equal, compared in constant time. */
int apikey_hash_equal(const unsigned char a[APIKEY_HASH_LEN],
                      const unsigned char b[APIKEY_HASH_LEN]);

/* Writes a fresh key ("ock_" + 64 hex) and its id ("key_" + 16 hex).
 * Returns 0 or -1 when the random generator fails. */
int apikey_generate(char key[APIKEY_LEN + 1], char id[APIKEY_ID_LEN + 1]);

#endif
