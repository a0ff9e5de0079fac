/*
 * config.c - environment configuration with validation (see config.h).
 *
 * Every limit the service enforces is defined here once, with its reason.
 */
#include "config.h"
#include "log.h"

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

/* ---- Defaults and bounds ------------------------------------------------ */

/* The seed service's limits: 200 files and 25 MB per session. */
#define DEF_MAX_FILES          200
#define DEF_MAX_SESSION_BYTES  (25L * 1024 * 1024)
/* JSON escaping can grow content (\n, \", \uXXXX); two times the session
 * size plus room for paths and framing covers ordinary sources while
 * still refusing a runaway upload from its Content-Length alone. */
#define DEF_MAX_BODY_BYTES     (2 * DEF_MAX_SESSION_BYTES + 1024L * 1024)
/* A prompt is instructions, not data: 256 KiB is generous. */
#define DEF_MAX_PROMPT_BYTES   (256L * 1024)
#define DEF_TTL_S              3600
/* A session may live a week at most: it holds disk space until it ends. */
#define DEF_MAX_TTL_S          (7L * 24 * 3600)
#define DEF_JOB_TIMEOUT_S      600
#define DEF_MAX_JOB_TIMEOUT_S  1800
#define DEF_MODEL              "anthropic/claude-3-5-sonnet-latest"
#define DEF_API_LISTEN         "127.0.0.1:8000"
/* CivetWeb serves one connection per thread. */
#define DEF_API_THREADS        32
#define DEF_WORKER_CONCURRENCY 2
/* A lease is renewed every third of its length, so a worker must miss
 * two renewals in a row before the janitor takes its job back. */
#define DEF_JOB_LEASE_S        30
#define DEF_JOB_MAX_ATTEMPTS   3
#define DEF_WORKER_GRACE_S     30
/* opencode's event stream kept per job in the database (its tail). */
#define DEF_MAX_STDOUT_BYTES   (1024L * 1024)
#define DEF_JANITOR_INTERVAL_S 60
#define DEF_JOB_RETENTION_S    (7L * 24 * 3600)
/* A queued job whose message is this old is announced again; a duplicate
 * costs a worker one look at the job row. */
#define DEF_JOB_REPUBLISH_S    600

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

static int cfg_long(const char *name, long def, long min, long max, long *out,
                    char *err, size_t err_len)
{
    const char *v = cfg_env(name);
    if (v == NULL) {
        /* A default never escapes a lowered maximum (DEFAULT_JOB_TIMEOUT_S
         * under MAX_JOB_TIMEOUT_S=300, say). */
        *out = def < min ? min : def > max ? max : def;
        return 0;
    }
    if (cfg_parse_long(v, min, max, out) != 0)
        return cfg_fail(err, err_len, "%s must be an integer from %ld to %ld (got \"%s\")",
                        name, min, max, v);
    return 0;
}

