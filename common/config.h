/*
 * config.h - the service's configuration, read once from the environment.
 *
 * Every program (api, worker, janitor) loads the same struct at start-up
 * with cfg_load() and never changes it afterwards, so it may be read from
 * any thread without locking. Values come from the process environment,
 * then from an optional .env file (ENV_FILE, default ./.env) for names the
 * environment does not set. A bad value stops the program with a message
 * that names the variable.
 *
 * Every variable is one row of the table in config.c (name, type, default,
 * bounds, the programs that read it, its field below and its README text);
 * README's configuration tables are generated from it (cfg_write_markdown).
 */
#ifndef OC_CONFIG_H
#define OC_CONFIG_H

#include <stddef.h>
#include <stdio.h>

/* Which parts of the configuration a program needs; cfg_load() insists on
 * the required variables of those parts only. */
enum cfg_role {
    CFG_ROLE_API     = 1 << 0,
    CFG_ROLE_WORKER  = 1 << 1,
    CFG_ROLE_JANITOR = 1 << 2,
    CFG_ROLE_ADMIN   = 1 << 3,   /* migrate, keys: database only */
};

enum cfg_log_format {
    CFG_LOG_TEXT,                /* time level program event key=value... */
    CFG_LOG_JSON,                /* one JSON object per line */
};

enum cfg_sandbox {
    CFG_SANDBOX_BWRAP,           /* the agent runs under bubblewrap */
    CFG_SANDBOX_NONE,            /* explicit opt-out: AGENT_SANDBOX=none */
};

enum cfg_egress {
    CFG_EGRESS_NONE,             /* AGENT_EGRESS=none: loopback only, the gateway */
    CFG_EGRESS_OPEN,             /* AGENT_EGRESS=open: the host's network (opt-in) */
    CFG_EGRESS_ALLOWLIST,        /* AGENT_EGRESS=allowlist: none + the job's proxy */
};

#define CFG_MAX_AGENT_ENV 64

struct cfg {
    /* shared */
    char  *database_url;         /* DATABASE_URL: libpq connection string */
    char  *amqp_url;             /* AMQP_URL: amqp://user:pass@host:port/vhost */
    char  *amqp_queue;           /* AMQP_QUEUE */
    char  *data_dir;             /* DATA_DIR: absolute; sessions/ lives here */
    int    log_level;            /* LOG_LEVEL: see log.h */
    enum cfg_log_format log_format; /* LOG_FORMAT */
    char  *metrics_listen;       /* METRICS_LISTEN: host:port of /metrics, NULL: off */

    /* limits (api); each one's reason is in config.c */
    long   max_files;            /* MAX_FILES */
    long   max_session_bytes;    /* MAX_SESSION_BYTES */
    long   max_body_bytes;       /* MAX_BODY_BYTES */
    long   max_prompt_bytes;     /* MAX_PROMPT_BYTES */
    long   default_ttl_s;        /* DEFAULT_TTL_S */
    long   max_ttl_s;            /* MAX_TTL_S */
    long   default_job_timeout_s;/* DEFAULT_JOB_TIMEOUT_S */
    long   max_job_timeout_s;    /* MAX_JOB_TIMEOUT_S */
    char  *default_model;        /* DEFAULT_MODEL: provider/model */

    /* api */
    char  *api_key;              /* API_KEY: bootstrap key */
    char  *api_listen;           /* API_LISTEN: civetweb listening_ports */
    long   api_threads;          /* API_THREADS */
    long   api_cache_stale_ms;   /* API_CACHE_STALE_MS */
    long   api_max_streams;      /* API_MAX_STREAMS */
    long   api_max_streams_per_key; /* API_MAX_STREAMS_PER_KEY */
    long   api_sse_keepalive_ms; /* API_SSE_KEEPALIVE_MS */
    long   job_max_events;       /* JOB_MAX_EVENTS */
    long   api_db_pool;          /* API_DB_POOL: database connections */
    long   api_request_timeout_ms;/* API_REQUEST_TIMEOUT_MS */
    char  *cors_allow_origins;   /* CORS_ALLOW_ORIGINS: "*" or a comma-separated list, NULL: off */
    long   key_max_active_sessions; /* KEY_MAX_ACTIVE_SESSIONS: default per key */
    long   key_max_queued_jobs;  /* KEY_MAX_QUEUED_JOBS: default per key */
    long   key_max_stored_mb;    /* KEY_MAX_STORED_MB: default per key */
    long   idempotency_ttl_s;    /* IDEMPOTENCY_TTL_S: Idempotency-Key window (api, janitor) */

