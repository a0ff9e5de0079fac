/*
 * store.h - every SQL statement the service runs, behind one interface.
 *
 * HTTP handlers, the worker and the janitor call these functions and never
 * see SQL or libpq. Each function runs on the caller's struct db and
 * returns an enum store_rc; what it reads comes back in plain C structs
 * (never JSON: api/render.c owns the wire format).
 *
 * Ownership: a struct that says "view" points into the database result it
 * came from; free it with its *_free() function (which accepts a zeroed
 * struct) and do not keep pointers into it afterwards.
 *
 * Locking rule that keeps a session's jobs in order: every transaction
 * that changes which job of a session may run next (submitting a job,
 * finishing one, failing one the janitor took back, deleting the session)
 * first locks the session row FOR UPDATE, then the job rows.
 */
#ifndef OC_STORE_H
#define OC_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "ids.h"
#include "joberr.h"

struct db;
struct pg_result;

enum store_rc {
    STORE_OK          = 0,
    STORE_NOT_FOUND   = -1,  /* no such row, or not visible to this key */
    STORE_CONFLICT    = -2,  /* the row's state forbids the change */
    STORE_UNAVAILABLE = -3,  /* database down or connection lost */
    STORE_ERROR       = -4,  /* unexpected database error (logged) */
    STORE_LIMIT       = -5,  /* a per-key quota is reached (see store_quota_check) */
    STORE_GONE        = -6,  /* the row is there but its files were pruned */
};

#define STORE_KEY_ID_MAX 64
#define STORE_SHA256_HEX 64

/* One file of a manifest (input files: sha256 is NULL). */
struct store_file {
    const char *path;
    int64_t     size_bytes;
    const char *sha256;
    unsigned    mode;           /* 0100644 or 0100755 (git's); 0 = 0100644 */
};

/* A list of files read from the database (a view). */
struct store_files {
    struct store_file *v;
    size_t             n;
    struct pg_result  *res;
    const char       **change;  /* job outputs (store_job_files): v[i]'s change,
                                 * added | modified | unchanged, NULL entries:
                                 * not known; NULL: none (other lists) */
};
void store_files_free(struct store_files *f);

/* ---- API keys (store_key.c) --------------------------------------------- */

/* Finds the unrevoked key with this SHA-256 and copies its id. */
int store_key_lookup(struct db *db, const unsigned char hash[32],
                     char key_id[STORE_KEY_ID_MAX]);
int store_key_create(struct db *db, const char *id, const char *name,
                     const unsigned char hash[32]);

struct store_key {
    const char *id;
    const char *name;
    int64_t     created_usec;
    int64_t     revoked_usec;
    int         revoked;             /* 0: revoked_usec is meaningless */
};
/* Every key, oldest first (a view: *n entries in *keys). */
struct store_keys {
    struct store_key *v;
    size_t            n;
    struct pg_result *res;
};
int store_key_list(struct db *db, struct store_keys *out);
void store_keys_free(struct store_keys *k);

/* STORE_NOT_FOUND when no unrevoked key has this id. */
int store_key_revoke(struct db *db, const char *id);

/* ---- Sessions (store_session.c) ----------------------------------------- */

struct store_session {
    char    id[ID_HEX_LEN + 1];
    char    current_job_id[ID_HEX_LEN + 1];   /* "" when none succeeded yet */
    int64_t created_usec;
    int64_t expires_usec;
};

/* What POST /session records (its files are already on disk). */
struct store_new_session {
    const char              *id;
    const char              *key_id;
    long                     ttl_s;
    const struct store_file *files;     /* input manifest (sha256 unused) */
    size_t                   nfiles;
    int64_t                  total_bytes;
};

/* Records a new session; fills created/expires from the database clock. */
int store_session_create(struct db *db, const struct store_new_session *s,
                         struct store_session *out);

/* Records a new session if the key's session quotas allow it (as
 * store_quota_session with one session of s->total_bytes; def: the
 * defaults of NULL limits). One statement checks the key's counters and
 * inserts; only when they say no does the exact check run, and then the
 * plain insert if that allows it. STORE_LIMIT with *hit when over. */
