/*
 * bench_parse.c - cost of reading a POST /session body, against a bare
 * cJSON parse of the same bytes measured in the same run.
 *
 * The body is realistic and large: 200 files (the default MAX_FILES) of
 * source-like text, about 5 MiB of JSON with the escapes real code brings
 * (quotes, backslashes, tabs, newlines, some UTF-8), plus ttl_seconds and
 * env. Measured, each as the best of BENCH_ROUNDS interleaved rounds
 * (default 15; the median is printed too):
 *
 *   bare   cJSON_ParseWithLength + cJSON_Delete: the baseline
 *   parse  json_parse_body + cJSON_Delete: pre-scan (depth, \u0000, NUL)
 *          and the trailing-garbage check on top of the same parse
 *   full   json_parse_body + the walk of api/routes_session.c
 *          (session_validate: files, ttl_seconds, path_validate,
 *          path_list_check, env) + cJSON_Delete
 *
 * in CPU time of the thread (CLOCK_THREAD_CPUTIME_ID: on a shared machine
 * wall time mostly measures the other processes), in wall time, and, when
 * perf_event_open allows it, in user-space instructions retired. The
 * ratios use the best CPU time of each variant. Peak memory: each variant runs once in a forked child that
 * reports its getrusage() ru_maxrss growth, divided by the body size.
 *
 * Prints a table, then one line per ratio for scripts/bench.sh:
 *   RESULT <name> <value> <target>
 * No absolute timing is asserted. Exits 1 only if the benchmark itself
 * fails (the body is refused, out of memory).
 */
#include "config.h"
#include "jsonutil.h"
#include "path.h"
#include "session_req.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_FILES        200                   /* DEF_MAX_FILES */
#define BENCH_BODY_BYTES   (5L * 1024 * 1024)    /* about this much JSON */
#define BENCH_ROUNDS_MAX   1000

/* The route's limits at their defaults (common/config.c,
 * api/routes_session.c). */
#define LIM_MAX_FILES          200
#define LIM_MAX_SESSION_BYTES  (25L * 1024 * 1024)
#define LIM_MAX_TTL_S          (7L * 24 * 3600)
#define LIM_DEFAULT_TTL_S      (24L * 3600)

/* ---- The body ----------------------------------------------------------- */

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            fprintf(stderr, "bench_parse: out of memory\n");
            exit(1);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_str(struct buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* s as the inside of a JSON string. */
static void buf_escaped(struct buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            buf_put(b, esc, 2);
        } else if (c == '\n') {
            buf_put(b, "\\n", 2);
        } else if (c == '\t') {
            buf_put(b, "\\t", 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            buf_put(b, esc, 6);
        } else {
            buf_put(b, s, 1);
        }
    }
}

/* Lines of the kind source files are made of. */
static const char *const bench_lines[] = {
    "import os, sys\n",
    "from typing import Optional  # caf\xc3\xa9 \xe2\x80\x94 r\xc3\xa9sum\xc3\xa9\n",
    "\n",
    "def handle_request(req: dict, limit: int = 64) -> Optional[str]:\n",
    "    \"\"\"Returns the \"name\" field, or None.\"\"\"\n",
    "\tif req.get(\"name\") is None:\n",
    "\t\treturn None\n",
    "    path = os.path.join(\"C:\\\\Users\\\\dev\", req[\"name\"])\n",
    "    for i in range(limit):\n",
    "        print(f\"item {i}: {req!r}\\n\", file=sys.stderr)\n",
    "    return path  // TODO: escape \\\" properly\n",
    "}\n",
    "static int parse(const char *s, size_t n) { return s[n - 1] == '\\0'; }\n",
};

/* Builds the 200-file body; deterministic. The caller frees b->p. */
static void bench_body(struct buf *b)
{
    const size_t nlines = sizeof(bench_lines) / sizeof(bench_lines[0]);
    const size_t per_file = (size_t)(BENCH_BODY_BYTES - 4096) / BENCH_FILES - 64;
    uint32_t seed = 12345;
    char path[128];

    buf_str(b, "{\"files\":[");
    for (int f = 0; f < BENCH_FILES; f++) {
        if (f % 20 == 0)
            snprintf(path, sizeof(path), "README_%d.md", f / 20);
        else
            snprintf(path, sizeof(path), "src/pkg_%02d/sub/module_%03d.py", f % 13, f);
        buf_str(b, f ? ",{\"path\":\"" : "{\"path\":\"");
        buf_escaped(b, path);
        buf_str(b, "\",\"content\":\"");
        size_t start = b->len;
        while (b->len - start < per_file) {
            seed = seed * 1103515245u + 12345u;
            buf_escaped(b, bench_lines[(seed >> 16) % nlines]);
        }
        buf_str(b, "\"}");
    }
    buf_str(b, "],\"ttl_seconds\":3600,\"env\":{\"GITHUB_TOKEN\":\"ghp_0123456789abcdef\","
               "\"MY_SETTING\":\"on\"}}\n");
}

