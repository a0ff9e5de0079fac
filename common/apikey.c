/* apikey.c - see apikey.h. */
#include "apikey.h"
#include "ids.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

int apikey_hash(const char *key, size_t len, unsigned char out[APIKEY_HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(key, len, out, &n, EVP_sha256(), NULL) != 1 || n != APIKEY_HASH_LEN)
        return -1;
    return 0;
}

int apikey_hash_equal(const unsigned char a[APIKEY_HASH_LEN],
                      const unsigned char b[APIKEY_HASH_LEN])
{
    return CRYPTO_memcmp(a, b, APIKEY_HASH_LEN) == 0;
}

int apikey_generate(char key[APIKEY_LEN + 1], char id[APIKEY_ID_LEN + 1])
{
    memcpy(key, "ock_", 4);
    memcpy(id, "key_", 4);
    if (id_random_hex(key + 4, APIKEY_LEN + 1 - 4, 32) != 0 ||
        id_random_hex(id + 4, APIKEY_ID_LEN + 1 - 4, 8) != 0)
        return -1;
    return 0;
}