struct store_quota_limits;
struct store_quota_hit;
int store_session_create_fit(struct db *db, const struct store_new_session *s,
                             const struct store_quota_limits *def, struct store_session *out,
                             struct store_quota_hit *hit);

/* Loads an active, unexpired session owned by key_id; anything else is
 * STORE_NOT_FOUND. */
int store_session_get(struct db *db, const char *id, const char *key_id,
                      struct store_session *out);

/*
 * Ends a session on DELETE: queued jobs become cancelled, a running one is
 * asked to stop (*running = 1: the agent may still write into the
 * session's folder, which the janitor removes once it stopped), the row
 * becomes deleted.
 */
int store_session_delete(struct db *db, const char *id, const char *key_id, int *running);

/* Notes that an ended session's folder is gone from disk. */
int store_session_files_removed(struct db *db, const char *id);

/* GET /session/results: the session's latest succeeded job (a view). */
struct store_results {
    const char        *latest_job_id;   /* NULL before a job succeeded */
    const char        *result;          /* NULL when none */
    const char        *result_json;     /* JSON text, or NULL */
    struct store_files files;           /* empty before a job succeeded */
    struct pg_result  *res;
};
int store_session_results(struct db *db, const char *id, const char *key_id,
                          struct store_results *out);
void store_results_free(struct store_results *r);

/* ---- Jobs: API side (store_job.c) --------------------------------------- */

struct store_new_job {
    const char *job_id;
    const char *session_id;
    const char *key_id;
    const char *prompt;
    const char *model;
    long        timeout_s;
    const char *webhook_url;    /* NULL: the key's default webhook URL, if any */
    int         fresh;          /* 1: start a new conversation (migration 013) */
};

/*
 * Queues a job on an active session owned by key_id and extends the
 * session's expiry to at least now + its ttl (as the seed did). When no
 * earlier job of the session is queued or running, an outbox row is
 * written in the same transaction so the job gets published; otherwise
 * the job is published when its predecessor ends.
 */
int store_job_create(struct db *db, const struct store_new_job *j, int64_t *created_usec);

/* GET /job/status: one job of a session owned by the caller (a view). */
struct store_job {
    const char *id;
    const char *session_id;
    const char *status;              /* queued|running|succeeded|failed|timed_out|cancelled */
    const char *error;               /* NULL when none */
    const char *error_code;          /* joberr name, NULL when none */
    const char *prompt;
    const char *model;
    long        timeout_s;
    int         attempt;
    int64_t     created_usec;
    int64_t     started_usec;        /* 0: not started */
    int64_t     finished_usec;       /* 0: not finished */
    int64_t     cancel_requested_usec; /* 0: no cancel asked */
    int         has_outputs;         /* 0: output_files is null (never ran to an outcome) */
    const char *deleted_files;       /* JSON array text of the deleted paths, or NULL
                                      * (no outputs, or recorded before migration 012) */
    struct store_files outputs;
    int         has_exit_code;
    int         exit_code;
    const char *stdout_text;         /* NULL when none */
    const char *result;              /* NULL when none */
    const char *result_json;         /* JSON text, or NULL */
    int         has_usage;
    long long   tokens_input, tokens_output, tokens_reasoning;
    long long   tokens_cache_read, tokens_cache_write;
    double      cost_usd;
    int         has_gateway_usage;   /* 0: never ran through the gateway (or
                                      * before migration 015) */
    long long   gw_requests, gw_input_tokens, gw_output_tokens;
    double      gw_cost_usd;
    struct pg_result *res;
};
int store_job_get(struct db *db, const char *job_id, const char *key_id,
                  struct store_job *out);
void store_job_free(struct store_job *j);

/* Finds which job's folder holds a session's files for /download: the
 * given job (must belong to the session and have ended with outputs) or
 * the session's current job. Writes "" when the input files are current.
 * STORE_GONE when the given job's outputs were pruned (the janitor, past
 * SESSION_KEEP_JOBS). */
int store_job_folder(struct db *db, const char *session_id, const char *key_id,
                     const char *job_id, char folder_job[ID_HEX_LEN + 1]);

