/*
 * test_changes.c - job_changes_compare() (worker/job_diff.c): each
 * output's change against the files the job started from, and the sorted
 * list of deleted paths.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "job.h"

#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222222222222222222222222222"

static void free_deleted(char **d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(d[i]);
    free(d);
}

static void test_mixed(void)
{
    /* Neither list is sorted: the comparison must not rely on order. */
    const struct store_file base[] = {
        { "z/gone.txt", 1, H1, 0100644 }, { "same.txt", 1, H1, 0100644 },
        { "edit.txt", 1, H1, 0100644 },   { "exec.sh", 1, H1, 0100644 },
        { "a-gone.txt", 1, H1, 0 },
    };
    const struct store_file out[] = {
        { "new.txt", 1, H1, 0100644 },  { "same.txt", 1, H1, 0 },
        { "edit.txt", 2, H2, 0100644 }, { "exec.sh", 1, H1, 0100755 },
    };
    const char *change[4] = { NULL };
    char **deleted = NULL;
    size_t nd = 0;
    job_changes_compare(base, 5, out, 4, change, &deleted, &nd);
    CHECK_STR(change[0], "added");
    CHECK_STR(change[1], "unchanged");      /* mode 0 reads as 0100644 */
    CHECK_STR(change[2], "modified");       /* content */
    CHECK_STR(change[3], "modified");       /* execute bit only */
    CHECK(nd == 2);
    if (nd == 2) {
        CHECK_STR(deleted[0], "a-gone.txt");
        CHECK_STR(deleted[1], "z/gone.txt");
    }
    free_deleted(deleted, nd);
}

static void test_empty_sides(void)
{
    const struct store_file one[] = { { "x", 1, H1, 0100644 } };
    const char *change[1] = { NULL };
    char **deleted = NULL;
    size_t nd = 7;
    job_changes_compare(NULL, 0, one, 1, change, &deleted, &nd);
    CHECK_STR(change[0], "added");
    CHECK(nd == 0 && deleted != NULL);
    free_deleted(deleted, nd);
    job_changes_compare(one, 1, NULL, 0, change, &deleted, &nd);
    CHECK(nd == 1 && strcmp(deleted[0], "x") == 0);
    free_deleted(deleted, nd);
    job_changes_compare(NULL, 0, NULL, 0, change, &deleted, &nd);
    CHECK(nd == 0);
    free_deleted(deleted, nd);
}

/* Bytewise order, as the API documents: "B" < "a" < "a/b" < "a0". */
static void test_bytewise_order(void)
{
    const struct store_file base[] = {
        { "a0", 1, H1, 0 }, { "a/b", 1, H1, 0 }, { "B", 1, H1, 0 }, { "a", 1, H1, 0 },
    };
    const char *change[1] = { NULL };
    char **deleted = NULL;
    size_t nd = 0;
    job_changes_compare(base, 4, NULL, 0, change, &deleted, &nd);
    CHECK(nd == 4);
    if (nd == 4) {
        CHECK_STR(deleted[0], "B");
        CHECK_STR(deleted[1], "a");
        CHECK_STR(deleted[2], "a/b");
        CHECK_STR(deleted[3], "a0");
    }
    free_deleted(deleted, nd);
}

int main(void)
{
    test_mixed();
    test_empty_sides();
    test_bytewise_order();
    return check_report();
}
