/*
 * fuzz_archive.c - libFuzzer target for the .tar.gz reader of POST
 * /session (archive_extract, api/archive.c).
 *
 * Each input is unpacked, as the route does, into a fresh temporary
 * folder with small limits (so inputs of a few KiB reach every refusal),
 * then the folder is removed. Beyond "no crash, no leak, no UB" (ASan,
 * LSan and UBSan are on), a broken invariant calls abort():
 *  - a refusal always comes with a reason;
 *  - an accepted archive respects every limit, each recorded path passes
 *    the path rules, and each recorded file is a regular file below the
 *    folder (opened without following links) of exactly its recorded
 *    size, the sizes adding up to the recorded total;
 *  - the reader never reads more compressed bytes than it was given.
 *
 * Built with -DOC_FUZZ_REPLAY (no libFuzzer, any compiler), the file has a
 * main() that runs the target once on each file named on the command line.
 */
#include "archive_io.h"
#include "fsutil.h"
#include "path.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_MAX_FILES 16
#define FUZZ_MAX_BYTES (64 * 1024)
#define FUZZ_MAX_IN    (256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__,         \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

struct mem_in {
    const uint8_t *p;
    size_t         len, off;
};

static ssize_t mem_read(void *arg, void *buf, size_t len)
{
    struct mem_in *m = arg;
    size_t n = m->len - m->off < len ? m->len - m->off : len;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (ssize_t)n;
}

static void check_accepted(int dfd, const struct archive_files *f)
{
    FUZZ_ASSERT(f->n <= FUZZ_MAX_FILES);
    FUZZ_ASSERT(f->bytes >= 0 && f->bytes <= FUZZ_MAX_BYTES);
    int64_t total = 0;
    for (size_t i = 0; i < f->n; i++) {
        const char *why;
        FUZZ_ASSERT(path_validate(f->v[i].path, strlen(f->v[i].path), &why) == 0);
        FUZZ_ASSERT(f->v[i].mode == 0100644 || f->v[i].mode == 0100755);
        int fd = fs_open_beneath(dfd, f->v[i].path, O_RDONLY, 0);
        FUZZ_ASSERT(fd >= 0);
        struct stat st;
        FUZZ_ASSERT(fstat(fd, &st) == 0 && S_ISREG(st.st_mode));
        FUZZ_ASSERT(st.st_size == f->v[i].size_bytes);
        FUZZ_ASSERT((st.st_mode & 07000) == 0);
        close(fd);
        total += f->v[i].size_bytes;
    }
    FUZZ_ASSERT(total == f->bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[] = "/tmp/fuzz_archive.XXXXXX";
    if (mkdtemp(dir) == NULL)
        abort();
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FUZZ_ASSERT(dfd >= 0);
    struct mem_in in = { data, size, 0 };
    const struct archive_limits lim = { FUZZ_MAX_FILES, FUZZ_MAX_BYTES, FUZZ_MAX_IN };
    struct archive_files out;
    char detail[512];
    detail[0] = '\0';
    enum archive_rc rc = archive_extract(mem_read, &in, dfd, &lim, &out, detail,
                                         sizeof(detail));
    FUZZ_ASSERT(rc >= ARCHIVE_X_OK && rc <= ARCHIVE_X_IO);
    FUZZ_ASSERT(in.off <= size);
    if (rc == ARCHIVE_X_OK)
        check_accepted(dfd, &out);
    else
        FUZZ_ASSERT(detail[0] != '\0');
    archive_files_free(&out);
    close(dfd);
    FUZZ_ASSERT(fs_rm_rf(dir) == 0);
    return 0;
}

#include "replay.h"
