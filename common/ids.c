/* ids.c - see ids.h. */
#include "ids.h"

#include <openssl/rand.h>
#include <string.h>

int id_random_hex(char *out, size_t out_len, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];

    if (out_len == 0)
        return -1;
    out[0] = '\0';
    if (nbytes > sizeof(raw) || out_len < 2 * nbytes + 1)
        return -1;
    if (RAND_bytes(raw, (int)nbytes) != 1)
        return -1;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

int id_new(char out[ID_HEX_LEN + 1])
{
    return id_random_hex(out, ID_HEX_LEN + 1, ID_HEX_LEN / 2);
}

int id_valid(const char *s)
{
    if (s == NULL || strlen(s) != ID_HEX_LEN)
        return 0;
    for (size_t i = 0; i < ID_HEX_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}
