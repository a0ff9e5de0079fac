/*
 * store_job.c - jobs, for the API and the workers (see store.h), and the
 * output manifests (struct store_files) both sides read.
 *
 * Ownership: struct store_job and struct store_files are views into their
 * results (store_job_free, store_files_free); struct store_claim owns its
 * prompt (store_claim_free). Threading: runs on the caller's struct db.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* ---- Statements --------------------------------------------------------- */

/*
 * Lock the session: a worker finishing its previous job takes the same
 * lock, so exactly one of us sees the other and publishes this job. The
 * busy check is a second statement: under READ COMMITTED it gets a fresh
 * snapshot taken after the lock was granted, so it sees the outcome a
 * finishing worker committed while we waited (a subquery of the locking
 * statement would read the statement's older snapshot and miss it).
 */
DB_STMT(st_job_create_lock, "job.create.lock", 2,
    "SELECT 1 FROM sessions WHERE id = $1 AND status = 'active' AND expires_at > now()"
    " AND api_key_id = $2 FOR UPDATE");
DB_STMT(st_job_create_busy, "job.create.busy", 1,
    "SELECT EXISTS (SELECT 1 FROM jobs WHERE session_id = $1"
    "               AND status IN ('queued', 'running')) AS busy");
/* webhook_url ($6): the request's, else the key's default (migration 009);
 * fresh ($7): migration 013. */
DB_STMT(st_job_create_insert, "job.create.insert", 7,
    "INSERT INTO jobs (id, session_id, prompt, model, timeout_s, webhook_url, fresh)"
    " VALUES ($1, $2, $3, $4, $5, coalesce($6, (SELECT k.webhook_url FROM sessions s"
    " JOIN api_keys k ON k.id = s.api_key_id WHERE s.id = $2)), $7::boolean)"
    " RETURNING " STORE_USEC("created_at") " AS created");
DB_STMT(st_job_create_extend, "job.create.extend", 1,
    "UPDATE sessions SET expires_at = greatest(expires_at,"
    " now() + ttl_seconds * interval '1 second') WHERE id = $1");
DB_STMT(st_job_create_outbox, "job.create.outbox", 1,
    "INSERT INTO job_outbox (job_id) VALUES ($1)");
DB_STMT(st_job_get, "job.get", 2,
    "SELECT j.id, j.session_id, j.status, j.error, j.error_code, j.prompt, j.model,"
    " j.timeout_s, j.attempt, j.exit_code, j.stdout, j.result,"
    " j.result_json::text AS result_json,"
    " j.tokens_input, j.tokens_output, j.tokens_reasoning, j.tokens_cache_read,"
    " j.tokens_cache_write, j.cost_usd,"
    " " STORE_USEC("j.created_at") " AS created,"
    " " STORE_USEC("j.started_at") " AS started,"
    " " STORE_USEC("j.finished_at") " AS finished,"
    " " STORE_USEC("j.cancel_requested_at") " AS cancel_requested,"
    " j.has_outputs, array_to_json(j.deleted_files)::text AS deleted_files,"
    " j.gateway_requests, j.gateway_input_tokens, j.gateway_output_tokens,"
    " j.gateway_cost_usd "
    "FROM jobs j JOIN sessions s ON s.id = j.session_id "
    "WHERE j.id = $1 AND s.api_key_id = $2");
DB_STMT(st_job_files, "job.files", 1,
    "SELECT path, size_bytes, sha256, mode, change FROM job_files WHERE job_id = $1"
    " ORDER BY path");
/* A job's own outputs exist once a worker recorded it (has_outputs),
 * until the janitor prunes them (outputs_pruned_at). */
DB_STMT(st_job_folder, "job.folder", 3,
    "SELECT j.id, (j.outputs_pruned_at IS NOT NULL) AS pruned"
    " FROM jobs j JOIN sessions s ON s.id = j.session_id "
    "WHERE s.id = $1 AND s.status = 'active' AND s.expires_at > now()"
    " AND s.api_key_id = $2 AND j.id = $3 AND j.finished_at IS NOT NULL"
    " AND j.has_outputs");
