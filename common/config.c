/*
 * config.c - environment configuration with validation (see config.h).
 *
 * Every variable is declared once, in cfg_vars[] below: its name, type,
 * default, bounds, the programs that read it, its field in struct cfg, the
 * reason for its limits (as a comment) and its one-line README text.
 * Loading, freeing, the reserved names of per-session env and README's
 * configuration tables (cfg_write_markdown) are all driven by that table.
 */
#include "config.h"
#include "log.h"
#include "webhook_sign.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Provider keys the agent receives when the worker has them. */
static const char *const cfg_default_agent_env[] = {
    "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY",
    "OPENROUTER_API_KEY",
};

/* ---- Helpers ------------------------------------------------------------ */

static int cfg_fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -1;
}

int cfg_parse_long(const char *s, long min, long max, long *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p) && !(p == s && *p == '-'))
            return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static const char *cfg_env(const char *name)
{
    const char *v = getenv(name);
    return (v != NULL && *v != '\0') ? v : NULL;
}

/* A default never escapes its bounds, nor a lowered maximum
 * (DEFAULT_JOB_TIMEOUT_S under MAX_JOB_TIMEOUT_S=300, say). */
static long cfg_clamp(long v, long min, long max)
{
    return v < min ? min : v > max ? max : v;
}

/* Makes a relative path absolute against the current directory (the
 * agent sandbox binds folders by absolute path). */
static char *cfg_absolute(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return NULL;
    size_t n = strlen(cwd) + 1 + strlen(path) + 1;
    char *abs = malloc(n);
    if (abs != NULL)
        snprintf(abs, n, "%s/%s", cwd, path);
    return abs;
}