/* ---- Jobs: worker side (store_job.c) ------------------------------------ */

struct store_claim {
    char  job_id[ID_HEX_LEN + 1];
    char  session_id[ID_HEX_LEN + 1];
    char  lease_token[ID_HEX_LEN + 1];
    char  base_job_id[ID_HEX_LEN + 1];   /* "" = start from the input files */
    char  conv_job_id[ID_HEX_LEN + 1];   /* the session's conversation: the
                                            latest succeeded job's; "" = none */
    int   fresh;                         /* POST /job "fresh": true: do not
                                            continue it (migration 013) */
    char  model[256];
    char *prompt;                        /* malloc'd; store_claim_free() */
    long  timeout_s;
    int   attempt;                       /* 1 for a first run */
    /* The key's budgets (migration 015): -1 = not set (the KEY_MAX_*
     * default); spent_usd_today: gateway_cost_usd of the key's jobs that
     * finished this UTC day. */
    long long max_usd_per_day, max_tokens_per_job;
    double    spent_usd_today;
};

/*
 * Claims a queued job for worker_id: it becomes running with a fresh lease
 * token and a lease of lease_s seconds. STORE_NOT_FOUND when the job is not
 * runnable now: unknown, already running or ended (a duplicate delivery),
 * or an earlier job of its session is still queued or running.
 */
int store_job_claim(struct db *db, const char *job_id, const char *worker_id,
                    long lease_s, struct store_claim *out);
void store_claim_free(struct store_claim *c);

/* Extends the lease; *cancel is set when a client asked to stop the job
 * (cancel_requested_at). STORE_NOT_FOUND when the token is no longer the
 * job's (the janitor took it back): the caller must stop the run. */
int store_job_renew(struct db *db, const char *job_id, const char *token, long lease_s,
                    int *cancel);

struct store_outcome {
    const char  *status;         /* succeeded | failed | timed_out | cancelled */
    enum joberr  error_code;     /* JOBERR_NONE on success */
    const char  *error;          /* NULL when none */
    int          has_exit_code;
    int          exit_code;
    const char  *stdout_text;    /* NULL when none */
    const char  *result;         /* final text, or NULL */
    const char  *result_json;    /* JSON text, or NULL */
    int          has_usage;
    long long    tokens_input, tokens_output, tokens_reasoning;
    long long    tokens_cache_read, tokens_cache_write;
    double       cost_usd;
    const struct store_file *files;   /* output manifest */
    size_t       nfiles;
    int          has_changes;    /* changes and deleted are known */
    const char *const *changes;  /* files[i]'s change: added | modified | unchanged */
    const char *const *deleted;  /* paths the job started from that are gone */
    size_t       ndeleted;
    int          has_gateway;    /* the gateway's accounting (migration 015) */
    long long    gw_requests, gw_input_tokens, gw_output_tokens;
    double       gw_cost_usd;
};

/*
 * Records how a claimed job ended, fenced by its lease token, in one
 * transaction: the job row, its output manifest, the session's current
 * job (on success) and expiry, and the outbox row of the session's next
 * queued job. STORE_NOT_FOUND when the lease was lost: nothing changed.
 */
int store_job_finish(struct db *db, const struct store_claim *c,
                     const struct store_outcome *o);

/* Hands a claimed job back (worker shutting down): queued again, the
 * attempt not counted, published again through the outbox. */
int store_job_release(struct db *db, const struct store_claim *c);

/* ---- Live jobs (store_events.c) ------------------------------------------ */

/* One row of a job's event log (a view). kind: text|tool|step|status|error;
 * data: its JSON object as text. */
struct store_event {
    long long   seq;
    int         attempt;
    const char *kind;
    const char *data;
    int64_t     time_usec;
};
struct store_events {
    struct store_event *v;
    size_t              n;
    struct pg_result   *res;
};

/*
 * Appends n agent events (kinds[i], data[i]: a JSON object's text) to a
 * running job's log, fenced by its lease token; the log keeps at most
 * max_events rows (status rows always go in), the rest is dropped.
 * *stored gets how many went in. STORE_NOT_FOUND when the lease is gone.
 */