    /* worker */
    long   worker_concurrency;   /* WORKER_CONCURRENCY */
    char  *worker_id;            /* WORKER_ID (default host:pid) */
    char  *opencode_bin;         /* OPENCODE_BIN: resolved absolute path */
    char  *agent_config_json;    /* contents of AGENT_CONFIG_FILE, or NULL */
    char  *agent_models_json;    /* contents of AGENT_MODELS_FILE, or NULL */
    enum cfg_sandbox sandbox;    /* AGENT_SANDBOX */
    enum cfg_egress egress;      /* AGENT_EGRESS */
    char  *egress_allow;         /* AGENT_EGRESS_ALLOW: host[:port],... or NULL */
    long   key_max_usd_per_day;  /* KEY_MAX_USD_PER_DAY: default per key, 0 = none */
    long   key_max_tokens_per_job; /* KEY_MAX_TOKENS_PER_JOB: default per key, 0 = none */
    char  *bwrap_bin;            /* BWRAP_BIN */
    char  *agent_env[CFG_MAX_AGENT_ENV]; /* AGENT_ENV: names passed through */
    size_t agent_env_count;
    long   job_lease_s;          /* JOB_LEASE_S */
    long   job_max_attempts;     /* JOB_MAX_ATTEMPTS */
    long   worker_grace_s;       /* WORKER_GRACE_S */
    long   max_stdout_bytes;     /* MAX_STDOUT_BYTES: kept per job */
    long   agent_uid_min;        /* AGENT_UID_RANGE: first uid leased to sandboxes */
    long   agent_uid_max;        /*   ... and the last */
    char  *agent_uid_lock_dir;   /* AGENT_UID_LOCK_DIR: host-local lock files */
    long   agent_nice;           /* AGENT_NICE */
    long   job_max_memory_mb;    /* JOB_MAX_MEMORY_MB */
    long   job_max_procs;        /* JOB_MAX_PROCS */
    long   job_max_cpu_s;        /* JOB_MAX_CPU_S */
    long   job_max_disk_mb;      /* JOB_MAX_DISK_MB */
    long   job_tmp_mb;           /* JOB_TMP_MB */
    long   job_max_open_files;   /* JOB_MAX_OPEN_FILES */
    long   job_watchdog_ms;      /* JOB_WATCHDOG_MS */
    char  *cgroup_root;          /* CGROUP_ROOT: delegated cgroup v2 folder, or NULL */
    long   job_max_output_files; /* JOB_MAX_OUTPUT_FILES */
    long   job_max_output_bytes; /* JOB_MAX_OUTPUT_BYTES */
    long   job_max_diff_bytes;   /* JOB_MAX_DIFF_BYTES: a job's stored diff */

    /* janitor */
    long   janitor_interval_s;   /* JANITOR_INTERVAL_S */
    long   job_retention_s;      /* JOB_RETENTION_S */
    long   job_republish_s;      /* JOB_REPUBLISH_S */
    long   janitor_retry_s;      /* JANITOR_RETRY_S: first backoff of a folder that failed to go */
    long   janitor_remove_threads; /* JANITOR_REMOVE_THREADS */
    long   janitor_batch;        /* JANITOR_BATCH: rows per bulk statement */
    long   janitor_budget_s;     /* JANITOR_BUDGET_S: time one pass may take */
    long   session_keep_jobs;    /* SESSION_KEEP_JOBS: job workspaces kept per live session */

    /* webhooks (janitor) */
    char  *webhook_secret;       /* WEBHOOK_SECRET: the bootstrap key's, or NULL */
    long   webhook_secret_grace_s; /* WEBHOOK_SECRET_GRACE_S: old signature kept after rotation */
    long   webhook_retry_s;      /* WEBHOOK_RETRY_S: retry window from the job's end */
    long   webhook_retry_base_s; /* WEBHOOK_RETRY_BASE_S: first backoff, doubling */
    long   webhook_retry_max_s;  /* WEBHOOK_RETRY_MAX_S: backoff cap */
    long   webhook_timeout_ms;   /* WEBHOOK_TIMEOUT_MS: one attempt */
    long   webhook_allow_private;/* WEBHOOK_ALLOW_PRIVATE: 1 = loopback/private allowed */
};

/*
 * Fills *c from the environment for the given roles (a mask of
 * enum cfg_role). Returns 0, or -1 with a message naming the variable in
 * err (err_len bytes). On failure *c holds nothing that needs freeing.
 */
int cfg_load(struct cfg *c, unsigned roles, char *err, size_t err_len);

/* Frees what cfg_load() allocated. Accepts a zeroed struct. */
void cfg_free(struct cfg *c);

/*
 * Parses a decimal integer in [min, max] (the whole string, no sign tricks,
 * no trailing junk). Returns 0 and sets *out, or -1. Used by cfg_load() and
 * by request parsing.
 */
int cfg_parse_long(const char *s, long min, long max, long *out);

/*
 * 1 when a per-session variable may not use this name: the service's own
 * variables, loader and interpreter hooks (LD_*, ...), and the names the
 * worker sets for the agent itself (HOME, PATH, OPENCODE_*).
 */
int cfg_env_name_reserved(const char *name);

/* 1 when m looks like provider/model: both parts non-empty, printable
 * ASCII without spaces, at most 200 bytes; the model part may hold more
 * slashes (openrouter/vendor/model). Used for DEFAULT_MODEL and jobs. */
int cfg_model_valid(const char *m);

/* 1 when name is a valid variable name: [A-Za-z_][A-Za-z0-9_]*, <= 128. */
int cfg_env_name_valid(const char *name);

/*
 * Writes README's configuration tables (a "### section" heading and a
 * variable | default | meaning table per program group) from the table, as
 * they appear between README's config-table markers. Returns 0, or -1 on a
 * write error. The unit test test_config compares the two (and prints
 * these tables with: test_config --markdown).
 */
int cfg_write_markdown(FILE *f);

/* The name of the i-th configuration variable, or NULL past the last. */
const char *cfg_var_name(size_t i);

/*
 * Reads NAME=value lines from path into the environment, without replacing
 * variables that are already set. Blank lines and # comments are skipped;
 * values may be wrapped in single or double quotes. A missing file is not an
 * error. Returns 0, or -1 with a message in err.
 */
int cfg_load_env_file(const char *path, char *err, size_t err_len);

#endif