DB_STMT(st_session_folder, "session.folder", 2,
    "SELECT coalesce(current_job_id, '') AS id FROM sessions "
    "WHERE id = $1 AND status = 'active' AND expires_at > now()"
    " AND api_key_id = $2");
/*
 * A claim locks the session first (the store.h order: session, then
 * jobs), so it serialises with DELETE /session: a session deleted before
 * the lock is granted is re-checked under it and not found (live is
 * false or no row); one deleted after waits for this claim and sees the
 * job running (409).
 */
DB_STMT(st_job_claim_lock, "job.claim.lock", 1,
    "SELECT s.id, (s.status = 'active' AND s.expires_at > now()) AS live,"
    " s.status = 'active' AS active "
    "FROM jobs j JOIN sessions s ON s.id = j.session_id WHERE j.id = $1 FOR UPDATE OF s");
/* An active session that expired while its jobs waited: they can never
 * run (the API shows the session as gone), so they are cancelled and the
 * janitor can expire it. Only while nothing of it runs. */
DB_STMT(st_job_claim_cancel, "job.claim.cancel", 1,
    "UPDATE jobs SET status = 'cancelled', finished_at = now(),"
    " error = 'cancelled: the session expired before the job ran',"
    " error_code = 'cancelled' "
    "WHERE session_id = $1 AND status = 'queued' AND NOT EXISTS"
    " (SELECT 1 FROM jobs r WHERE r.session_id = $1 AND r.status = 'running')");
/*
 * Under the session lock, in a statement of its own (a fresh snapshot):
 * the row lock of FOR UPDATE makes a concurrent claim of the same job
 * wait, then re-check status = 'queued' and find nothing. A job waits
 * while an earlier job of its session is unfinished; it is published
 * again when that one ends.
 */
DB_STMT(st_job_claim, "job.claim", 4,
    "WITH c AS ("
    "  SELECT j.id FROM jobs j WHERE j.id = $1 AND j.status = 'queued'"
    "  AND NOT EXISTS (SELECT 1 FROM jobs p WHERE p.session_id = j.session_id"
    "                  AND p.seq < j.seq AND p.status IN ('queued', 'running'))"
    "  FOR UPDATE)"
    "UPDATE jobs j SET status = 'running', attempt = j.attempt + 1, worker_id = $2,"
    " lease_token = $3, lease_expires_at = now() + $4::int * interval '1 second',"
    " started_at = coalesce(j.started_at, now()) "
    "FROM c, sessions s WHERE j.id = c.id AND s.id = j.session_id "
    "RETURNING j.id, j.session_id, j.prompt, j.model, j.timeout_s, j.attempt,"
    " coalesce(s.current_job_id, '') AS base, j.fresh,"
    /* The conversation to continue (migration 013): the latest succeeded
     * job's, whatever became of the files since. */
    " coalesce((SELECT p.id FROM jobs p"
    "  WHERE p.session_id = j.session_id AND p.status = 'succeeded'"
    "  ORDER BY p.seq DESC LIMIT 1), '') AS conv_base");
/* The claimed job's key's budgets and what its other jobs spent through
 * the gateway this UTC day (migration 015). */
DB_STMT(st_job_claim_budget, "job.claim.budget", 1,
    "SELECT k.max_usd_per_day, k.max_tokens_per_job,"
    " coalesce((SELECT sum(p.gateway_cost_usd) FROM jobs p"
    "  JOIN sessions ps ON ps.id = p.session_id"
    "  WHERE ps.api_key_id = k.id AND p.id <> $1 AND p.finished_at >="
    "   (date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')), 0) AS spent "
    "FROM jobs j JOIN sessions s ON s.id = j.session_id JOIN api_keys k ON k.id = s.api_key_id "
    "WHERE j.id = $1");