int store_events_add(struct db *db, const char *job_id, const char *token,
                     const char *const *kinds, const char *const *data, size_t n,
                     long max_events, long *stored);

/* Up to limit events of a job with seq > after, in order. The caller has
 * checked that the job is visible to its key (store_job_check). */
int store_events_list(struct db *db, const char *job_id, long long after, int limit,
                      struct store_events *out);
void store_events_free(struct store_events *e);

/*
 * POST /job/cancel: a queued job of key_id's becomes cancelled at once
 * (and the session's next job is published); a running one gets
 * cancel_requested_at and its worker is told (NOTIFY job_cancel). status
 * gets the status the job has afterwards (queued ones: "cancelled",
 * running ones: "running"). STORE_CONFLICT when it had already ended
 * (status says how), STORE_NOT_FOUND when not visible to the key.
 */
int store_job_cancel(struct db *db, const char *job_id, const char *key_id, char status[16]);

/* ---- Outbox (store_outbox.c) -------------------------------------------- */

/*
 * Takes up to max outbox rows FOR UPDATE SKIP LOCKED inside a transaction
 * the caller ends with store_outbox_end(). Rows of other relays are
 * skipped, so several relays never publish the same row at once.
 */
struct store_outbox {
    const char *const *job_ids;      /* n entries */
    size_t             n;
    struct pg_result  *res;
    const char       **ids;          /* internal: row ids */
};
int store_outbox_take(struct db *db, int max, struct store_outbox *out);
/* Marks row i published (deleted, jobs.published_at set). */
int store_outbox_done(struct db *db, const struct store_outbox *o, size_t i);
/* Commits (commit = 1) or rolls back, and frees the view. */
int store_outbox_end(struct db *db, struct store_outbox *o, int commit);

/* ---- Janitor (store_janitor.c) ------------------------------------------ */
/*
 * Each function handles at most limit rows with one bulk statement (the
 * lease reaping: one short transaction per job, for the lock order) and
 * says how many it handled; the janitor calls it again while a batch
 * comes back full.
 */

/*
 * Takes back up to limit running jobs whose lease expired (their worker
 * died): each goes back to queued (and to the outbox) while attempt <
 * max_attempts, else it fails with error_code worker_lost and its
 * session's next job is queued. Counts go to *requeued and *failed;
 * *found gets how many expired leases were looked at.
 */
int store_reap_expired_leases(struct db *db, long max_attempts, long limit,
                              long *requeued, long *failed, long *found);

/* Announces again (through the outbox) up to limit queued jobs at the
 * head of their session whose last announcement is older than
 * republish_s and that have no outbox row: the broker may have lost their
 * message. */
int store_republish_stale(struct db *db, long republish_s, long limit, long *count);

/* Marks up to limit expired sessions with no queued or running job as
 * expired (sessions locked by a request are left for later). *count gets
 * how many. */
int store_expire_sessions(struct db *db, long limit, long *count);

/* Ids of ended sessions whose folder is still on disk (up to limit),
 * oldest ended first, leaving out those whose removal failed and whose
 * next try (remove_after) is still to come; written to ids (ID_HEX_LEN+1
 * bytes each). *n gets the count. */
int store_sessions_to_remove(struct db *db, long limit,
                             char (*ids)[ID_HEX_LEN + 1], long *n);

/* Records in one statement that the folders of the n sessions ids[] are
 * gone (files_removed_at). *count gets how many rows changed. */
int store_sessions_files_removed(struct db *db, char (*ids)[ID_HEX_LEN + 1], long n,
                                 long *count);

/* Records that an ended session's folder failed to go: its next try waits
 * retry_s seconds, doubled for each earlier failure, at most a day.
 * *failures gets how many failures so far and *retry_in_s the wait. */
int store_session_remove_failed(struct db *db, const char *id, long retry_s,
                                long *failures, long *retry_in_s);

/* Deletes up to limit sessions that ended more than retention_s ago and
 * whose folder is gone (with their jobs and manifests). *count gets how
 * many sessions went. */
int store_prune_history(struct db *db, long retention_s, long limit, long *count);

