/*
 * store.h - every SQL statement the service runs, behind one interface.
 *
 * HTTP handlers, the worker and the janitor call these functions and never
 * see SQL or libpq types. Each function runs on the caller's connection
 * (one per thread) and returns an enum store_rc.
 *
 * Locking rule that keeps a session's jobs in order: every transaction
 * that changes which job of a session may run next (submitting a job,
 * finishing one, failing one the janitor took back, deleting the session)
 * first locks the session row FOR UPDATE, then the job rows.
 */
#ifndef OC_STORE_H
#define OC_STORE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "ids.h"

struct pg_conn;

enum store_rc {
    STORE_OK          = 0,
    STORE_NOT_FOUND   = -1,  /* no such row, or not visible to this key */
    STORE_CONFLICT    = -2,  /* the row's state forbids the change */
    STORE_UNAVAILABLE = -3,  /* database down or connection lost */
    STORE_ERROR       = -4,  /* unexpected database error (logged) */
};

#define STORE_KEY_ID_MAX 64

/* ---- API keys (store_key.c) --------------------------------------------- */

/* Finds the unrevoked key with this SHA-256 and copies its id. */
int store_key_lookup(struct pg_conn *db, const unsigned char hash[32],
                     char key_id[STORE_KEY_ID_MAX]);
int store_key_create(struct pg_conn *db, const char *id, const char *name,
                     const unsigned char hash[32]);
/* Array of {id, name, created_at, revoked_at}; caller frees. NULL + *rc on error. */
cJSON *store_key_list(struct pg_conn *db, int *rc);
/* STORE_NOT_FOUND when no unrevoked key has this id. */
int store_key_revoke(struct pg_conn *db, const char *id);

/* ---- Sessions (store_session.c) ----------------------------------------- */

struct store_session {
    char    id[ID_HEX_LEN + 1];
    char    current_job_id[ID_HEX_LEN + 1];   /* "" when none succeeded yet */
    int64_t created_usec;
    int64_t expires_usec;
};

/*
 * Records a new session whose files are already on disk. files_json is a
 * JSON array of {path, size_bytes} (the input manifest). Fills
 * created/expires from the database clock.
 */
int store_session_create(struct pg_conn *db, const char *id, const char *key_id,
                         long ttl_s, const char *files_json, long file_count,
                         int64_t total_bytes, struct store_session *out);

/* Loads an active, unexpired session owned by key_id; anything else is
 * STORE_NOT_FOUND. */
int store_session_get(struct pg_conn *db, const char *id, const char *key_id,
                      struct store_session *out);

/*
 * Ends a session on DELETE: queued jobs become cancelled, the row becomes
 * deleted. STORE_CONFLICT while one of its jobs runs (the agent is
 * writing into its folder).
 */
int store_session_delete(struct pg_conn *db, const char *id, const char *key_id);

/* Notes that an ended session's folder is gone from disk. */
int store_session_files_removed(struct pg_conn *db, const char *id);

/* GET /session/results body for an active session owned by key_id. */
cJSON *store_session_results(struct pg_conn *db, const char *id, const char *key_id,
                             int *rc);

/* ---- Jobs: API side (store_job.c) --------------------------------------- */

/*
 * Queues a job on an active session owned by key_id and extends the
 * session's expiry to at least now + its ttl (as the seed did). When no
 * earlier job of the session is queued or running, an outbox row is
 * written in the same transaction so the job gets published; otherwise
 * the job is published when its predecessor ends.
 */
int store_job_create(struct pg_conn *db, const char *job_id, const char *session_id,
                     const char *key_id, const char *prompt, const char *model,
                     long timeout_s, int64_t *created_usec);

/* GET /job/status body for a job whose session belongs to key_id. */
cJSON *store_job_status(struct pg_conn *db, const char *job_id, const char *key_id,
                        int *rc);

/* Finds which job's folder holds a session's files for /download: the
 * given job (must belong to the session) or the session's current job.
 * Writes "" when the input files are current. */
int store_job_folder(struct pg_conn *db, const char *session_id, const char *key_id,
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
int store_job_claim(struct pg_conn *db, const char *job_id, const char *worker_id,
                    long lease_s, struct store_claim *out);
void store_claim_free(struct store_claim *c);

/* Extends the lease. STORE_NOT_FOUND when the token is no longer the job's
 * (the janitor took it back): the caller must stop the run. */
int store_job_renew(struct pg_conn *db, const char *job_id, const char *token,
                    long lease_s);

struct store_outcome {
    const char *status;          /* succeeded | failed | timed_out */
    const char *error;           /* NULL when none */
    int         has_exit_code;
    int         exit_code;
    const char *stdout_text;     /* NULL when none */
    const char *result;          /* final text, or NULL */
    const char *result_json;     /* JSON text, or NULL */
    int         has_usage;
    long long   tokens_input, tokens_output, tokens_reasoning;
    long long   tokens_cache_read, tokens_cache_write;
    double      cost_usd;
    const char *files_json;      /* JSON array of {path, size_bytes, sha256} */
};

/*
 * Records how a claimed job ended, fenced by its lease token, in one
 * transaction: the job row, its output manifest, the session's current
 * job (on success) and expiry, and the outbox row of the session's next
 * queued job. STORE_NOT_FOUND when the lease was lost: nothing changed.
 */
int store_job_finish(struct pg_conn *db, const struct store_claim *c,
                     const struct store_outcome *o);

/* Hands a claimed job back (worker shutting down): queued again, the
 * attempt not counted, published again through the outbox. */
int store_job_release(struct pg_conn *db, const struct store_claim *c);

/* ---- Janitor (store_janitor.c) ------------------------------------------ */

/*
 * Takes back running jobs whose lease expired (their worker died): each
 * goes back to queued (and to the outbox) while attempt < max_attempts,
 * else it fails with an error saying so and its session's next job is
 * queued. Counts go to *requeued and *failed.
 */
int store_reap_expired_leases(struct pg_conn *db, long max_attempts, long *requeued,
                              long *failed);

/* Announces again (through the outbox) queued jobs at the head of their
 * session whose last announcement is older than republish_s and that
 * have no outbox row: the broker may have lost their message. */
int store_republish_stale(struct pg_conn *db, long republish_s, long *count);

/* Marks up to limit expired sessions with no queued or running job as
 * expired. *count gets how many. */
int store_expire_sessions(struct pg_conn *db, long limit, long *count);

/* Ids of ended sessions whose folder is still on disk (up to limit),
 * appended to ids (ID_HEX_LEN+1 bytes each). *n gets the count. */
int store_sessions_to_remove(struct pg_conn *db, long limit,
                             char (*ids)[ID_HEX_LEN + 1], long *n);

/* Deletes sessions that ended more than retention_s ago (with their jobs
 * and manifests). *count gets how many sessions went. */
int store_prune_history(struct pg_conn *db, long retention_s, long *count);

/* Takes the janitors' session-level advisory lock so one janitor leads a
 * pass at a time; STORE_CONFLICT at once when another janitor holds it. */
int store_janitor_lock(struct pg_conn *db);
void store_janitor_unlock(struct pg_conn *db);

#endif
