/*
 * archive_io.h - .tar.gz in and out of a session (libarchive), apart from
 * HTTP: the reader takes its bytes from a callback (the request body, or
 * memory in the fuzzer), the writer hands its bytes to one (the response).
 *
 * Reading: archive_extract() unpacks a gzip-compressed tar (ustar, pax or
 * GNU) into a fresh folder, in bounded memory (libarchive's buffers and
 * one 64 KiB block): regular files only; a link (symbolic or hard), a
 * device, a FIFO, a socket, a name that breaks the path rules
 * (common/path.h: absolute, "..", ...) or clashes with another member is
 * refused, naming the member. Limits are checked while streaming: over
 * max_files members, or once the decompressed total passes max_bytes (a
 * bomb is refused as soon as it passes, not after), or over max_in
 * compressed bytes read. On any refusal the caller removes the folder:
 * nothing of a refused archive is kept.
 *
 * Writing: archive_stream() writes a pax (ustar where it fits) tar,
 * gzip-compressed, of exactly the listed files with their recorded modes,
 * opening each with fs_open_beneath() (no symlink followed, nothing
 * outside the folder): a member that is no longer a regular file is
 * skipped and logged. Memory stays constant whatever the sizes.
 *
 * Threading: no shared state; each call owns its libarchive handle.
 *
 * Named archive_io.h, not archive.h: api/ is on the include path, where
 * a file named archive.h would hide libarchive's <archive.h>.
 */
#ifndef OC_ARCHIVE_H
#define OC_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

/* Reads up to len bytes into buf: the count, 0 at the end, -1 on error. */
typedef ssize_t (*archive_in_fn)(void *arg, void *buf, size_t len);
/* Takes len bytes of output. Returns 0, or -1 to stop (client gone). */
typedef int (*archive_out_fn)(void *arg, const void *buf, size_t len);

struct archive_limits {
    long    max_files;       /* regular-file members */
    int64_t max_bytes;       /* their decompressed total */
    int64_t max_in;          /* compressed bytes read from in */
};

enum archive_rc {
    ARCHIVE_X_OK = 0,
    ARCHIVE_X_INVALID,       /* not a tar.gz, or a refused member: invalid_archive */
    ARCHIVE_X_TOO_MANY,      /* over max_files: too_many_files */
    ARCHIVE_X_TOO_LARGE,     /* decompressed over max_bytes: session_too_large */
    ARCHIVE_X_BODY_TOO_LARGE,/* compressed over max_in: body_too_large */
    ARCHIVE_X_READ_FAILED,   /* in failed (the client went away) */
    ARCHIVE_X_IO,            /* writing a file failed (server side) */
};

/* What was unpacked: files[0..n) (paths malloc'd, modes 0100644 or
 * 0100755), bytes in total. archive_files_free() frees it. */
struct archive_files {
    struct store_file *v;
    size_t             n, cap;
    int64_t            bytes;
};
void archive_files_free(struct archive_files *f);

/* Unpacks the archive read from in into the empty folder dirfd (files
 * 0600, or 0700 when the member had an execute bit). On refusal, detail
 * says why, naming the member. */
enum archive_rc archive_extract(archive_in_fn in, void *in_arg, int dirfd,
                                const struct archive_limits *lim,
                                struct archive_files *out, char *detail, size_t detail_len);

/* Streams a .tar.gz of files[0..n) below dirfd to out. log_ctx names the
 * session in log lines. Returns 0, or -1 when out or libarchive failed
 * (the response is then cut short). */
int archive_stream(int dirfd, const struct store_file *files, size_t n, archive_out_fn out,
                   void *out_arg, const char *log_ctx);

#endif