static char *cfg_read_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n > max) {
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* A variable name the agent may receive: [A-Za-z_][A-Za-z0-9_]*. */
static int cfg_valid_env_name(const char *s, size_t n)
{
    if (n == 0 || n > 128 || isdigit((unsigned char)s[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return 0;
    return 1;
}

int cfg_env_name_valid(const char *name)
{
    return cfg_valid_env_name(name, strlen(name));
}

int cfg_model_valid(const char *m)
{
    const char *slash = strchr(m, '/');
    if (slash == NULL || slash == m || slash[1] == '\0' || strlen(m) > 200)
        return 0;
    for (const char *p = m; *p; p++)
        if (!isgraph((unsigned char)*p))
            return 0;
    return 1;
}

/* ---- .env file ---------------------------------------------------------- */

int cfg_load_env_file(const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? 0 : cfg_fail(err, err_len, "could not open \"%s\": %s",
                                             path, strerror(errno));
    char line[8192];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        if (strncmp(p, "export ", 7) == 0)
            p += 7;
        char *eq = strchr(p, '=');
        if (eq == NULL || !cfg_valid_env_name(p, (size_t)(eq - p))) {
            rc = cfg_fail(err, err_len, "%s:%d: expected NAME=value", path, lineno);
            break;
        }
        *eq = '\0';
        char *val = eq + 1;
        size_t vn = strlen(val);
        if (vn >= 2 && (val[0] == '"' || val[0] == '\'') && val[vn - 1] == val[0]) {
            val[vn - 1] = '\0';
            val++;
        }
        if (getenv(p) == NULL && setenv(p, val, 0) != 0) {
            rc = cfg_fail(err, err_len, "%s:%d: %s", path, lineno, strerror(errno));
            break;
        }
    }
    fclose(f);
    return rc;
}

/* ---- The table's shape -------------------------------------------------- */

enum cfg_type {
    CFG_INT,      /* long: a decimal integer in [min, max] */
    CFG_STR,      /* char *: the text as given */
    CFG_PATH,     /* char *: a file or folder path */
    CFG_SECRET,   /* char *: a credential; AGENT_ENV may not name it */
    CFG_ENUM,     /* int-sized enum: the index of the value in choices */
    CFG_LIST,     /* comma-separated names, parsed by the row's hook */
};

/* README table a row is listed in (its program, or Shared). */
enum cfg_section { CFG_SEC_SHARED, CFG_SEC_API, CFG_SEC_WORKER, CFG_SEC_JANITOR };

static const char *const cfg_section_title[] = {
    [CFG_SEC_SHARED] = "Shared",
    [CFG_SEC_API] = "API (`opencode-api`)",
    [CFG_SEC_WORKER] = "Worker (`opencode-worker`)",
    [CFG_SEC_JANITOR] = "Janitor (`opencode-janitor`)",
};

/* Who reads a row: every program (admin commands included), or the three
 * services that handle jobs. */
#define CFG_ALL  (CFG_ROLE_API | CFG_ROLE_WORKER | CFG_ROLE_JANITOR | CFG_ROLE_ADMIN)
#define CFG_JOBS (CFG_ROLE_API | CFG_ROLE_WORKER | CFG_ROLE_JANITOR)

/* Row flags. */
#define CFG_F_SECRET 1u   /* AGENT_ENV may not pass it (CFG_SECRET rows are too) */

/* The row's field: offset + 1, so that a row without one (0, the default of
 * a designated initializer) is never mistaken for the first field. */
#define CFG_FIELD(member) (offsetof(struct cfg, member) + 1)

struct cfg_var;

/* Runs after the generic step has stored the row's field (if any). val is
 * the variable's value, else the row's textual default, else NULL. */
typedef int (*cfg_hook)(struct cfg *c, const struct cfg_var *v, const char *val,
                        char *err, size_t err_len);

struct cfg_var {
    const char *name;
    enum cfg_type type;
    unsigned roles;              /* mask of enum cfg_role that read it */
    enum cfg_section section;    /* README table */
    size_t field;                /* CFG_FIELD(member), or 0: the hook stores */
    const char *def;             /* default as text, or NULL */
    const char *note;            /* README: "(note)" after def; without def,
                                    the default cell itself ("(none)" if NULL) */
    long min, max;               /* CFG_INT bounds */
    const char *cap;             /* CFG_INT: also at most this variable */
    const char *const *choices;  /* CFG_ENUM: values in enum order, NULL-ended */
    cfg_hook hook;               /* checks or code the row needs, or NULL */
    unsigned flags;              /* CFG_F_* */
    const char *doc;             /* README "meaning" */
};

_Static_assert(sizeof(enum cfg_sandbox) == sizeof(int), "CFG_ENUM fields are int-sized");

static void *cfg_at(struct cfg *c, const struct cfg_var *v)
{
    return (char *)c + (v->field - 1);
}

/* ---- Rows' hooks: what a row needs beyond parsing ----------------------- */

static int cfg_is_service_secret(const char *name, size_t n);

/* ENV_FILE: the first row, so the file fills in the names the environment
 * leaves unset before any other row is read. */
static int cfg_hook_env_file(struct cfg *c, const struct cfg_var *v, const char *val,
                             char *err, size_t err_len)
{
    (void)c;
    (void)v;
    return cfg_load_env_file(val, err, err_len);
}

static int cfg_hook_log_level(struct cfg *c, const struct cfg_var *v, const char *val,
                              char *err, size_t err_len)
{
    c->log_level = log_level_parse(val);
    if (c->log_level < 0)
        return cfg_fail(err, err_len, "%s must be debug, info, warn or error", v->name);
    return 0;
}

static int cfg_hook_database_url(struct cfg *c, const struct cfg_var *v, const char *val,
                                 char *err, size_t err_len)
{
    (void)c;
    if (val == NULL)
        return cfg_fail(err, err_len, "%s is not set (a libpq connection string, "
                                      "e.g. postgresql://user:pass@127.0.0.1:5432/opencode)",
                        v->name);
    return 0;
}

static int cfg_hook_amqp_url(struct cfg *c, const struct cfg_var *v, const char *val,
                             char *err, size_t err_len)
{
    (void)c;
    if (strncmp(val, "amqp://", 7) != 0)
        return cfg_fail(err, err_len, "%s must start with amqp://", v->name);
    return 0;
}

static int cfg_hook_data_dir(struct cfg *c, const struct cfg_var *v, const char *val,
                             char *err, size_t err_len)
{
    (void)val;
    char *abs = cfg_absolute(c->data_dir);
    free(c->data_dir);
    c->data_dir = abs;
    if (abs == NULL)
        return cfg_fail(err, err_len, "%s could not be made absolute", v->name);
    return 0;
}

static int cfg_hook_api_key(struct cfg *c, const struct cfg_var *v, const char *val,
                            char *err, size_t err_len)
{
    (void)c;
    if (val == NULL)
        return cfg_fail(err, err_len, "%s is not set: refusing to serve without a key "
                                      "(generate one with: openssl rand -hex 32)",
                        v->name);
    if (strlen(val) < 16)
        return cfg_fail(err, err_len, "%s is too short (at least 16 characters)", v->name);
    return 0;
}

static int cfg_hook_webhook_secret(struct cfg *c, const struct cfg_var *v, const char *val,
                                   char *err, size_t err_len)
{
    (void)c;
    if (val != NULL && !webhook_secret_valid(val))
        return cfg_fail(err, err_len, "%s must be whsec_ followed by base64 of 16 to 64 "
                                      "bytes (make one with: echo whsec_$(openssl rand "
                                      "-base64 32))", v->name);
    return 0;
}

/* MAX_BODY_BYTES defaults to 2 x MAX_SESSION_BYTES + 1 MiB (see its row). */
static int cfg_hook_max_body(struct cfg *c, const struct cfg_var *v, const char *val,
                             char *err, size_t err_len)
{
    (void)err;
    (void)err_len;
    if (val == NULL)
        c->max_body_bytes = cfg_clamp(2 * c->max_session_bytes + 1024L * 1024, v->min, v->max);
    return 0;
}

static int cfg_hook_default_model(struct cfg *c, const struct cfg_var *v, const char *val,
                                  char *err, size_t err_len)
{
    (void)val;
    if (!cfg_model_valid(c->default_model))
        return cfg_fail(err, err_len, "%s must look like provider/model (got \"%s\")",
                        v->name, c->default_model);
    return 0;
}

/* WORKER_ID defaults to host:pid. */
static int cfg_hook_worker_id(struct cfg *c, const struct cfg_var *v, const char *val,
                              char *err, size_t err_len)
{
    if (val != NULL)
        return 0;
    char host[256] = "worker";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    char id[300];
    snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
    c->worker_id = strdup(id);
    if (c->worker_id == NULL)
        return cfg_fail(err, err_len, "out of memory reading %s", v->name);
    return 0;
}

/* realpath() both checks that it exists and gives the sandbox an absolute
 * path to bind. */
static int cfg_hook_opencode_bin(struct cfg *c, const struct cfg_var *v, const char *val,
                                 char *err, size_t err_len)
{
    (void)val;
    char *bin = c->opencode_bin;
    c->opencode_bin = realpath(bin, NULL);
    struct stat st;
    int ok = c->opencode_bin != NULL && stat(c->opencode_bin, &st) == 0 &&
             S_ISREG(st.st_mode) && access(c->opencode_bin, X_OK) == 0;
    if (!ok)
        cfg_fail(err, err_len, "%s \"%s\" is not an executable file", v->name, bin);
    free(bin);
    return ok ? 0 : -1;
}

static int cfg_hook_agent_config(struct cfg *c, const struct cfg_var *v, const char *val,
                                 char *err, size_t err_len)
{
    if (val == NULL)
        return 0;
    c->agent_config_json = cfg_read_file(val, 1024 * 1024);
    if (c->agent_config_json == NULL)
        return cfg_fail(err, err_len, "%s \"%s\" could not be read: %s", v->name, val,
                        strerror(errno));
    cJSON *j = cJSON_Parse(c->agent_config_json);
    int ok = cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok)
        return cfg_fail(err, err_len, "%s \"%s\" is not a JSON object", v->name, val);
    return 0;
}

/* The catalogue is kept whole (agent_models_json); a models.dev
 * api.json of every provider is a few MB, one of a few providers ~50 KB. */
static int cfg_hook_agent_models(struct cfg *c, const struct cfg_var *v, const char *val,
                                 char *err, size_t err_len)
{
    if (val == NULL)
        return 0;
    c->agent_models_json = cfg_read_file(val, 16 * 1024 * 1024);
    if (c->agent_models_json == NULL)
        return cfg_fail(err, err_len, "%s \"%s\" could not be read: %s", v->name, val,
                        strerror(errno));
    cJSON *j = cJSON_Parse(c->agent_models_json);
    int ok = cJSON_IsObject(j) && j->child != NULL;
    cJSON_Delete(j);
    if (!ok)
        return cfg_fail(err, err_len, "%s \"%s\" is not a JSON object of providers",
                        v->name, val);
    return 0;
}

static int cfg_add_agent_env(struct cfg *c, const char *name, size_t n,
                             char *err, size_t err_len)
{
    for (size_t i = 0; i < c->agent_env_count; i++)
        if (strlen(c->agent_env[i]) == n && memcmp(c->agent_env[i], name, n) == 0)
            return 0;
    if (c->agent_env_count == CFG_MAX_AGENT_ENV)
        return cfg_fail(err, err_len, "AGENT_ENV names more than %d variables",
                        CFG_MAX_AGENT_ENV);
    c->agent_env[c->agent_env_count] = strndup(name, n);
    if (c->agent_env[c->agent_env_count] == NULL)
        return cfg_fail(err, err_len, "out of memory reading AGENT_ENV");
    c->agent_env_count++;
    return 0;
}

/* AGENT_ENV: the default provider keys, then the names listed. */
static int cfg_hook_agent_env(struct cfg *c, const struct cfg_var *v, const char *val,
                              char *err, size_t err_len)
{
    (void)v;
    for (size_t i = 0; i < sizeof(cfg_default_agent_env) / sizeof(cfg_default_agent_env[0]); i++)
        if (cfg_add_agent_env(c, cfg_default_agent_env[i],
                              strlen(cfg_default_agent_env[i]), err, err_len) != 0)
            return -1;

    while (val != NULL && *val != '\0') {
        const char *end = strchr(val, ',');
        size_t n = end ? (size_t)(end - val) : strlen(val);
        while (n > 0 && isspace((unsigned char)*val)) {
            val++;
            n--;
        }
        while (n > 0 && isspace((unsigned char)val[n - 1]))
            n--;
        if (n > 0) {
            if (!cfg_valid_env_name(val, n))
                return cfg_fail(err, err_len, "AGENT_ENV has an invalid variable name \"%.*s\"",
                                (int)n, val);
            if (cfg_is_service_secret(val, n))
                return cfg_fail(err, err_len,
                                "AGENT_ENV must not pass the service's own secret %.*s to the agent",
                                (int)n, val);
            if (cfg_add_agent_env(c, val, n, err, err_len) != 0)
                return -1;
        }
        val = end ? end + 1 : NULL;
    }
    return 0;
}

/* Runs after AGENT_SANDBOX's row, which comes first in the table. */
static int cfg_hook_bwrap_bin(struct cfg *c, const struct cfg_var *v, const char *val,
                              char *err, size_t err_len)
{
    (void)val;
    if (c->sandbox == CFG_SANDBOX_BWRAP && access(c->bwrap_bin, X_OK) != 0)
        return cfg_fail(err, err_len,
                        "AGENT_SANDBOX is bwrap but %s \"%s\" is not executable "
                        "(install bubblewrap, or set AGENT_SANDBOX=none to run the agent "
                        "unsandboxed)", v->name, c->bwrap_bin);
    return 0;
}

/* AGENT_UID_RANGE: "FIRST-LAST", unprivileged, not root's. */
static int cfg_hook_uid_range(struct cfg *c, const struct cfg_var *v, const char *val,
                              char *err, size_t err_len)
{
    const char *dash = val ? strchr(val, '-') : NULL;
    char first[32];
    if (dash == NULL || (size_t)(dash - val) >= sizeof(first))
        return cfg_fail(err, err_len, "%s must look like FIRST-LAST (got \"%s\")", v->name,
                        val ? val : "");
    memcpy(first, val, (size_t)(dash - val));
    first[dash - val] = '\0';
    if (cfg_parse_long(first, 1000, 4294967294L, &c->agent_uid_min) != 0 ||
        cfg_parse_long(dash + 1, 1000, 4294967294L, &c->agent_uid_max) != 0 ||
        c->agent_uid_max < c->agent_uid_min)
        return cfg_fail(err, err_len, "%s must be FIRST-LAST with 1000 <= FIRST <= LAST "
                        "(got \"%s\")", v->name, val);
    return 0;
}

/* ---- The table ------------------------------------------------------------
 *
 * One row per variable, read in this order (ENV_FILE first; a row capped by
 * another, or whose hook looks at another, comes after it); README lists
 * them in this order under their section. Adding a variable: one row here
 * (and its field in struct cfg); then regenerate README's tables (see
 * cfg_write_markdown() in config.h).
 */

static const char *const cfg_log_format_names[] = {
    [CFG_LOG_TEXT] = "text", [CFG_LOG_JSON] = "json", NULL,
};

static const char *const cfg_sandbox_names[] = {
    [CFG_SANDBOX_BWRAP] = "bwrap", [CFG_SANDBOX_NONE] = "none", NULL,
};

static const char *const cfg_egress_names[] = {
    [CFG_EGRESS_NONE] = "none", [CFG_EGRESS_OPEN] = "open",
    [CFG_EGRESS_ALLOWLIST] = "allowlist", NULL,
};

static const struct cfg_var cfg_vars[] = {
    /* ---- shared ---- */
    { .name = "ENV_FILE", .type = CFG_PATH, .roles = CFG_ALL, .section = CFG_SEC_SHARED,
      .def = ".env", .hook = cfg_hook_env_file,
      .doc = "optional file of `NAME=value` lines, read first" },
    { .name = "LOG_LEVEL", .type = CFG_ENUM, .roles = CFG_ALL, .section = CFG_SEC_SHARED,
      .def = "info", .hook = cfg_hook_log_level,
      .doc = "`debug`, `info`, `warn` or `error`" },
    /* Its own address: never the public API port. */
    { .name = "METRICS_LISTEN", .type = CFG_STR, .roles = CFG_ALL & ~CFG_ROLE_ADMIN,
      .section = CFG_SEC_SHARED, .field = CFG_FIELD(metrics_listen),
      .doc = "address (`host:port`) where the program serves Prometheus metrics at "
             "`/metrics`; unset: none. Give each program on a host its own port" },
    { .name = "LOG_FORMAT", .type = CFG_ENUM, .roles = CFG_ALL, .section = CFG_SEC_SHARED,
      .field = CFG_FIELD(log_format), .def = "text", .choices = cfg_log_format_names,
      .doc = "`text` (`time level program event key=value...`) or `json` (one object a "
             "line)" },
    { .name = "DATABASE_URL", .type = CFG_SECRET, .roles = CFG_ALL,
      .section = CFG_SEC_SHARED, .field = CFG_FIELD(database_url), .note = "(required)",
      .hook = cfg_hook_database_url,
      .doc = "libpq connection string, e.g. `postgresql://user:pass@host:5432/opencode`" },
    { .name = "AMQP_URL", .type = CFG_SECRET, .roles = CFG_ALL, .section = CFG_SEC_SHARED,
      .field = CFG_FIELD(amqp_url), .def = "amqp://guest:guest@127.0.0.1:5672/",
      .hook = cfg_hook_amqp_url,
      .doc = "RabbitMQ, `amqp://user:pass@host:port/vhost` (`%2f` for `/`)" },
    { .name = "AMQP_QUEUE", .type = CFG_STR, .roles = CFG_ALL, .section = CFG_SEC_SHARED,
      .field = CFG_FIELD(amqp_queue), .def = "opencode.jobs",
      .doc = "durable queue carrying ready job ids" },
    { .name = "DATA_DIR", .type = CFG_PATH, .roles = CFG_ALL, .section = CFG_SEC_SHARED,
      .field = CFG_FIELD(data_dir), .def = "var/data", .hook = cfg_hook_data_dir,
      .doc = "folder holding `sessions/`; shared by api and workers (NFS across hosts)" },
    /* A lease is renewed every third of its length, so a worker must miss
     * two renewals in a row before the janitor takes its job back. */
    { .name = "JOB_LEASE_S", .type = CFG_INT, .roles = CFG_JOBS, .section = CFG_SEC_SHARED,
      .field = CFG_FIELD(job_lease_s), .def = "30", .min = 3, .max = 3600,
      .doc = "a running job's lease; renewed every third of it" },
    { .name = "JOB_MAX_ATTEMPTS", .type = CFG_INT, .roles = CFG_JOBS,
      .section = CFG_SEC_SHARED, .field = CFG_FIELD(job_max_attempts), .def = "3",
      .min = 1, .max = 100,
      .doc = "runs of a job whose worker died before it is failed" },

    /* ---- api (the limits are checked by every program) ---- */
    { .name = "API_KEY", .type = CFG_SECRET, .roles = CFG_ROLE_API, .section = CFG_SEC_API,
      .field = CFG_FIELD(api_key), .note = "(required, ≥ 16 chars)",
      .hook = cfg_hook_api_key,
      .doc = "bootstrap key; more keys with `opencode-api keys create`" },
    { .name = "API_LISTEN", .type = CFG_STR, .roles = CFG_ROLE_API, .section = CFG_SEC_API,
      .field = CFG_FIELD(api_listen), .def = "127.0.0.1:8000",
      .doc = "CivetWeb `listening_ports` (e.g. `0.0.0.0:8000`)" },
    /* CivetWeb serves one connection per thread. */
    { .name = "API_THREADS", .type = CFG_INT, .roles = CFG_ROLE_API, .section = CFG_SEC_API,
      .field = CFG_FIELD(api_threads), .def = "1024", .min = 2, .max = 4096,
      .doc = "connections served at once: CivetWeb gives each open connection a thread "
             "(about 30 KiB resident, 1 MiB of stack reserved), so idle or slow clients "
             "hold threads until `API_REQUEST_TIMEOUT_MS`" },
    /* A request holds a connection only while it runs a query, so a few
     * serve many threads; each one is a backend process on the server. */
    { .name = "API_DB_POOL", .type = CFG_INT, .roles = CFG_ROLE_API, .section = CFG_SEC_API,
      .field = CFG_FIELD(api_db_pool), .def = "8", .min = 1, .max = 1024,
      .doc = "PostgreSQL connections the api's request threads share; a request waits "
             "for one only while it runs a query" },
    /* A client that sends its request (headers and body) this slowly is cut
     * off, so a thread it holds comes back. */
    { .name = "API_REQUEST_TIMEOUT_MS", .type = CFG_INT, .roles = CFG_ROLE_API,
      .section = CFG_SEC_API, .field = CFG_FIELD(api_request_timeout_ms), .def = "10000",
      .min = 100, .max = 600000,
      .doc = "how long a client may take to send its request head, and each read of its "
             "body (the whole body: about twice this)" },
    /* Status reads of ended jobs skip their check query while the cache
     * is this fresh (api/cache.h); 0 checks every hit with a query. */
    { .name = "API_CACHE_STALE_MS", .type = CFG_INT, .roles = CFG_ROLE_API,
      .section = CFG_SEC_API, .field = CFG_FIELD(api_cache_stale_ms), .def = "500",
      .min = 0, .max = 60000,
      .doc = "how long an api process may still answer `GET /job/status` of a job from "
             "its cache after the janitor (or an operator) deleted or pruned the job; 0: "
             "every cached answer is checked with a query" },
    /* Event streams and long-polls hold a server thread each while they
     * wait (no database connection); the rest stays for other requests. */
    { .name = "API_MAX_STREAMS", .type = CFG_INT, .roles = CFG_ROLE_API,
      .section = CFG_SEC_API, .field = CFG_FIELD(api_max_streams), .def = "512",
      .min = 0, .max = 4096,
      .doc = "event streams and long-polls one api process holds open at once "
             "(429 `too_many_streams` beyond; at most `API_THREADS` − 32, so other "
             "requests keep threads of their own)" },
    { .name = "API_MAX_STREAMS_PER_KEY", .type = CFG_INT, .roles = CFG_ROLE_API,
      .section = CFG_SEC_API, .field = CFG_FIELD(api_max_streams_per_key), .def = "100",
      .min = 1, .max = 4096,
      .doc = "event streams and long-polls one key holds open at once on one api process "
             "(429 `too_many_streams` beyond)" },
    { .name = "API_SSE_KEEPALIVE_MS", .type = CFG_INT, .roles = CFG_ROLE_API,
      .section = CFG_SEC_API, .field = CFG_FIELD(api_sse_keepalive_ms), .def = "15000",
      .min = 50, .max = 600000,
      .doc = "how often an idle `GET /job/events` stream gets a keep-alive comment" },
    /* The seed allowed every origin (FastAPI's CORSMiddleware). */
    { .name = "CORS_ALLOW_ORIGINS", .type = CFG_STR, .roles = CFG_ROLE_API,
      .section = CFG_SEC_API, .field = CFG_FIELD(cors_allow_origins), .def = "*",
      .doc = "origins browsers may call the API from: `*`, a comma-separated list, or "
             "`none`" },
    /* Per-key quotas: the defaults for keys whose api_keys row sets none. */
    { .name = "KEY_MAX_ACTIVE_SESSIONS", .type = CFG_INT, .roles = CFG_ROLE_API,
      .section = CFG_SEC_API, .field = CFG_FIELD(key_max_active_sessions), .def = "1000",
      .min = 1, .max = 100000000,
      .doc = "active sessions one key may hold (429 beyond)" },
    { .name = "KEY_MAX_QUEUED_JOBS", .type = CFG_INT, .roles = CFG_ROLE_API,
      .section = CFG_SEC_API, .field = CFG_FIELD(key_max_queued_jobs), .def = "1000",
      .min = 1, .max = 100000000,
      .doc = "queued and running jobs one key may have (429 beyond)" },
    { .name = "KEY_MAX_STORED_MB", .type = CFG_INT, .roles = CFG_ROLE_API,
      .section = CFG_SEC_API, .field = CFG_FIELD(key_max_stored_mb), .def = "10240",
      .min = 1, .max = 1L << 30,
      .doc = "MiB of input files one key's active sessions may hold (429 beyond)" },
    /* A client retries within minutes or hours; a day covers the issue's
     * window while keeping the table small (the janitor deletes older rows). */
    { .name = "IDEMPOTENCY_TTL_S", .type = CFG_INT, .roles = CFG_ROLE_API | CFG_ROLE_JANITOR,
      .section = CFG_SEC_API, .field = CFG_FIELD(idempotency_ttl_s), .def = "86400",
      .note = "1 day", .min = 1, .max = 30L * 24 * 3600,
      .doc = "how long an `Idempotency-Key` answer is kept and replayed" },
    /* The seed service's limits: 200 files and 25 MB per session. */
    { .name = "MAX_FILES", .type = CFG_INT, .roles = CFG_ALL, .section = CFG_SEC_API,
      .field = CFG_FIELD(max_files), .def = "200", .min = 1, .max = 100000,
      .doc = "files per session" },
    { .name = "MAX_SESSION_BYTES", .type = CFG_INT, .roles = CFG_ALL,
      .section = CFG_SEC_API, .field = CFG_FIELD(max_session_bytes), .def = "26214400",
      .note = "25 MiB", .min = 1, .max = 1L << 40,
      .doc = "bytes of file content per session" },
    /* JSON escaping can grow content (\n, \", \uXXXX); two times the session
     * size plus room for paths and framing covers ordinary sources while
     * still refusing a runaway upload from its Content-Length alone. */
    { .name = "MAX_BODY_BYTES", .type = CFG_INT, .roles = CFG_ALL, .section = CFG_SEC_API,
      .field = CFG_FIELD(max_body_bytes), .note = "2 × `MAX_SESSION_BYTES` + 1 MiB",
      .min = 1024, .max = 1L << 41, .hook = cfg_hook_max_body,
      .doc = "request body size, refused from `Content-Length` before reading" },
    /* A prompt is instructions, not data: 256 KiB is generous. */
    { .name = "MAX_PROMPT_BYTES", .type = CFG_INT, .roles = CFG_ALL, .section = CFG_SEC_API,
      .field = CFG_FIELD(max_prompt_bytes), .def = "262144", .min = 1, .max = 16L << 20,
      .doc = "prompt size" },
    /* A session may live a week at most: it holds disk space until it ends. */
    { .name = "MAX_TTL_S", .type = CFG_INT, .roles = CFG_ALL, .section = CFG_SEC_API,
      .field = CFG_FIELD(max_ttl_s), .def = "604800", .note = "7 days", .min = 1,
      .max = 10L * 365 * 24 * 3600,
      .doc = "largest `ttl_seconds`" },
    { .name = "DEFAULT_TTL_S", .type = CFG_INT, .roles = CFG_ALL, .section = CFG_SEC_API,
      .field = CFG_FIELD(default_ttl_s), .def = "3600", .min = 1, .max = LONG_MAX,
      .cap = "MAX_TTL_S",
      .doc = "session lifetime when `ttl_seconds` is omitted" },
    { .name = "MAX_JOB_TIMEOUT_S", .type = CFG_INT, .roles = CFG_ALL,
      .section = CFG_SEC_API, .field = CFG_FIELD(max_job_timeout_s), .def = "1800",
      .min = 1, .max = 24L * 3600,
      .doc = "largest `timeout_s`" },
    { .name = "DEFAULT_JOB_TIMEOUT_S", .type = CFG_INT, .roles = CFG_ALL,
      .section = CFG_SEC_API, .field = CFG_FIELD(default_job_timeout_s), .def = "600",
      .min = 1, .max = LONG_MAX, .cap = "MAX_JOB_TIMEOUT_S",
      .doc = "job timeout when `timeout_s` is omitted" },
    { .name = "DEFAULT_MODEL", .type = CFG_STR, .roles = CFG_ALL, .section = CFG_SEC_API,
      .field = CFG_FIELD(default_model), .def = "anthropic/claude-3-5-sonnet-latest",
      .hook = cfg_hook_default_model,
      .doc = "model when a job names none" },

    /* ---- worker ---- */
    { .name = "WORKER_CONCURRENCY", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(worker_concurrency), .def = "2",
      .min = 1, .max = 64,
      .doc = "jobs one worker process runs at once" },
    { .name = "WORKER_ID", .type = CFG_STR, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(worker_id), .note = "`host:pid`",
      .hook = cfg_hook_worker_id,
      .doc = "name recorded in `jobs.worker_id`" },
    { .name = "WORKER_GRACE_S", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(worker_grace_s), .def = "30",
      .min = 0, .max = 24L * 3600,
      .doc = "on SIGTERM, how long running jobs may finish before they are handed back" },
    { .name = "OPENCODE_BIN", .type = CFG_PATH, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(opencode_bin),
      .def = "node_modules/.bin/opencode", .hook = cfg_hook_opencode_bin,
      .doc = "the opencode executable" },
    /* Its contents are kept (agent_config_json), not its path. The file may
     * hold provider keys: AGENT_ENV may not pass its name. */
    { .name = "AGENT_CONFIG_FILE", .type = CFG_PATH, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .hook = cfg_hook_agent_config, .flags = CFG_F_SECRET,
      .doc = "opencode configuration JSON (providers, models) given to the agent" },
    /* opencode builds its built-in catalogue of every provider on each
     * start: about a third of its start-up CPU. */
    { .name = "AGENT_MODELS_FILE", .type = CFG_PATH, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .hook = cfg_hook_agent_models,
      .doc = "model catalogue (models.dev `api.json` format) given to the agent instead of "
             "opencode's built-in one of every provider; list the providers "
             "`AGENT_CONFIG_FILE` uses (about 3 of the 8 CPU seconds an agent takes to "
             "start go to the built-in one); unset: the built-in one" },
    { .name = "AGENT_ENV", .type = CFG_LIST, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .hook = cfg_hook_agent_env,
      .doc = "extra variable names passed to the agent, comma-separated, added to "
             "`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`, `GEMINI_API_KEY`, `OPENROUTER_API_KEY`" },
    { .name = "AGENT_SANDBOX", .type = CFG_ENUM, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(sandbox), .def = "bwrap",
      .choices = cfg_sandbox_names,
      .doc = "`bwrap`, or `none` to run the agent unsandboxed (explicit opt-out)" },
    { .name = "BWRAP_BIN", .type = CFG_PATH, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(bwrap_bin), .def = "/usr/bin/bwrap",
      .hook = cfg_hook_bwrap_bin,
      .doc = "bubblewrap executable" },
    /* The agent's network (worker/gateway.h): its own namespace with
     * loopback only, where the job's gateway is its way to the providers. */
    { .name = "AGENT_EGRESS", .type = CFG_ENUM, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(egress), .def = "none",
      .choices = cfg_egress_names,
      .doc = "the agent's network: `none` (loopback only; providers through the job's "
             "gateway), `allowlist` (`none` plus a proxy to `AGENT_EGRESS_ALLOW`) or `open` "
             "(the host's network, opt-in)" },
    { .name = "AGENT_EGRESS_ALLOW", .type = CFG_STR, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(egress_allow),
      .doc = "with `AGENT_EGRESS=allowlist`: the hosts the agent may reach through its "
             "proxy, comma-separated `name`, `*.suffix` or `address`, each with an optional "
             "`:port` (default 80 and 443); loopback, link-local and private addresses only "
             "when listed as an address" },
    /* Per-key budgets the gateway enforces: the defaults for keys whose
     * api_keys row sets none (0: unlimited). */
    { .name = "KEY_MAX_USD_PER_DAY", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(key_max_usd_per_day), .def = "0",
      .min = 0, .max = 100000000,
      .doc = "whole USD one key's jobs may spend through the gateway per UTC day (priced "
             "by the models' `cost`); the next job over it fails `budget_exceeded`; 0: "
             "unlimited" },
    { .name = "KEY_MAX_TOKENS_PER_JOB", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(key_max_tokens_per_job), .def = "0",
      .min = 0, .max = 1L << 40,
      .doc = "input plus output tokens one job may use through the gateway; beyond, it "
             "fails `budget_exceeded`; 0: unlimited" },
    /* opencode's event stream kept per job in the database (its tail). */
    { .name = "MAX_STDOUT_BYTES", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(max_stdout_bytes), .def = "1048576",
      .min = 1024, .max = 64L << 20,
      .doc = "tail of opencode's event stream kept per job" },
    /* Each live sandbox runs under a uid of its own from this range, leased
     * through lock files that only this host sees: RLIMIT_NPROC then counts
     * one job's processes, and nothing the agent writes belongs to root. */
    { .name = "AGENT_UID_RANGE", .type = CFG_STR, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .def = "200000-200999", .hook = cfg_hook_uid_range,
      .doc = "uids leased to running sandboxes, one each (`FIRST-LAST`); give each host's "
             "workers the same range and a host-local `AGENT_UID_LOCK_DIR`" },
    { .name = "AGENT_UID_LOCK_DIR", .type = CFG_PATH, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(agent_uid_lock_dir),
      .def = "/run/opencode-agent-uids",
      .doc = "host-local folder of the uid leases' lock files (never on NFS)" },
    { .name = "AGENT_NICE", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(agent_nice), .def = "10", .min = 0,
      .max = 19, .doc = "scheduling niceness of the agent's processes" },
    /* opencode itself takes about 0.6 GiB. */
    { .name = "JOB_MAX_MEMORY_MB", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_max_memory_mb), .def = "4096",
      .min = 64, .max = 1L << 30,
      .doc = "resident memory of one job's processes together" },
    /* opencode (a Bun binary) runs a few dozen threads; each counts. */
    { .name = "JOB_MAX_PROCS", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_max_procs), .def = "1024",
      .min = 16, .max = 1000000,
      .doc = "processes and threads of one job (`RLIMIT_NPROC` of its uid)" },
    { .name = "JOB_MAX_CPU_S", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_max_cpu_s), .def = "3600",
      .min = 1, .max = 1L << 30,
      .doc = "CPU seconds of one job's processes together" },
    { .name = "JOB_MAX_DISK_MB", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_max_disk_mb), .def = "2048",
      .min = 1, .max = 1L << 30,
      .doc = "MiB a running job's workspace and HOME may hold (also its largest file)" },
    { .name = "JOB_TMP_MB", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_tmp_mb), .def = "512", .min = 1,
      .max = 1L << 20, .doc = "size of the sandbox's `/tmp` (a tmpfs, in memory)" },
    { .name = "JOB_MAX_OPEN_FILES", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_max_open_files), .def = "4096",
      .min = 64, .max = 1048576, .doc = "open files per agent process (`RLIMIT_NOFILE`)" },
    { .name = "JOB_WATCHDOG_MS", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_watchdog_ms), .def = "500",
      .min = 50, .max = 60000,
      .doc = "how often a running job's memory, CPU and disk are sampled" },
    { .name = "JOB_MAX_EVENTS", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_max_events), .def = "5000",
      .min = 0, .max = 10000000,
      .doc = "agent events (text, tool, step, error) stored per job for `GET /job/events`; "
             "later ones are dropped (status events always go in)" },
    { .name = "CGROUP_ROOT", .type = CFG_PATH, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(cgroup_root),
      .doc = "a cgroup v2 folder delegated to this worker: each job also gets "
             "`memory.max`, `pids.max` and `cpu.max` there (unset: rlimits and the "
             "watchdog only)" },
    { .name = "JOB_MAX_OUTPUT_FILES", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_max_output_files), .def = "10000",
      .min = 1, .max = 10000000, .doc = "files a job may leave as its outputs" },
    { .name = "JOB_MAX_OUTPUT_BYTES", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_max_output_bytes),
      .def = "1073741824", .note = "1 GiB", .min = 1, .max = 1L << 50,
      .doc = "bytes a job may leave as its outputs" },
    { .name = "JOB_MAX_DIFF_BYTES", .type = CFG_INT, .roles = CFG_ROLE_WORKER,
      .section = CFG_SEC_WORKER, .field = CFG_FIELD(job_max_diff_bytes),
      .def = "8388608", .note = "8 MiB", .min = 1024, .max = 1L << 30,
      .doc = "bytes of a job's unified diff kept for `GET /job/diff` (longer: cut at a "
             "line end, with a trailer line saying so)" },

    /* ---- janitor ---- */
    { .name = "JANITOR_INTERVAL_S", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(janitor_interval_s), .def = "60",
      .min = 1, .max = 24L * 3600,
      .doc = "seconds between passes" },
    { .name = "JOB_RETENTION_S", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(job_retention_s), .def = "604800",
      .note = "7 days", .min = 60, .max = 10L * 365 * 24 * 3600,
      .doc = "how long rows of ended sessions (and their jobs) are kept" },
    /* A queued job whose message is this old is announced again; a duplicate
     * costs a worker one look at the job row. */
    { .name = "JOB_REPUBLISH_S", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(job_republish_s), .def = "600",
      .min = 5, .max = 7L * 24 * 3600,
      .doc = "a queued job whose last announcement is older is announced again (the "
             "broker may have lost it)" },
    /* A session folder that fails to go is retried after this, doubling up
     * to a day, so a poisoned folder never blocks the others. */
    { .name = "JANITOR_RETRY_S", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(janitor_retry_s), .def = "300",
      .min = 1, .max = 24L * 3600,
      .doc = "first wait before a folder that failed to go is tried again (doubles, up "
             "to a day)" },
    /* Removing a folder is mostly unlink()/rmdir() waiting on the disk
     * (its journal, discards, an NFS round trip): several threads keep it
     * busier than one. 8 removed 10 000 sessions' folders in 14 s where 4
     * took 17 s and 16 no less than 8, on an ext4 volume mounted with
     * discard. */
    { .name = "JANITOR_REMOVE_THREADS", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(janitor_remove_threads), .def = "8",
      .min = 1, .max = 64,
      .doc = "threads (the pass's own among them) that remove one batch of ended "
             "sessions' folders together" },
    { .name = "JANITOR_BATCH", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(janitor_batch), .def = "500",
      .min = 1, .max = 100000,
      .doc = "rows one bulk statement of a pass handles; a pass repeats until done" },
    { .name = "JANITOR_BUDGET_S", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(janitor_budget_s), .def = "50",
      .min = 1, .max = 24L * 3600,
      .doc = "time one pass may take before it leaves the rest to the next" },
    /* Old workspaces of a live session hold disk; the current one never goes. */
    { .name = "SESSION_KEEP_JOBS", .type = CFG_INT, .roles = CFG_ROLE_JANITOR | CFG_ROLE_API,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(session_keep_jobs), .def = "20",
      .min = 1, .max = 1000000,
      .doc = "ended jobs of a live session whose outputs are kept (the newest; the "
             "session's current files always); older ones answer 410" },

    /* ---- webhooks (janitor; README "Webhooks") ---- */
    { .name = "WEBHOOK_SECRET", .type = CFG_SECRET, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(webhook_secret),
      .hook = cfg_hook_webhook_secret,
      .doc = "signing secret (`whsec_` + base64) of the bootstrap key's webhooks; unset: "
             "its row in `webhook_secrets` (`opencode-api keys rotate-webhook-secret "
             "bootstrap`)" },
    /* Receivers need time to roll a new secret out; a day is generous. */
    { .name = "WEBHOOK_SECRET_GRACE_S", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(webhook_secret_grace_s), .def = "86400",
      .note = "1 day", .min = 0, .max = 30L * 24 * 3600,
      .doc = "after a secret rotation, webhooks also carry the old secret's signature "
             "this long" },
    /* Standard Webhooks senders retry for about a day. */
    { .name = "WEBHOOK_RETRY_S", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(webhook_retry_s), .def = "86400",
      .note = "24 h", .min = 1, .max = 30L * 24 * 3600,
      .doc = "a webhook is retried until this long after its job ended, then given up" },
    { .name = "WEBHOOK_RETRY_BASE_S", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(webhook_retry_base_s), .def = "5",
      .min = 1, .max = 24L * 3600,
      .doc = "wait before the second attempt of a webhook; doubles for each further one, "
             "up to `WEBHOOK_RETRY_MAX_S`" },
    { .name = "WEBHOOK_RETRY_MAX_S", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(webhook_retry_max_s), .def = "3600",
      .min = 1, .max = 24L * 3600,
      .doc = "longest wait between two attempts of a webhook" },
    /* One slow receiver holds the delivery thread this long per attempt. */
    { .name = "WEBHOOK_TIMEOUT_MS", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(webhook_timeout_ms), .def = "10000",
      .min = 100, .max = 300000,
      .doc = "time one webhook attempt may take (connect, send, answer)" },
    /* Off by default: a webhook URL must not reach the service's own
     * network (SSRF). */
    { .name = "WEBHOOK_ALLOW_PRIVATE", .type = CFG_INT, .roles = CFG_ROLE_JANITOR,
      .section = CFG_SEC_JANITOR, .field = CFG_FIELD(webhook_allow_private), .def = "0",
      .min = 0, .max = 1,
      .doc = "1: webhooks may connect to loopback, link-local and private addresses "
             "(refused by default, checked when connecting)" },
};

