/*
 * testfs.h - file helpers the unit tests that build folders share: paths
 * under a test folder, writing or reading a small file whole, asking
 * whether one exists.
 * A test that cannot write its own fixture stops (exit 2): it could not
 * tell anything anyway.
 */
#ifndef OC_TESTFS_H
#define OC_TESTFS_H

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* dir + "/" + rel, in a rotating set of 8 static buffers. */
static inline const char *tfs_path(const char *dir, const char *rel)
{
    static char bufs[8][PATH_MAX + 256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, rel);
    return b;
}

/* Writes n bytes of data as path (created with mode, or truncated). */
static inline void tfs_put(const char *path, const void *data, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || write(fd, data, n) != (ssize_t)n) {
        perror(path);
        exit(2);
    }
    close(fd);
}

/* The first 255 bytes of the file at path, or "" when it cannot be read
 * (one static buffer: copy it before the next call). */
static inline const char *tfs_read(const char *path)
{
    static char buf[256];
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return buf;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* 1 when path names anything, a dangling symlink included. */
static inline int tfs_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

#endif