DB_STMT(st_job_renew, "job.renew", 3,
    "UPDATE jobs SET lease_expires_at = now() + $3::int * interval '1 second' "
    "WHERE id = $1 AND lease_token = $2 AND status = 'running'"
    " RETURNING cancel_requested_at IS NOT NULL AS cancel");
DB_STMT(st_job_finish_lock, "job.finish.lock", 1, LOCK_SESSION_SQL);
DB_STMT(st_job_finish_gateway, "job.finish.gateway", 5,
    "UPDATE jobs SET gateway_requests = $2::bigint, gateway_input_tokens = $3::bigint,"
    " gateway_output_tokens = $4::bigint, gateway_cost_usd = $5::float8 WHERE id = $1");
DB_STMT(st_job_finish_update, "job.finish.update", 15,
    "UPDATE jobs SET status = $3, error = $4, exit_code = $5::int, stdout = $6,"
    " result = $7, result_json = $8::jsonb, tokens_input = $9::bigint,"
    " tokens_output = $10::bigint, tokens_reasoning = $11::bigint,"
    " tokens_cache_read = $12::bigint, tokens_cache_write = $13::bigint,"
    " cost_usd = $14::float8, error_code = $15, finished_at = now(), has_outputs = true,"
    " lease_token = NULL, lease_expires_at = NULL "
    "WHERE id = $1 AND lease_token = $2 AND status = 'running'");
DB_STMT(st_job_finish_files, "job.finish.files", 6,
    "INSERT INTO job_files (job_id, path, size_bytes, sha256, mode, change)"
    " SELECT $1, u.path, u.size_bytes, u.sha256, u.mode, u.change"
    " FROM unnest($2::text[], $3::bigint[], $4::text[], $5::int[], $6::text[])"
    " AS u(path, size_bytes, sha256, mode, change)");
/* What the agent deleted (migration 012): only when the worker knew the
 * files the job started from; else the column stays NULL. */
DB_STMT(st_job_finish_deleted, "job.finish.deleted", 2,
    "UPDATE jobs SET deleted_files = $2::text[] WHERE id = $1");
DB_STMT(st_job_finish_session, "job.finish.session", 3,
    "UPDATE sessions SET current_job_id = CASE WHEN $3 = 'succeeded' THEN $2"
    " ELSE current_job_id END,"
    " expires_at = greatest(expires_at, now() + ttl_seconds * interval '1 second') "
    "WHERE id = $1");
DB_STMT(st_job_finish_next, "job.finish.next", 1, ENQUEUE_NEXT_SQL);
/* One statement, so the job is never queued without its outbox row. */
DB_STMT(st_job_release, "job.release", 2,
    "WITH r AS ("
    "  UPDATE jobs SET status = 'queued', attempt = greatest(attempt - 1, 0),"
    "  lease_token = NULL, lease_expires_at = NULL "
    "  WHERE id = $1 AND lease_token = $2 AND status = 'running' RETURNING id)"
    "INSERT INTO job_outbox (job_id) SELECT id FROM r");

/* ---- Manifests ---------------------------------------------------------- */

