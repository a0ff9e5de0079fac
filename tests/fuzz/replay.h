/*
 * replay.h - a main() for a fuzz target built without libFuzzer
 * (OC_FUZZ_REPLAY): runs LLVMFuzzerTestOneInput() once on each file named
 * on the command line, so the seed corpora are regression tests in every
 * build. Each input gets a buffer of exactly its size, so a sanitizer sees
 * any overread. Include it once, after the target.
 */
#ifndef OC_FUZZ_REPLAY_H
#define OC_FUZZ_REPLAY_H

#ifdef OC_FUZZ_REPLAY
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        long n = -1;
        if (f != NULL && fseek(f, 0, SEEK_END) == 0)
            n = ftell(f);
        if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
            fprintf(stderr, "could not read \"%s\"\n", argv[i]);
            if (f != NULL)
                fclose(f);
            return 1;
        }
        uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
        if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
            abort();
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)n);
        free(buf);
    }
    printf("%d passed, 0 failed\n", argc - 1);
    return 0;
}
#endif

#endif
