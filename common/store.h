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

/* Loads an active, unexpired session owned by key_id; anything else is
 * STORE_NOT_FOUND. */
int store_session_get(struct db *db, const char *id, const char *key_id,
                      struct store_session *out);

/*
 * Ends a session on DELETE: queued jobs become cancelled, the row becomes
 * deleted. STORE_CONFLICT while one of its jobs runs (the agent is
 * writing into its folder).
 */
int store_session_delete(struct db *db, const char *id, const char *key_id);

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
    int         has_outputs;         /* 0: output_files is null (not ended, or cancelled) */
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
    char  model[256];
    char *prompt;                        /* malloc'd; store_claim_free() */
    long  timeout_s;
    int   attempt;                       /* 1 for a first run */
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

/* Extends the lease. STORE_NOT_FOUND when the token is no longer the job's
 * (the janitor took it back): the caller must stop the run. */
int store_job_renew(struct db *db, const char *job_id, const char *token, long lease_s);

struct store_outcome {
    const char  *status;         /* succeeded | failed | timed_out */
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
 * Whether key_id may create one more session holding new_bytes input bytes
 * (store_quota_session) or queue one more job (store_quota_job): STORE_OK,
 * or STORE_LIMIT with *hit filled. These read; the create that follows
 * writes in its own transaction, so requests of one key that run at the
 * same moment can all pass the check: a key may overshoot a quota by its
 * concurrent requests minus one (each request holds one of API_THREADS,
 * so the overshoot is bounded).
 */
int store_quota_session(struct db *db, const char *key_id, const struct store_quota_limits *def,
                        int64_t new_bytes, struct store_quota_hit *hit);
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

/* ---- Metrics (store_metrics.c) ------------------------------------------ */

/* Queue depth and the outbox backlog, service-wide, for the gauges of
 * metrics_http.c (read at most every few seconds, never per scrape). */
struct store_queue_stats {
    long long outbox_backlog;       /* job_outbox rows */
    double    outbox_oldest_age_s;  /* age of the oldest row; 0 when none */
    long long jobs_queued;
    long long jobs_running;
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

#endif