int store_job_files(struct db *db, const char *job_id, struct store_files *out)
{
    memset(out, 0, sizeof(*out));
    const char *p[] = { job_id };
    int rc;
    struct pg_result *res = db_run(db, &st_job_files, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    out->res = res;
    out->n = (size_t)db_rows(res);
    out->v = xcalloc(out->n, sizeof(*out->v));
    out->change = xcalloc(out->n + 1, sizeof(*out->change));
    for (int i = 0; i < (int)out->n; i++) {
        out->v[i].path = db_get(res, i, "path");
        out->v[i].size_bytes = db_get_ll(res, i, "size_bytes");
        out->v[i].sha256 = db_get(res, i, "sha256");
        out->v[i].mode = (unsigned)db_get_ll(res, i, "mode");
        out->change[i] = db_get(res, i, "change");
    }
    return STORE_OK;
}

void store_files_free(struct store_files *f)
{
    db_clear(f->res);
    free(f->change);
    free(f->v);
    memset(f, 0, sizeof(*f));
}

/* ---- API side ----------------------------------------------------------- */

int store_job_create(struct db *db, const struct store_new_job *j, int64_t *created_usec)
{
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%ld", j->timeout_s);
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);

    const char *ps[] = { j->session_id, j->key_id };
    struct pg_result *res = db_run(db, &st_job_create_lock, ps, &rc);
    if (res == NULL)
        goto end;
    if (db_rows(res) != 1) {
        db_clear(res);
        db_rollback(db);
        return STORE_NOT_FOUND;
    }
    db_clear(res);
    const char *pb[] = { j->session_id };
    res = db_run(db, &st_job_create_busy, pb, &rc);
    if (res == NULL)
        goto end;
    int busy = db_get_bool(res, 0, "busy");
    db_clear(res);

    const char *pj[] = { j->job_id, j->session_id, j->prompt, j->model, timeout,
                         j->webhook_url, j->fresh ? "true" : "false" };
    res = db_run(db, &st_job_create_insert, pj, &rc);
    if (res == NULL)
        goto end;
    *created_usec = db_get_ll(res, 0, "created");
    db_clear(res);

    if (store_step(db, &st_job_create_extend, ps, &rc))
        goto end;
    if (!busy && store_step(db, &st_job_create_outbox, pj, &rc))
        goto end;
end:
    return store_tx_end(db, rc);
}

static void store_fill_job(struct pg_result *res, struct store_job *out)
{
    out->res = res;
    out->id = db_get(res, 0, "id");
    out->session_id = db_get(res, 0, "session_id");
    out->status = db_get(res, 0, "status");
    out->error = db_get(res, 0, "error");
    out->error_code = db_get(res, 0, "error_code");
    out->prompt = db_get(res, 0, "prompt");
    out->model = db_get(res, 0, "model");
    out->timeout_s = (long)db_get_ll(res, 0, "timeout_s");
    out->attempt = (int)db_get_ll(res, 0, "attempt");
    out->created_usec = db_get_ll(res, 0, "created");
    out->started_usec = db_get_ll(res, 0, "started");
    out->finished_usec = db_get_ll(res, 0, "finished");
    out->has_outputs = db_get_bool(res, 0, "has_outputs");
    out->deleted_files = out->has_outputs ? db_get(res, 0, "deleted_files") : NULL;
    out->cancel_requested_usec = db_get_ll(res, 0, "cancel_requested");
    out->has_exit_code = db_get(res, 0, "exit_code") != NULL;
    out->exit_code = (int)db_get_ll(res, 0, "exit_code");
    out->stdout_text = db_get(res, 0, "stdout");
    out->result = db_get(res, 0, "result");
    out->result_json = db_get(res, 0, "result_json");
    out->has_usage = db_get(res, 0, "tokens_input") != NULL;
    out->tokens_input = db_get_ll(res, 0, "tokens_input");
    out->tokens_output = db_get_ll(res, 0, "tokens_output");
    out->tokens_reasoning = db_get_ll(res, 0, "tokens_reasoning");
    out->tokens_cache_read = db_get_ll(res, 0, "tokens_cache_read");
    out->tokens_cache_write = db_get_ll(res, 0, "tokens_cache_write");
    const char *cost = db_get(res, 0, "cost_usd");
    out->cost_usd = cost ? strtod(cost, NULL) : 0.0;
    out->has_gateway_usage = db_get(res, 0, "gateway_requests") != NULL;
    out->gw_requests = db_get_ll(res, 0, "gateway_requests");
    out->gw_input_tokens = db_get_ll(res, 0, "gateway_input_tokens");
    out->gw_output_tokens = db_get_ll(res, 0, "gateway_output_tokens");
    const char *gcost = db_get(res, 0, "gateway_cost_usd");
    out->gw_cost_usd = gcost ? strtod(gcost, NULL) : 0.0;
}