/* ---- The route's checks ------------------------------------------------ */

/* session_req_check(), what POST /session runs: 0 when req is a valid new
 * session, else the status the route would answer. */
static int session_walk(const cJSON *req)
{
    static const struct session_limits lim = {
        LIM_MAX_FILES, LIM_MAX_SESSION_BYTES, LIM_DEFAULT_TTL_S, LIM_MAX_TTL_S,
    };
    struct session_req out;
    char detail[256];
    return session_req_check(req, &lim, &out, detail, sizeof(detail));
}

/* ---- The variants ------------------------------------------------------- */

enum variant { V_BARE, V_PARSE, V_FULL, V_COUNT };
static const char *const variant_name[V_COUNT] = { "bare", "parse", "full" };

/* Runs one variant on the body, keeping the tree until *keep is given it
 * back (NULL: delete at once). Returns 0, or -1 if the body was refused. */
static int run_variant(enum variant v, const struct buf *b, cJSON **keep)
{
    cJSON *j;
    const char *why = NULL;
    if (v == V_BARE) {
        j = cJSON_ParseWithLength(b->p, b->len);
    } else {
        j = json_parse_body(b->p, b->len, &why);
        if (j != NULL && v == V_FULL && session_walk(j) != 0) {
            cJSON_Delete(j);
            j = NULL;
            why = "the session walk refused it";
        }
    }
    if (j == NULL) {
        fprintf(stderr, "bench_parse: %s refused the body: %s\n", variant_name[v],
                why ? why : "cJSON parse error");
        return -1;
    }
    if (keep != NULL)
        *keep = j;
    else
        cJSON_Delete(j);
    return 0;
}

/* ---- Measurement -------------------------------------------------------- */

static double now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A user-space instruction counter for this thread, or -1 (no PMU in a VM,
 * perf_event_paranoid, seccomp): then only times are reported. */
static int perf_open(const char **why)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.type = PERF_TYPE_HARDWARE;
    a.config = PERF_COUNT_HW_INSTRUCTIONS;
    a.disabled = 1;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    long fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    return (int)fd;
}

static long ru_maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Growth of peak RSS (bytes) while v runs once with its tree kept, in a
 * forked child so that each variant starts from the same heap. -1 on
 * failure. */