/* A job and its session (ids). */
struct store_job_ref {
    char job_id[ID_HEX_LEN + 1];
    char session_id[ID_HEX_LEN + 1];
};

/* Marks pruned (jobs.outputs_pruned_at) up to limit ended jobs of active
 * sessions that have keep newer ended jobs, never a session's current job
 * nor a queued or running one, and writes them to out[0..*n): the caller
 * then removes their folders (sessions/<session>/jobs/<job>). From the
 * mark on, store_job_folder() answers STORE_GONE for them. */
int store_prune_job_outputs(struct db *db, long keep, long limit,
                            struct store_job_ref *out, long *n);

/* Takes the janitors' session-level advisory lock so one janitor leads a
 * pass at a time; STORE_CONFLICT at once when another janitor holds it. */
int store_janitor_lock(struct db *db);
void store_janitor_unlock(struct db *db);

/* ---- Quotas (store_quota.c; key settings in store_key.c) ---------------- */

/*
 * The per-key quotas. api_keys has one nullable column per quota, named as
 * store_quota_name() says (NULL: the KEY_MAX_* default of the environment);
 * "opencode-api keys set KEY_ID NAME=VALUE" changes them.
 */
enum store_quota {
    STORE_QUOTA_ACTIVE_SESSIONS,   /* max_active_sessions: active, unexpired sessions */
    STORE_QUOTA_QUEUED_JOBS,       /* max_queued_jobs: queued + running jobs */
    STORE_QUOTA_STORED_BYTES,      /* max_stored_bytes: input bytes of active sessions */
    STORE_QUOTA_COUNT_
};

/* The setting's name: its api_keys column and its name in "keys set". */
const char *store_quota_name(enum store_quota q);

/* The defaults (KEY_MAX_*) for keys whose column is NULL, by enum store_quota. */
struct store_quota_limits {
    int64_t max[STORE_QUOTA_COUNT_];
};

/* What a refused check found. */
struct store_quota_hit {
    enum store_quota quota;
    int64_t          limit;        /* the key's limit */
    int64_t          used;         /* its use before this request */
};

/*
 * Whether key_id may hold new_sessions (0 or 1) more sessions and
 * new_bytes more input bytes (store_quota_session: a new session, or an
 * edit that grows one) or queue one more job (store_quota_job): STORE_OK,
 * or STORE_LIMIT with *hit filled. These read; the create that follows
 * writes in its own transaction, so requests of one key that run at the
 * same moment can all pass the check: a key may overshoot a quota by its
 * concurrent requests minus one (each request holds one of API_THREADS,
 * so the overshoot is bounded).
 */
int store_quota_session(struct db *db, const char *key_id, const struct store_quota_limits *def,
                        int new_sessions, int64_t new_bytes, struct store_quota_hit *hit);
int store_quota_job(struct db *db, const char *key_id, const struct store_quota_limits *def,
                    struct store_quota_hit *hit);

/*
 * Gives the bootstrap key (API_KEY) its api_keys row, id "bootstrap", when
 * it has none, so its settings can be changed like any key's. Its
 * key_sha256 is unmatchable_hash (the hash of random bytes nobody holds):
 * the bootstrap key authenticates by API_KEY, never through this row.
 */
int store_key_ensure_bootstrap(struct db *db, const unsigned char unmatchable_hash[32]);

/* Key settings are rows of a table in store_key.c, each an integer column
 * of api_keys (the quotas first, by enum store_quota): adding one is a
 * migration and a row. The i-th one's name, or NULL past the last. */
#define STORE_KEY_SETTINGS_MAX 16
const char *store_key_setting_name(size_t i);

/* Sets setting name of the unrevoked key id to *value, or back to the
 * default (NULL). STORE_NOT_FOUND: no such key; STORE_CONFLICT: no such
 * setting, or a value the column refuses (negative). */
int store_key_set(struct db *db, const char *id, const char *name, const int64_t *value);

/* A key's settings, by store_key_setting_name() index: set[i] 0 means
 * NULL (the default applies). */
struct store_key_settings {
    int64_t value[STORE_KEY_SETTINGS_MAX];
    int     set[STORE_KEY_SETTINGS_MAX];
};
int store_key_settings_get(struct db *db, const char *id, struct store_key_settings *out);