int store_job_get(struct db *db, const char *job_id, const char *key_id,
                  struct store_job *out)
{
    memset(out, 0, sizeof(*out));
    const char *p[] = { job_id, key_id };
    int rc;
    struct pg_result *res = store_row(db, &st_job_get, p, &rc);
    if (res == NULL)
        return rc;
    store_fill_job(res, out);
    if (out->has_outputs) {
        rc = store_job_files(db, out->id, &out->outputs);
        if (rc != STORE_OK) {
            store_job_free(out);
            return rc;
        }
    }
    return STORE_OK;
}

void store_job_free(struct store_job *j)
{
    store_files_free(&j->outputs);
    db_clear(j->res);
    memset(j, 0, sizeof(*j));
}

int store_job_folder(struct db *db, const char *session_id, const char *key_id,
                     const char *job_id, char folder_job[ID_HEX_LEN + 1])
{
    int rc;
    struct pg_result *res;
    if (job_id != NULL) {
        const char *p[] = { session_id, key_id, job_id };
        res = db_run(db, &st_job_folder, p, &rc);
    } else {
        const char *p[] = { session_id, key_id };
        res = db_run(db, &st_session_folder, p, &rc);
    }
    if (res == NULL)
        return store_from_db(rc);
    int found = db_rows(res) == 1;
    int pruned = found && job_id != NULL && db_get_bool(res, 0, "pruned");
    if (found)
        store_copy(folder_job, ID_HEX_LEN + 1, res, 0, "id");
    db_clear(res);
    if (pruned)
        return STORE_GONE;
    return found ? STORE_OK : STORE_NOT_FOUND;
}

/* ---- Worker side -------------------------------------------------------- */

void store_claim_free(struct store_claim *c)
{
    free(c->prompt);
    c->prompt = NULL;
}

/* Locks the session of job_id and checks it may run jobs: 1 when it may,
 * 0 when not (deleted, or expired: then its waiting jobs are cancelled),
 * or -1 with *rc set. Inside the caller's transaction. */
static int store_claim_session(struct db *db, const char *job_id, int *rc)
{
    const char *p[] = { job_id };
    struct pg_result *res = db_run(db, &st_job_claim_lock, p, rc);
    if (res == NULL)
        return -1;
    if (db_rows(res) != 1) {
        db_clear(res);
        return 0;
    }
    int live = db_get_bool(res, 0, "live");
    int active = db_get_bool(res, 0, "active");
    char sid[ID_HEX_LEN + 1];
    store_copy(sid, sizeof(sid), res, 0, "id");
    db_clear(res);
    if (live)
        return 1;
    const char *ps[] = { sid };
    if (active && store_step(db, &st_job_claim_cancel, ps, rc))
        return -1;
    return 0;
}

/* Reads the claimed job's row into out. */
static void store_fill_claim(struct pg_result *res, struct store_claim *out)
{
    store_copy(out->job_id, sizeof(out->job_id), res, 0, "id");
    store_copy(out->session_id, sizeof(out->session_id), res, 0, "session_id");
    store_copy(out->model, sizeof(out->model), res, 0, "model");
    store_copy(out->base_job_id, sizeof(out->base_job_id), res, 0, "base");
    store_copy(out->conv_job_id, sizeof(out->conv_job_id), res, 0, "conv_base");
    out->fresh = db_get_bool(res, 0, "fresh");
    const char *prompt = db_get(res, 0, "prompt");
    out->prompt = xstrdup(prompt ? prompt : "");
    out->timeout_s = (long)db_get_ll(res, 0, "timeout_s");
    out->attempt = (int)db_get_ll(res, 0, "attempt");
}