static long peak_growth(enum variant v, const struct buf *b)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        long before = ru_maxrss_kib();
        cJSON *tree = NULL;
        long growth = -1;
        if (run_variant(v, b, &tree) == 0)
            growth = (ru_maxrss_kib() - before) * 1024;
        cJSON_Delete(tree);
        ssize_t w = write(fds[1], &growth, sizeof(growth));
        _exit(w == (ssize_t)sizeof(growth) ? 0 : 1);
    }
    close(fds[1]);
    long growth = -1;
    if (read(fds[0], &growth, sizeof(growth)) != (ssize_t)sizeof(growth))
        growth = -1;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    return growth;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(void)
{
    int rounds = 15;
    const char *r = getenv("BENCH_ROUNDS");
    long rl;
    if (r != NULL && *r != '\0') {
        if (cfg_parse_long(r, 1, BENCH_ROUNDS_MAX, &rl) != 0) {
            fprintf(stderr, "bench_parse: BENCH_ROUNDS must be 1..%d\n", BENCH_ROUNDS_MAX);
            return 2;
        }
        rounds = (int)rl;
    }

    struct buf body = { NULL, 0, 0 };
    bench_body(&body);

    /* Memory first, from a heap that holds nothing but the body. */
    long mem[V_COUNT];
    for (int v = 0; v < V_COUNT; v++)
        mem[v] = peak_growth((enum variant)v, &body);

    const char *perf_why = NULL;
    int perf = perf_open(&perf_why);

    /* Untimed runs: page faults of the first heap growth and cold caches
     * are not what is measured. */
    for (int w = 0; w < 3; w++)
        for (int v = 0; v < V_COUNT; v++)
            if (run_variant((enum variant)v, &body, NULL) != 0)
                return 1;

    static double ns[V_COUNT][BENCH_ROUNDS_MAX], wall[V_COUNT][BENCH_ROUNDS_MAX];
    static double ins[V_COUNT][BENCH_ROUNDS_MAX];
    for (int i = 0; i < rounds; i++) {
        for (int v = 0; v < V_COUNT; v++) {
            uint64_t count = 0;
            if (perf >= 0) {
                ioctl(perf, PERF_EVENT_IOC_RESET, 0);
                ioctl(perf, PERF_EVENT_IOC_ENABLE, 0);
            }
            double w0 = now_ns(CLOCK_MONOTONIC);
            double t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
            int rc = run_variant((enum variant)v, &body, NULL);
            double t1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
            double w1 = now_ns(CLOCK_MONOTONIC);
            if (perf >= 0) {
                ioctl(perf, PERF_EVENT_IOC_DISABLE, 0);
                if (read(perf, &count, sizeof(count)) != (ssize_t)sizeof(count))
                    count = 0;
            }
            if (rc != 0)
                return 1;
            ns[v][i] = t1 - t0;
            wall[v][i] = w1 - w0;
            ins[v][i] = (double)count;
        }
    }

    double best[V_COUNT], med[V_COUNT], wall_med[V_COUNT], ins_med[V_COUNT];
    for (int v = 0; v < V_COUNT; v++) {
        med[v] = median(ns[v], rounds);     /* sorts: [0] is then the best */
        best[v] = ns[v][0];
        wall_med[v] = median(wall[v], rounds);
        ins_med[v] = median(ins[v], rounds);
    }

    double mib = (double)body.len / (1024.0 * 1024.0);
    printf("bench_parse: POST /session body of %d files, %zu bytes (%.2f MiB), %d rounds\n",
           BENCH_FILES, body.len, mib, rounds);
    printf("  %-6s %12s %14s %15s %9s %14s %12s\n", "", "best cpu ms", "median cpu ms",
           "median wall ms", "MiB/s", "instructions", "peak RSS +");
    for (int v = 0; v < V_COUNT; v++) {
        char insbuf[32], membuf[32];
        if (perf >= 0)
            snprintf(insbuf, sizeof(insbuf), "%.0f", ins_med[v]);
        else
            snprintf(insbuf, sizeof(insbuf), "n/a");
        if (mem[v] >= 0)
            snprintf(membuf, sizeof(membuf), "%.2f MiB", (double)mem[v] / (1024.0 * 1024.0));
        else
            snprintf(membuf, sizeof(membuf), "n/a");
        printf("  %-6s %12.2f %14.2f %15.2f %9.0f %14s %12s\n", variant_name[v], best[v] / 1e6,
               med[v] / 1e6, wall_med[v] / 1e6, mib / (best[v] / 1e9), insbuf, membuf);
    }
    if (perf < 0)
        printf("  (instructions: perf_event_open failed: %s)\n", perf_why);

    /* Ratios: our cost over the bare parse's. */
    printf("RESULT parse.time_ratio %.3f <=2.0\n", best[V_FULL] / best[V_BARE]);
    printf("RESULT parse.time_ratio_median %.3f info\n", med[V_FULL] / med[V_BARE]);
    printf("RESULT parse.time_ratio_no_walk %.3f info\n", best[V_PARSE] / best[V_BARE]);
    if (perf >= 0 && ins_med[V_BARE] > 0)
        printf("RESULT parse.instr_ratio %.3f <=2.0\n", ins_med[V_FULL] / ins_med[V_BARE]);
    if (mem[V_FULL] >= 0)
        printf("RESULT parse.peak_mem_per_body %.3f <=1.5\n", (double)mem[V_FULL] / (double)body.len);
    if (mem[V_FULL] >= 0 && mem[V_BARE] > 0)
        printf("RESULT parse.peak_mem_ratio %.3f <=1.1\n", (double)mem[V_FULL] / (double)mem[V_BARE]);

    if (perf >= 0)
        close(perf);
    free(body.p);
    return 0;
}