#define CFG_NVARS (sizeof(cfg_vars) / sizeof(cfg_vars[0]))

static const struct cfg_var *cfg_find(const char *name, size_t n)
{
    for (size_t i = 0; i < CFG_NVARS; i++)
        if (strlen(cfg_vars[i].name) == n && memcmp(cfg_vars[i].name, name, n) == 0)
            return &cfg_vars[i];
    return NULL;
}

const char *cfg_var_name(size_t i)
{
    return i < CFG_NVARS ? cfg_vars[i].name : NULL;
}

/* ---- Names per-session env may not use ---------------------------------- */

/* The service's own secrets: never handed to the agent. */
static int cfg_is_service_secret(const char *name, size_t n)
{
    static const char *const libpq[] = { "PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE" };
    const struct cfg_var *v = cfg_find(name, n);
    if (v != NULL)
        return v->type == CFG_SECRET || (v->flags & CFG_F_SECRET) != 0;
    for (size_t i = 0; i < sizeof(libpq) / sizeof(libpq[0]); i++)
        if (strlen(libpq[i]) == n && memcmp(libpq[i], name, n) == 0)
            return 1;
    return 0;
}

int cfg_env_name_reserved(const char *name)
{
    /* Besides every name in cfg_vars[]: what the worker sets for the agent,
     * loader and interpreter hooks, and the prefixes of the service's own
     * names (so that a variable added later is reserved already). */
    static const char *const exact[] = {
        "HOME", "PATH", "SHELL", "USER", "LOGNAME", "TMPDIR", "PWD",
        "BASH_ENV", "ENV", "NODE_OPTIONS", "NODE_PATH", "PYTHONPATH", "PYTHONSTARTUP",
        "PERL5OPT", "RUBYOPT", "GCONV_PATH", "HOSTALIASES", "RESOLV_HOST_CONF",
        "LOCALDOMAIN", "NLSPATH", "MALLOC_CHECK_", "OPENSSL_CONF",
    };
    static const char *const prefixes[] = {
        "LD_", "PG", "AMQP_", "OPENCODE_", "AGENT_", "WORKER_", "JOB_",
        "MAX_", "DEFAULT_", "JANITOR_", "BWRAP_", "GLIBC_", "BUN_",
    };
    if (cfg_find(name, strlen(name)) != NULL)
        return 1;
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(name, exact[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

/* ---- README ------------------------------------------------------------- */

static void cfg_write_default(FILE *f, const struct cfg_var *v)
{
    if (v->def == NULL)
        fputs(v->note != NULL ? v->note : "(none)", f);
    else if (v->note == NULL)
        fprintf(f, "`%s`", v->def);
    else
        fprintf(f, "`%s` (%s)", v->def, v->note);
}

int cfg_write_markdown(FILE *f)
{
    size_t nsec = sizeof(cfg_section_title) / sizeof(cfg_section_title[0]);
    for (size_t s = 0; s < nsec; s++) {
        fprintf(f, "%s### %s\n\n| variable | default | meaning |\n|---|---|---|\n",
                s == 0 ? "" : "\n", cfg_section_title[s]);
        for (size_t i = 0; i < CFG_NVARS; i++) {
            const struct cfg_var *v = &cfg_vars[i];
            if (v->section != s)
                continue;
            fprintf(f, "| `%s` | ", v->name);
            cfg_write_default(f, v);
            fprintf(f, " | %s |\n", v->doc);
        }
    }
    return ferror(f) ? -1 : 0;
}

/* ---- Loading ------------------------------------------------------------ */

/* A CFG_INT row's upper bound: its max, lowered to its cap's value. */
static long cfg_max(const struct cfg *c, const struct cfg_var *v)
{
    const struct cfg_var *cap = v->cap ? cfg_find(v->cap, strlen(v->cap)) : NULL;
    if (cap == NULL)
        return v->max;
    long capv = *(const long *)(const void *)((const char *)c + (cap->field - 1));
    return capv < v->max ? capv : v->max;
}

static int cfg_set_long(struct cfg *c, const struct cfg_var *v, const char *raw,
                        char *err, size_t err_len)
{
    long *out = cfg_at(c, v);
    long max = cfg_max(c, v), def;
    if (raw == NULL) {
        if (v->def == NULL)
            return 0;            /* computed by the row's hook */
        if (cfg_parse_long(v->def, LONG_MIN, LONG_MAX, &def) != 0)
            return cfg_fail(err, err_len, "%s: bad built-in default \"%s\"", v->name, v->def);
        *out = cfg_clamp(def, v->min, max);
        return 0;
    }
    if (cfg_parse_long(raw, v->min, max, out) != 0)
        return cfg_fail(err, err_len, "%s must be an integer from %ld to %ld (got \"%s\")",
                        v->name, v->min, max, raw);
    return 0;
}

/* Stores the index of val in v->choices; refuses other values with
 * NAME must be "a", "b" or "c" (got "x"). */
static int cfg_set_enum(struct cfg *c, const struct cfg_var *v, const char *val,
                        char *err, size_t err_len)
{
    size_t n = 0;
    while (v->choices[n] != NULL)
        n++;
    for (size_t i = 0; i < n; i++)
        if (val != NULL && strcmp(val, v->choices[i]) == 0) {
            *(int *)cfg_at(c, v) = (int)i;
            return 0;
        }
    char list[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof(list); i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int w = snprintf(list + len, sizeof(list) - len, "%s\"%s\"", sep, v->choices[i]);
        len += w > 0 ? (size_t)w : 0;
    }
    return cfg_fail(err, err_len, "%s must be %s (got \"%s\")", v->name, list,
                    val != NULL ? val : "");
}

static int cfg_set_str(struct cfg *c, const struct cfg_var *v, const char *val,
                       char *err, size_t err_len)
{
    char **out = cfg_at(c, v);
    if (val == NULL)
        return 0;
    *out = strdup(val);
    if (*out == NULL)
        return cfg_fail(err, err_len, "out of memory reading %s", v->name);
    return 0;
}

/* One row: the generic step for its type stores its field, then its hook
 * runs. An empty variable counts as unset. */
static int cfg_load_var(struct cfg *c, const struct cfg_var *v, char *err, size_t err_len)
{
    const char *raw = cfg_env(v->name);
    const char *val = raw != NULL ? raw : v->def;
    int rc = 0;
    if (v->field != 0) {
        if (v->type == CFG_INT)
            rc = cfg_set_long(c, v, raw, err, err_len);
        else if (v->type == CFG_ENUM)
            rc = cfg_set_enum(c, v, val, err, err_len);
        else
            rc = cfg_set_str(c, v, val, err, err_len);
    }
    if (rc == 0 && v->hook != NULL)
        rc = v->hook(c, v, val, err, err_len);
    return rc;
}

void cfg_free(struct cfg *c)
{
    for (size_t i = 0; i < CFG_NVARS; i++) {
        const struct cfg_var *v = &cfg_vars[i];
        if (v->field != 0 && v->type != CFG_INT && v->type != CFG_ENUM)
            free(*(char **)cfg_at(c, v));
    }
    free(c->agent_config_json);
    free(c->agent_models_json);
    for (size_t i = 0; i < c->agent_env_count; i++)
        free(c->agent_env[i]);
    memset(c, 0, sizeof(*c));
}

int cfg_load(struct cfg *c, unsigned roles, char *err, size_t err_len)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < CFG_NVARS; i++) {
        if ((cfg_vars[i].roles & roles) == 0)
            continue;
        if (cfg_load_var(c, &cfg_vars[i], err, err_len) != 0) {
            cfg_free(c);
            return -1;
        }
    }
    return 0;
}