/* The claim's budgets (st_job_claim_budget). Returns 0, or -1 with *rc. */
static int store_claim_budget(struct db *db, const char *job_id, struct store_claim *out,
                              int *rc)
{
    const char *p[] = { job_id };
    out->max_usd_per_day = -1;
    out->max_tokens_per_job = -1;
    struct pg_result *res = db_run(db, &st_job_claim_budget, p, rc);
    if (res == NULL)
        return -1;
    if (db_rows(res) == 1) {
        if (db_get(res, 0, "max_usd_per_day") != NULL)
            out->max_usd_per_day = db_get_ll(res, 0, "max_usd_per_day");
        if (db_get(res, 0, "max_tokens_per_job") != NULL)
            out->max_tokens_per_job = db_get_ll(res, 0, "max_tokens_per_job");
        const char *spent = db_get(res, 0, "spent");
        out->spent_usd_today = spent ? strtod(spent, NULL) : 0.0;
    }
    db_clear(res);
    return 0;
}

int store_job_claim(struct db *db, const char *job_id, const char *worker_id, long lease_s,
                    struct store_claim *out)
{
    char lease[32];
    snprintf(lease, sizeof(lease), "%ld", lease_s);
    memset(out, 0, sizeof(*out));
    if (id_new(out->lease_token) != 0)
        return STORE_ERROR;
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);
    int may = store_claim_session(db, job_id, &rc);
    if (may < 0)
        goto fail;
    if (may == 0) {
        rc = db_commit(db);         /* keeps the cancellation of an expired session */
        if (rc != DB_OK)
            goto fail;
        return STORE_NOT_FOUND;
    }
    const char *p[] = { job_id, worker_id, out->lease_token, lease };
    struct pg_result *res = db_run(db, &st_job_claim, p, &rc);
    if (res == NULL)
        goto fail;
    int found = db_rows(res) == 1;
    if (found)
        store_fill_claim(res, out);
    db_clear(res);
    if (found && store_claim_budget(db, job_id, out, &rc) != 0) {
        store_claim_free(out);
        goto fail;
    }
    rc = db_commit(db);
    if (rc != DB_OK) {
        store_claim_free(out);
        goto fail;
    }
    return found ? STORE_OK : STORE_NOT_FOUND;

fail:
    db_rollback(db);
    return store_from_db(rc);
}