/* Runs a trivial statement (readiness probe). STORE_OK when the database
 * answers, else STORE_UNAVAILABLE or STORE_ERROR. */
int store_ping(struct db *db);

/* Sends a notification (NOTIFY channel, payload); it is delivered when
 * this statement's transaction commits, after every notification of
 * transactions committed before it. STORE_OK or an error class. */
int store_notify(struct db *db, const char *channel, const char *payload);

/* ---- Metrics (store_metrics.c) ------------------------------------------ */

/* Queue depth and the outbox backlog, service-wide, for the gauges of
 * metrics_http.c (read at most every few seconds, never per scrape). */
struct store_queue_stats {
    long long outbox_backlog;       /* job_outbox rows */
    double    outbox_oldest_age_s;  /* age of the oldest row; 0 when none */
    long long jobs_queued;
    long long jobs_running;
    long long webhooks_pending;     /* neither delivered nor given up */
};
int store_queue_stats(struct db *db, struct store_queue_stats *out);

/* A claimed job's queue wait: started_at (its first claim) - created_at,
 * in seconds. STORE_NOT_FOUND when unknown or never claimed. */
int store_job_queue_wait(struct db *db, const char *job_id, double *wait_s);

/* ---- The api's status cache (store_cache.c) ----------------------------- */

/* What an ended job's status document was rendered from: a cached
 * document is only served while the database still says the same. */
struct store_job_version {
    char    status[16];
    int64_t finished_usec;           /* 0: not finished */
    int     pruned;                  /* outputs_pruned_at is set */
};

/* One query by primary keys: is job_id visible to key_id (as for
 * store_job_get), and its version. STORE_NOT_FOUND when not visible. */
int store_job_check(struct db *db, const char *job_id, const char *key_id,
                    struct store_job_version *out);

/* ---- Session views (store_views.c) -------------------------------------- */

/* One job in a list: its id, status and times (a view into res). */
struct store_job_row {
    const char *id;
    const char *status;
    const char *model;
    int64_t     created_usec;
    int64_t     started_usec;        /* 0: not started */
    int64_t     finished_usec;       /* 0: not finished */
};
struct store_job_rows {
    struct store_job_row *v;
    size_t                n;
    struct pg_result     *res;
    const char           *next_after; /* id to pass as after, NULL on the last page */
};
void store_job_rows_free(struct store_job_rows *r);

/* GET /session: an active, unexpired session owned by key_id with its
 * input files (by path) and all its jobs (by seq). A view. */
struct store_session_view {
    char               id[ID_HEX_LEN + 1];
    const char        *status;
    int64_t            created_usec;
    int64_t            expires_usec;
    long               ttl_s;
    struct store_files files;
    struct store_job_rows jobs;
    struct pg_result  *res;
};
int store_session_view(struct db *db, const char *id, const char *key_id,
                       struct store_session_view *out);
void store_session_view_free(struct store_session_view *v);

/*
 * GET /session/jobs: up to limit jobs of the session (visible as for
 * store_session_get) in submission order, after the job after (NULL: from
 * the first). STORE_NOT_FOUND: no such session; STORE_CONFLICT: after is
 * not a job of this session.
 */
int store_session_jobs_page(struct db *db, const char *id, const char *key_id, long limit,
                            const char *after, struct store_job_rows *out);

/* One session in GET /sessions (a view into res). */
struct store_session_row {
    const char *id;
    const char *status;
    int64_t     created_usec;
    int64_t     expires_usec;
    long        ttl_s;
    long        input_file_count;
    int64_t     input_bytes;
};
struct store_session_rows {
    struct store_session_row *v;
    size_t                    n;
    struct pg_result         *res;
    const char               *next_after; /* NULL on the last page */
};
/* GET /sessions: up to limit active, unexpired sessions of key_id in
 * (created_at, id) order, after the session after (NULL: from the
 * first). STORE_CONFLICT: after is not a session of this key. */
int store_sessions_page(struct db *db, const char *key_id, long limit, const char *after,
                        struct store_session_rows *out);