static int cfg_str(const char *name, const char *def, char **out, char *err,
                   size_t err_len)
{
    const char *v = cfg_env(name);
    if (v == NULL)
        v = def;
    if (v == NULL) {
        *out = NULL;
        return 0;
    }
    *out = strdup(v);
    if (*out == NULL)
        return cfg_fail(err, err_len, "out of memory reading %s", name);
    return 0;
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

/* The service's own variables: never handed to the agent. */
static int cfg_is_service_secret(const char *name, size_t n)
{
    static const char *const names[] = {
        "API_KEY", "DATABASE_URL", "AMQP_URL", "PGPASSWORD", "PGPASSFILE",
        "PGSERVICEFILE", "AGENT_CONFIG_FILE",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == n && memcmp(names[i], name, n) == 0)
            return 1;
    return 0;
}

static int cfg_load_agent_env(struct cfg *c, char *err, size_t err_len)
{
    for (size_t i = 0; i < sizeof(cfg_default_agent_env) / sizeof(cfg_default_agent_env[0]); i++)
        if (cfg_add_agent_env(c, cfg_default_agent_env[i],
                              strlen(cfg_default_agent_env[i]), err, err_len) != 0)
            return -1;

    const char *v = cfg_env("AGENT_ENV");
    while (v != NULL && *v != '\0') {
        const char *end = strchr(v, ',');
        size_t n = end ? (size_t)(end - v) : strlen(v);
        while (n > 0 && isspace((unsigned char)*v)) {
            v++;
            n--;
        }
        while (n > 0 && isspace((unsigned char)v[n - 1]))
            n--;
        if (n > 0) {
            if (!cfg_valid_env_name(v, n))
                return cfg_fail(err, err_len, "AGENT_ENV has an invalid variable name \"%.*s\"",
                                (int)n, v);
            if (cfg_is_service_secret(v, n))
                return cfg_fail(err, err_len,
                                "AGENT_ENV must not pass the service's own secret %.*s to the agent",
                                (int)n, v);
            if (cfg_add_agent_env(c, v, n, err, err_len) != 0)
                return -1;
        }
        v = end ? end + 1 : NULL;
    }
    return 0;
}

int cfg_env_name_valid(const char *name)
{
    return cfg_valid_env_name(name, strlen(name));
}

int cfg_env_name_reserved(const char *name)
{
    static const char *const exact[] = {
        "API_KEY", "API_LISTEN", "API_THREADS", "DATABASE_URL", "AMQP_URL", "AMQP_QUEUE",
        "DATA_DIR", "ENV_FILE", "LOG_LEVEL",
        "HOME", "PATH", "SHELL", "USER", "LOGNAME", "TMPDIR", "PWD",
        "BASH_ENV", "ENV", "NODE_OPTIONS", "NODE_PATH", "PYTHONPATH", "PYTHONSTARTUP",
        "PERL5OPT", "RUBYOPT", "GCONV_PATH", "HOSTALIASES", "RESOLV_HOST_CONF",
        "LOCALDOMAIN", "NLSPATH", "MALLOC_CHECK_", "OPENSSL_CONF",
    };
    static const char *const prefixes[] = {
        "LD_", "PG", "AMQP_", "OPENCODE_", "AGENT_", "WORKER_", "JOB_",
        "MAX_", "DEFAULT_", "JANITOR_", "BWRAP_", "GLIBC_", "BUN_",
    };
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(name, exact[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
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

/* ---- Loading ------------------------------------------------------------ */

void cfg_free(struct cfg *c)
{
    free(c->database_url);
    free(c->amqp_url);
    free(c->amqp_queue);
    free(c->data_dir);
    free(c->default_model);
    free(c->api_key);
    free(c->api_listen);
    free(c->worker_id);
    free(c->opencode_bin);
    free(c->agent_config_json);
    free(c->bwrap_bin);
    for (size_t i = 0; i < c->agent_env_count; i++)
        free(c->agent_env[i]);
    memset(c, 0, sizeof(*c));
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

static int cfg_load_limits(struct cfg *c, char *err, size_t err_len)
{
    if (cfg_long("MAX_FILES", DEF_MAX_FILES, 1, 100000, &c->max_files, err, err_len) ||
        cfg_long("MAX_SESSION_BYTES", DEF_MAX_SESSION_BYTES, 1, 1L << 40,
                 &c->max_session_bytes, err, err_len) ||
        cfg_long("MAX_BODY_BYTES", 2 * c->max_session_bytes + 1024L * 1024, 1024, 1L << 41,
                 &c->max_body_bytes, err, err_len) ||
        cfg_long("MAX_PROMPT_BYTES", DEF_MAX_PROMPT_BYTES, 1, 16L << 20,
                 &c->max_prompt_bytes, err, err_len) ||
        cfg_long("MAX_TTL_S", DEF_MAX_TTL_S, 1, 10L * 365 * 24 * 3600, &c->max_ttl_s,
                 err, err_len) ||
        cfg_long("DEFAULT_TTL_S", DEF_TTL_S, 1, c->max_ttl_s, &c->default_ttl_s,
                 err, err_len) ||
        cfg_long("MAX_JOB_TIMEOUT_S", DEF_MAX_JOB_TIMEOUT_S, 1, 24L * 3600,
                 &c->max_job_timeout_s, err, err_len) ||
        cfg_long("DEFAULT_JOB_TIMEOUT_S", DEF_JOB_TIMEOUT_S, 1, c->max_job_timeout_s,
                 &c->default_job_timeout_s, err, err_len) ||
        cfg_str("DEFAULT_MODEL", DEF_MODEL, &c->default_model, err, err_len))
        return -1;
    if (!cfg_model_valid(c->default_model))
        return cfg_fail(err, err_len, "DEFAULT_MODEL must look like provider/model (got \"%s\")",
                        c->default_model);
    return 0;
}

static int cfg_load_worker(struct cfg *c, char *err, size_t err_len)
{
    char *bin = NULL;
    if (cfg_long("WORKER_CONCURRENCY", DEF_WORKER_CONCURRENCY, 1, 64,
                 &c->worker_concurrency, err, err_len) ||
        cfg_long("JOB_MAX_ATTEMPTS", DEF_JOB_MAX_ATTEMPTS, 1, 100, &c->job_max_attempts,
                 err, err_len) ||
        cfg_long("WORKER_GRACE_S", DEF_WORKER_GRACE_S, 0, 24L * 3600, &c->worker_grace_s,
                 err, err_len) ||
        cfg_long("MAX_STDOUT_BYTES", DEF_MAX_STDOUT_BYTES, 1024, 64L << 20,
                 &c->max_stdout_bytes, err, err_len) ||
        cfg_str("OPENCODE_BIN", "node_modules/.bin/opencode", &bin, err, err_len) ||
        cfg_str("BWRAP_BIN", "/usr/bin/bwrap", &c->bwrap_bin, err, err_len) ||
        cfg_load_agent_env(c, err, err_len))
        goto fail;

    if (cfg_env("WORKER_ID") != NULL) {
        if (cfg_str("WORKER_ID", NULL, &c->worker_id, err, err_len))
            goto fail;
    } else {
        char host[256] = "worker";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        char id[300];
        snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
        c->worker_id = strdup(id);
    }

    /* realpath() both checks that it exists and gives the sandbox an
     * absolute path to bind. */
    c->opencode_bin = realpath(bin, NULL);
    struct stat st;
    if (c->opencode_bin == NULL || stat(c->opencode_bin, &st) != 0 || !S_ISREG(st.st_mode) ||
        access(c->opencode_bin, X_OK) != 0) {
        cfg_fail(err, err_len, "OPENCODE_BIN \"%s\" is not an executable file", bin);
        goto fail;
    }
    free(bin);
    bin = NULL;

    const char *sb = cfg_env("AGENT_SANDBOX");
    if (sb == NULL || strcmp(sb, "bwrap") == 0) {
        c->sandbox = CFG_SANDBOX_BWRAP;
        if (access(c->bwrap_bin, X_OK) != 0) {
            cfg_fail(err, err_len,
                     "AGENT_SANDBOX is bwrap but BWRAP_BIN \"%s\" is not executable "
                     "(install bubblewrap, or set AGENT_SANDBOX=none to run the agent "
                     "unsandboxed)", c->bwrap_bin);
            goto fail;
        }
    } else if (strcmp(sb, "none") == 0) {
        c->sandbox = CFG_SANDBOX_NONE;
    } else {
        cfg_fail(err, err_len, "AGENT_SANDBOX must be \"bwrap\" or \"none\" (got \"%s\")", sb);
        goto fail;
    }

    const char *acf = cfg_env("AGENT_CONFIG_FILE");
    if (acf != NULL) {
        c->agent_config_json = cfg_read_file(acf, 1024 * 1024);
        if (c->agent_config_json == NULL) {
            cfg_fail(err, err_len, "AGENT_CONFIG_FILE \"%s\" could not be read: %s", acf,
                     strerror(errno));
            goto fail;
        }
        cJSON *j = cJSON_Parse(c->agent_config_json);
        int ok = cJSON_IsObject(j);
        cJSON_Delete(j);
        if (!ok) {
            cfg_fail(err, err_len, "AGENT_CONFIG_FILE \"%s\" is not a JSON object", acf);
            goto fail;
        }
    }
    return 0;

fail:
    free(bin);
    return -1;
}

int cfg_load(struct cfg *c, unsigned roles, char *err, size_t err_len)
{
    memset(c, 0, sizeof(*c));

    const char *env_file = cfg_env("ENV_FILE");
    if (cfg_load_env_file(env_file ? env_file : ".env", err, err_len) != 0)
        return -1;

    const char *lvl = cfg_env("LOG_LEVEL");
    c->log_level = lvl ? log_level_parse(lvl) : LOG_INFO;
    if (c->log_level < 0)
        return cfg_fail(err, err_len, "LOG_LEVEL must be debug, info, warn or error");

    char *data_dir = NULL;
    if (cfg_str("DATABASE_URL", NULL, &c->database_url, err, err_len) ||
        cfg_str("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", &c->amqp_url, err,
                err_len) ||
        cfg_str("AMQP_QUEUE", "opencode.jobs", &c->amqp_queue, err, err_len) ||
        cfg_str("DATA_DIR", "var/data", &data_dir, err, err_len))
        goto fail;
    if (c->database_url == NULL) {
        cfg_fail(err, err_len, "DATABASE_URL is not set (a libpq connection string, "
                               "e.g. postgresql://user:pass@127.0.0.1:5432/opencode)");
        goto fail;
    }
    if (strncmp(c->amqp_url, "amqp://", 7) != 0) {
        cfg_fail(err, err_len, "AMQP_URL must start with amqp://");
        goto fail;
    }
    c->data_dir = cfg_absolute(data_dir);
    free(data_dir);
    data_dir = NULL;
    if (c->data_dir == NULL) {
        cfg_fail(err, err_len, "DATA_DIR could not be made absolute");
        goto fail;
    }

    if (cfg_load_limits(c, err, err_len) != 0)
        goto fail;

    if (roles & CFG_ROLE_API) {
        if (cfg_str("API_KEY", NULL, &c->api_key, err, err_len) ||
            cfg_str("API_LISTEN", DEF_API_LISTEN, &c->api_listen, err, err_len) ||
            cfg_long("API_THREADS", DEF_API_THREADS, 2, 1024, &c->api_threads, err,
                     err_len))
            goto fail;
        if (c->api_key == NULL) {
            cfg_fail(err, err_len, "API_KEY is not set: refusing to serve without a key "
                                   "(generate one with: openssl rand -hex 32)");
            goto fail;
        }
        if (strlen(c->api_key) < 16) {
            cfg_fail(err, err_len, "API_KEY is too short (at least 16 characters)");
            goto fail;
        }
    }

    if (roles & (CFG_ROLE_WORKER | CFG_ROLE_JANITOR | CFG_ROLE_API)) {
        if (cfg_long("JOB_LEASE_S", DEF_JOB_LEASE_S, 3, 3600, &c->job_lease_s, err,
                     err_len) ||
            cfg_long("JOB_MAX_ATTEMPTS", DEF_JOB_MAX_ATTEMPTS, 1, 100,
                     &c->job_max_attempts, err, err_len))
            goto fail;
    }

    if ((roles & CFG_ROLE_WORKER) && cfg_load_worker(c, err, err_len) != 0)
        goto fail;

    if (roles & CFG_ROLE_JANITOR) {
        if (cfg_long("JANITOR_INTERVAL_S", DEF_JANITOR_INTERVAL_S, 1, 24L * 3600,
                     &c->janitor_interval_s, err, err_len) ||
            cfg_long("JOB_RETENTION_S", DEF_JOB_RETENTION_S, 60, 10L * 365 * 24 * 3600,
                     &c->job_retention_s, err, err_len) ||
            cfg_long("JOB_REPUBLISH_S", DEF_JOB_REPUBLISH_S, 5, 7L * 24 * 3600,
                     &c->job_republish_s, err, err_len))
            goto fail;
    }
    return 0;

fail:
    free(data_dir);
    cfg_free(c);
    return -1;
}