int store_job_renew(struct db *db, const char *job_id, const char *token, long lease_s,
                    int *cancel)
{
    char lease[32];
    snprintf(lease, sizeof(lease), "%ld", lease_s);
    const char *p[] = { job_id, token, lease };
    int rc;
    struct pg_result *res = db_run(db, &st_job_renew, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int held = db_rows(res) == 1;
    *cancel = held && db_get_bool(res, 0, "cancel");
    db_clear(res);
    return held ? STORE_OK : STORE_NOT_FOUND;
}

static const char *store_ll(char *buf, size_t len, int has, long long v)
{
    if (!has)
        return NULL;
    snprintf(buf, len, "%lld", v);
    return buf;
}

/* The fenced UPDATE of the job row: rows changed (0: lease lost) or a
 * negative enum db_rc. */
static long store_finish_update(struct db *db, const struct store_claim *c,
                                const struct store_outcome *o)
{
    char exit_code[32], ti[32], to[32], tr[32], tcr[32], tcw[32], cost[64];
    if (o->has_usage)
        snprintf(cost, sizeof(cost), "%.10g", o->cost_usd);
    const char *p[] = {
        c->job_id, c->lease_token, o->status, o->error,
        store_ll(exit_code, sizeof(exit_code), o->has_exit_code, o->exit_code),
        o->stdout_text, o->result, o->result_json,
        store_ll(ti, sizeof(ti), o->has_usage, o->tokens_input),
        store_ll(to, sizeof(to), o->has_usage, o->tokens_output),
        store_ll(tr, sizeof(tr), o->has_usage, o->tokens_reasoning),
        store_ll(tcr, sizeof(tcr), o->has_usage, o->tokens_cache_read),
        store_ll(tcw, sizeof(tcw), o->has_usage, o->tokens_cache_write),
        o->has_usage ? cost : NULL,
        joberr_name(o->error_code),
    };
    return db_run_exec(db, &st_job_finish_update, p);
}

/* A text[] literal of the n strings v (NULL entries, or all when v is
 * NULL: SQL NULL). Free with free(). */
static char *store_finish_strings(const char *const *v, size_t n)
{
    struct store_buf b = { NULL, 0, 0 };
    store_buf_add(&b, "{", 1);
    for (size_t i = 0; i < n; i++)
        store_array_add_text(&b, i, v != NULL ? v[i] : NULL);
    store_buf_add(&b, "}", 1);
    return b.p;
}

/* The gateway's accounting columns, when the job ran through it. */
static int store_finish_gateway(struct db *db, const struct store_claim *c,
                                const struct store_outcome *o, int *rc)
{
    if (!o->has_gateway)
        return 0;
    char rq[32], ti[32], to[32], cost[64];
    snprintf(cost, sizeof(cost), "%.10g", o->gw_cost_usd);
    const char *p[] = { c->job_id, store_ll(rq, sizeof(rq), 1, o->gw_requests),
                        store_ll(ti, sizeof(ti), 1, o->gw_input_tokens),
                        store_ll(to, sizeof(to), 1, o->gw_output_tokens), cost };
    return store_step(db, &st_job_finish_gateway, p, rc);
}

/* jobs.deleted_files, when the changes are known. */
static int store_finish_deleted(struct db *db, const struct store_claim *c,
                                const struct store_outcome *o, int *rc)
{
    if (!o->has_changes)
        return 0;
    char *deleted = store_finish_strings(o->deleted, o->ndeleted);
    const char *p[] = { c->job_id, deleted };
    int r = store_step(db, &st_job_finish_deleted, p, rc);
    free(deleted);
    return r;
}

/* The output manifest rows, as five parallel arrays. */
static int store_finish_files(struct db *db, const struct store_claim *c,
                              const struct store_outcome *o, int *rc)
{
    if (store_finish_deleted(db, c, o, rc) || store_finish_gateway(db, c, o, rc))
        return -1;
    if (o->nfiles == 0)
        return 0;
    char *paths = store_text_array(o->files, o->nfiles, 0);
    char *sizes = store_bigint_array(o->files, o->nfiles);
    char *shas = store_text_array(o->files, o->nfiles, 1);
    char *modes = store_mode_array(o->files, o->nfiles);
    char *changes = store_finish_strings(o->has_changes ? o->changes : NULL, o->nfiles);
    const char *p[] = { c->job_id, paths, sizes, shas, modes, changes };
    int r = store_step(db, &st_job_finish_files, p, rc);
    free(changes);
    free(modes);
    free(paths);
    free(sizes);
    free(shas);
    return r;
}

int store_job_finish(struct db *db, const struct store_claim *c,
                     const struct store_outcome *o)
{
    const char *ps[] = { c->session_id };
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);

    if (store_step(db, &st_job_finish_lock, ps, &rc))
        goto end;
    long n = store_finish_update(db, c, o);
    if (n < 0) {
        rc = (int)n;
        goto end;
    }
    if (n == 0) {
        db_rollback(db);
        return STORE_NOT_FOUND;     /* lease lost: a newer attempt owns it */
    }
    if (store_finish_files(db, c, o, &rc))
        goto end;
    const char *pss[] = { c->session_id, c->job_id, o->status };
    if (store_step(db, &st_job_finish_session, pss, &rc))
        goto end;
    if (store_step(db, &st_job_finish_next, ps, &rc))
        goto end;
end:
    return store_tx_end(db, rc);
}

int store_job_release(struct db *db, const struct store_claim *c)
{
    const char *p[] = { c->job_id, c->lease_token };
    long n = db_run_exec(db, &st_job_release, p);
    if (n < 0)
        return store_from_db(n);
    return n == 1 ? STORE_OK : STORE_NOT_FOUND;
}