void store_session_rows_free(struct store_session_rows *r);

/* ---- Idempotency keys (store_idempotency.c) ----------------------------- */

/* The scope and body of a request that carries an Idempotency-Key. */
struct store_idem_req {
    const char *key_id;
    const char *method;
    const char *path;                /* path and query */
    const char *idem_key;
    const char *body_sha256;         /* 64 hex digits */
};

/* What store_idem_reserve() found when the key was already taken. */
struct store_idem_entry {
    char   body_sha256[STORE_SHA256_HEX + 1];
    int    completed;                /* 0: the first request is in flight */
    int    status;
    char  *body;                     /* malloc'd (completed only); free() */
    size_t body_len;
};

/*
 * Reserves the scope for this request: inserts an in-flight row, or takes
 * over a row older than ttl_s (expired) or in flight for longer than
 * abandon_s (its API crashed). STORE_OK: reserved, run the request.
 * STORE_CONFLICT: the scope is taken; *out tells by what (free its body).
 */
int store_idem_reserve(struct db *db, const struct store_idem_req *q, long ttl_s,
                       long abandon_s, struct store_idem_entry *out);

/* Stores the answer of a reserved request (status, body bytes). */
int store_idem_complete(struct db *db, const struct store_idem_req *q, int status,
                        const char *body, size_t len);

/* Deletes a reserved, uncompleted row (the answer is not kept: 5xx). */
int store_idem_release(struct db *db, const struct store_idem_req *q);

/* Janitor: deletes up to limit rows older than ttl_s. *count: how many. */
int store_idem_purge(struct db *db, long ttl_s, long limit, long *count);

/* ---- Webhooks (store_webhook.c) ----------------------------------------- */
/*
 * A job with a webhook_url gets a webhook_deliveries row (the trigger of
 * migration 009) when it ends; the janitor takes due rows, POSTs, and
 * records each attempt. Secrets are in webhook_secrets, a table
 * dashboards must not be granted.
 */

/* "whsec_" + base64; room for any secret webhook_secret_valid() accepts. */
#define STORE_WEBHOOK_SECRET_MAX 128

/* Gives the unrevoked key key_id its first secret, or rotates it (the old
 * one becomes previous_secret, rotated_at now). STORE_NOT_FOUND: no such
 * key. */
int store_webhook_secret_set(struct db *db, const char *key_id, const char *secret);

/* The key's current secret and, within grace_s of its last rotation, the
 * previous one ("" otherwise). STORE_NOT_FOUND when the key has none. */
int store_webhook_secrets_get(struct db *db, const char *key_id, long grace_s,
                              char current[STORE_WEBHOOK_SECRET_MAX],
                              char previous[STORE_WEBHOOK_SECRET_MAX]);

/* Sets (url) or clears (NULL) the key's default webhook URL; the caller
 * checked it (webhook_url_valid). STORE_NOT_FOUND: no unrevoked key.
 * _get: *url malloc'd, NULL when none. */
int store_key_webhook_url_set(struct db *db, const char *key_id, const char *url);
int store_key_webhook_url_get(struct db *db, const char *key_id, char **url);

/* A delivery taken for one attempt. */
struct store_webhook_due {
    char      id[40];                 /* msg_ + 32 hex: the webhook-id */
    char      job_id[ID_HEX_LEN + 1];
    char      key_id[STORE_KEY_ID_MAX];
    char     *url;                    /* malloc'd */
    int       attempt;                /* 1 for the first */
    long long timestamp;              /* database clock, unix seconds */
};

/* Takes the oldest due delivery (FOR UPDATE SKIP LOCKED) and moves its
 * next_attempt_at lease_s ahead, so no other janitor takes it while it is
 * sent. STORE_NOT_FOUND when none is due. */
int store_webhook_take(struct db *db, long lease_s, struct store_webhook_due *out);
void store_webhook_due_free(struct store_webhook_due *d);

/* How an attempt went, and the retry policy. */
struct store_webhook_result {
    int         ok;                   /* a 2xx answer */
    int         http_status;          /* 0: no answer */
    const char *error;                /* why it failed (NULL when ok) */
    long        retry_base_s;         /* first wait; doubles per attempt */
    long        retry_max_s;          /* ... up to this */
    long        retry_window_s;       /* no attempt later than created + this */
};

/* Records the attempt: delivered, or the next attempt scheduled, or given
 * up when it would fall outside the window (*gave_up 1). *retry_in_s gets
 * the wait. STORE_NOT_FOUND when the row is gone or a newer attempt took
 * it. */
int store_webhook_record(struct db *db, const struct store_webhook_due *d,
                         const struct store_webhook_result *r, int *gave_up, long *retry_in_s);


/* ---- A session's files (store_files.c) ---------------------------------- */

/* As store_session_create, recording each file's mode (f.mode: 0100755 or
 * 0100644; an uploaded archive's execute bits). */
int store_files_session_create(struct db *db, const struct store_new_session *s,
                               struct store_session *out);

/* The session's input manifest (session_files), ordered by path, with
 * modes; sha256 is NULL (a view: store_files_free()). */
int store_session_input_files(struct db *db, const char *session_id, struct store_files *out);

/* What /download/archive streams: the folder (as store_job_folder: job_id,
 * or the session's current files when NULL; "" = the input folder) and its
 * manifest (a view). Same answers as store_job_folder. */
int store_files_current(struct db *db, const char *session_id, const char *key_id,
                        const char *job_id, char folder_job[ID_HEX_LEN + 1],
                        struct store_files *out);

/*
 * PUT and DELETE /session/files, one transaction on db:
 * store_files_edit_begin() locks the active session owned by key_id (the
 * store.h lock order) and answers STORE_CONFLICT while a job of it is
 * queued or running (submitting or claiming a job waits for the lock), or
 * STORE_NOT_FOUND; on STORE_OK the transaction stays open with the lock
 * held, current_job gets the job whose outputs are the current files
 * ("" = the input folder) and *input_bytes the session's input_bytes (what
 * its quota counts now). store_files_edit_record() replaces the
 * session's manifest with files[0..n) (the new current files, which the
 * caller has put in the input folder), sets input_file_count and
 * input_bytes to their totals, current_job_id to NULL and files_edited_at.
 * store_files_edit_end() commits (commit = 1) or rolls back; after an
 * error of the others, the caller ends with commit = 0.
 */
int store_files_edit_begin(struct db *db, const char *session_id, const char *key_id,
                           char current_job[ID_HEX_LEN + 1], int64_t *input_bytes);
int store_files_edit_record(struct db *db, const char *session_id,
                            const struct store_file *files, size_t n, int64_t total_bytes);
int store_files_edit_end(struct db *db, int commit);

/* GET /session/results after an edit (current_job_id NULL, files edited):
 * the latest succeeded job (NULL when none) and its result, and the
 * edited current files (the input manifest). STORE_NOT_FOUND when the
 * session is not in that state (or not visible): use
 * store_session_results. */
int store_files_edited_results(struct db *db, const char *session_id, const char *key_id,
                               struct store_results *out);

/* ---- Job diffs (store_diff.c) ------------------------------------------- */

/* Stores job_id's diff (len bytes, any bytes; size: what git wrote,
 * truncated: cut at the cap), fenced by the attempt's lease token: a
 * stale attempt stores nothing (STORE_NOT_FOUND). Replaces an earlier
 * attempt's row. */
int store_diff_put(struct db *db, const char *job_id, const char *token, const char *diff,
                   size_t len, int64_t size, int truncated);

/* A job's diff for GET /job/diff: the job must be owned by key_id
 * (else STORE_NOT_FOUND). *status gets the job's status (a view into
 * out->res); *found 0 when no diff is stored (still running, no outputs,
 * or recorded before migration 012). data is malloc'd (len bytes). */
struct store_diff {
    const char *status;
    int         found;
    char       *data;
    size_t      len;
    int         truncated;
    int64_t     size_bytes;
    struct pg_result *res;
};
int store_diff_get(struct db *db, const char *job_id, const char *key_id,
                   struct store_diff *out);
void store_diff_free(struct store_diff *d);

#endif
