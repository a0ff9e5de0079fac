/* store_job.c - jobs, for the API and the workers (see store.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"
#include "store_internal.h"

/* ---- API side ----------------------------------------------------------- */

int store_job_create(PGconn *db, const char *job_id, const char *session_id,
                     const char *key_id, const char *prompt, const char *model,
                     long timeout_s, int64_t *created_usec)
{
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%ld", timeout_s);
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);

    /* Lock the session: a worker finishing its previous job takes the same
     * lock, so exactly one of us sees the other and publishes this job. */
    const char *ps[] = { session_id, key_id };
    PGresult *res = db_query(db, "job.create.lock",
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE session_id = $1"
        "               AND status IN ('queued', 'running')) AS busy "
        "FROM sessions WHERE id = $1 AND status = 'active' AND expires_at > now()"
        " AND api_key_id = $2 FOR UPDATE", 2, ps, &rc);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) != 1) {
        PQclear(res);
        db_rollback(db);
        return STORE_NOT_FOUND;
    }
    int busy = strcmp(db_get(res, 0, "busy"), "t") == 0;
    PQclear(res);

    const char *pj[] = { job_id, session_id, prompt, model, timeout };
    res = db_query(db, "job.create.insert",
        "INSERT INTO jobs (id, session_id, prompt, model, timeout_s)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING " STORE_USEC("created_at") " AS created",
        5, pj, &rc);
    if (res == NULL)
        goto fail;
    *created_usec = db_get_ll(res, 0, "created");
    PQclear(res);

    if (store_step(db, "job.create.extend",
                   "UPDATE sessions SET expires_at = greatest(expires_at,"
                   " now() + ttl_seconds * interval '1 second') WHERE id = $1", 1, ps, &rc))
        goto fail;
    if (!busy) {
        if (store_step(db, "job.create.outbox",
                       "INSERT INTO job_outbox (job_id) VALUES ($1)", 1, pj, &rc))
            goto fail;
    }
    rc = db_commit(db);
    if (rc != DB_OK)
        goto fail;
    return STORE_OK;

fail:
    db_rollback(db);
    return store_from_db(rc);
}

cJSON *store_job_status(PGconn *db, const char *job_id, const char *key_id, int *rc)
{
    const char *p[] = { job_id, key_id };
    PGresult *res = db_query(db, "job.status",
        "SELECT j.id, j.session_id, j.status, j.error, j.prompt, j.model, j.timeout_s,"
        " j.attempt, j.exit_code, j.stdout, j.result, j.result_json::text AS result_json,"
        " j.tokens_input, j.tokens_output, j.tokens_reasoning, j.tokens_cache_read,"
        " j.tokens_cache_write, j.cost_usd,"
        " " STORE_USEC("j.created_at") " AS created,"
        " " STORE_USEC("j.started_at") " AS started,"
        " " STORE_USEC("j.finished_at") " AS finished,"
        " CASE WHEN j.finished_at IS NULL OR j.status = 'cancelled' THEN NULL ELSE"
        " (SELECT coalesce(json_agg(json_build_object('path', f.path,"
        "    'size_bytes', f.size_bytes, 'sha256', f.sha256) ORDER BY f.path), '[]')"
        "  FROM job_files f WHERE f.job_id = j.id)::text END AS files "
        "FROM jobs j JOIN sessions s ON s.id = j.session_id "
        "WHERE j.id = $1 AND s.api_key_id = $2", 2, p, rc);
    if (res == NULL) {
        *rc = store_from_db(*rc);
        return NULL;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        *rc = STORE_NOT_FOUND;
        return NULL;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", db_get(res, 0, "id"));
    cJSON_AddStringToObject(o, "session_id", db_get(res, 0, "session_id"));
    cJSON_AddStringToObject(o, "status", db_get(res, 0, "status"));
    json_add_str_or_null(o, "error", db_get(res, 0, "error"));
    cJSON_AddStringToObject(o, "prompt", db_get(res, 0, "prompt"));
    cJSON_AddStringToObject(o, "model", db_get(res, 0, "model"));
    cJSON_AddNumberToObject(o, "timeout_s", (double)db_get_ll(res, 0, "timeout_s"));
    cJSON_AddNumberToObject(o, "attempt", (double)db_get_ll(res, 0, "attempt"));
    json_add_time(o, "created_at", db_get_ll(res, 0, "created"), 0);
    json_add_time(o, "started_at", db_get_ll(res, 0, "started"),
                  db_get(res, 0, "started") == NULL);
    json_add_time(o, "finished_at", db_get_ll(res, 0, "finished"),
                  db_get(res, 0, "finished") == NULL);
    const char *files = db_get(res, 0, "files");
    cJSON_AddItemToObject(o, "output_files", files ? cJSON_Parse(files) : cJSON_CreateNull());
    if (db_get(res, 0, "exit_code"))
        cJSON_AddNumberToObject(o, "exit_code", (double)db_get_ll(res, 0, "exit_code"));
    else
        cJSON_AddNullToObject(o, "exit_code");
    json_add_str_or_null(o, "stdout", db_get(res, 0, "stdout"));
    json_add_str_or_null(o, "result", db_get(res, 0, "result"));
    const char *rj = db_get(res, 0, "result_json");
    cJSON_AddItemToObject(o, "result_json", rj ? cJSON_Parse(rj) : cJSON_CreateNull());
    if (db_get(res, 0, "tokens_input") != NULL) {
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "input_tokens", (double)db_get_ll(res, 0, "tokens_input"));
        cJSON_AddNumberToObject(u, "output_tokens", (double)db_get_ll(res, 0, "tokens_output"));
        cJSON_AddNumberToObject(u, "reasoning_tokens",
                                (double)db_get_ll(res, 0, "tokens_reasoning"));
        cJSON_AddNumberToObject(u, "cache_read_tokens",
                                (double)db_get_ll(res, 0, "tokens_cache_read"));
        cJSON_AddNumberToObject(u, "cache_write_tokens",
                                (double)db_get_ll(res, 0, "tokens_cache_write"));
        const char *cost = db_get(res, 0, "cost_usd");
        cJSON_AddNumberToObject(o, "cost_usd", cost ? strtod(cost, NULL) : 0.0);
    } else {
        cJSON_AddNullToObject(o, "usage");
        cJSON_AddNullToObject(o, "cost_usd");
    }
    PQclear(res);
    *rc = STORE_OK;
    return o;
}

int store_job_folder(PGconn *db, const char *session_id, const char *key_id,
                     const char *job_id, char folder_job[ID_HEX_LEN + 1])
{
    int rc;
    PGresult *res;
    if (job_id != NULL) {
        /* A job's own outputs exist once it ended (cancelled ones never ran). */
        const char *p[] = { session_id, key_id, job_id };
        res = db_query(db, "job.folder",
            "SELECT j.id FROM jobs j JOIN sessions s ON s.id = j.session_id "
            "WHERE s.id = $1 AND s.status = 'active' AND s.expires_at > now()"
            " AND s.api_key_id = $2 AND j.id = $3 AND j.finished_at IS NOT NULL"
            " AND j.status <> 'cancelled'", 3, p, &rc);
    } else {
        const char *p[] = { session_id, key_id };
        res = db_query(db, "session.folder",
            "SELECT coalesce(current_job_id, '') AS id FROM sessions "
            "WHERE id = $1 AND status = 'active' AND expires_at > now()"
            " AND api_key_id = $2", 2, p, &rc);
    }
    if (res == NULL)
        return store_from_db(rc);
    int found = PQntuples(res) == 1;
    if (found)
        store_copy(folder_job, ID_HEX_LEN + 1, res, 0, "id");
    PQclear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

/* ---- Worker side -------------------------------------------------------- */

void store_claim_free(struct store_claim *c)
{
    free(c->prompt);
    c->prompt = NULL;
}

int store_job_claim(PGconn *db, const char *job_id, const char *worker_id, long lease_s,
                    struct store_claim *out)
{
    char lease[32];
    snprintf(lease, sizeof(lease), "%ld", lease_s);
    memset(out, 0, sizeof(*out));
    if (id_new(out->lease_token) != 0)
        return STORE_ERROR;

    /*
     * One statement: the row lock of FOR UPDATE makes a concurrent claim of
     * the same job wait, then re-check status = 'queued' and find nothing.
     * A job waits while an earlier job of its session is unfinished; it is
     * published again when that one ends.
     */
    const char *p[] = { job_id, worker_id, out->lease_token, lease };
    int rc;
    PGresult *res = db_query(db, "job.claim",
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
        " coalesce(s.current_job_id, '') AS base",
        4, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    if (PQntuples(res) != 1) {
        PQclear(res);
        return STORE_NOT_FOUND;
    }
    store_copy(out->job_id, sizeof(out->job_id), res, 0, "id");
    store_copy(out->session_id, sizeof(out->session_id), res, 0, "session_id");
    store_copy(out->model, sizeof(out->model), res, 0, "model");
    store_copy(out->base_job_id, sizeof(out->base_job_id), res, 0, "base");
    out->prompt = strdup(db_get(res, 0, "prompt"));
    out->timeout_s = (long)db_get_ll(res, 0, "timeout_s");
    out->attempt = (int)db_get_ll(res, 0, "attempt");
    PQclear(res);
    if (out->prompt == NULL) {
        /* Out of memory after the claim: the lease will run out and the
         * janitor re-queues the job. */
        return STORE_ERROR;
    }
    return STORE_OK;
}

int store_job_renew(PGconn *db, const char *job_id, const char *token, long lease_s)
{
    char lease[32];
    snprintf(lease, sizeof(lease), "%ld", lease_s);
    const char *p[] = { job_id, token, lease };
    long n = db_exec(db, "job.renew",
        "UPDATE jobs SET lease_expires_at = now() + $3::int * interval '1 second' "
        "WHERE id = $1 AND lease_token = $2 AND status = 'running'", 3, p);
    if (n < 0)
        return store_from_db(n);
    return n == 1 ? STORE_OK : STORE_NOT_FOUND;
}

static const char *store_ll(char *buf, size_t len, int has, long long v)
{
    if (!has)
        return NULL;
    snprintf(buf, len, "%lld", v);
    return buf;
}

int store_job_finish(PGconn *db, const struct store_claim *c, const struct store_outcome *o)
{
    char exit_code[32], ti[32], to[32], tr[32], tcr[32], tcw[32], cost[64];
    const char *ps[] = { c->session_id };
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);

    if (store_step(db, "job.finish.lock", "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE",
                   1, ps, &rc))
        goto fail;

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
    };
    long n = db_exec(db, "job.finish.update",
        "UPDATE jobs SET status = $3, error = $4, exit_code = $5::int, stdout = $6,"
        " result = $7, result_json = $8::jsonb, tokens_input = $9::bigint,"
        " tokens_output = $10::bigint, tokens_reasoning = $11::bigint,"
        " tokens_cache_read = $12::bigint, tokens_cache_write = $13::bigint,"
        " cost_usd = $14::float8, finished_at = now(), lease_token = NULL,"
        " lease_expires_at = NULL "
        "WHERE id = $1 AND lease_token = $2 AND status = 'running'", 14, p);
    if (n < 0) {
        rc = (int)n;
        goto fail;
    }
    if (n == 0) {
        db_rollback(db);
        return STORE_NOT_FOUND;     /* lease lost: a newer attempt owns it */
    }

    const char *pf[] = { c->job_id, o->files_json ? o->files_json : "[]" };
    if (store_step(db, "job.finish.files",
                   "INSERT INTO job_files (job_id, path, size_bytes, sha256)"
                   " SELECT $1, e->>'path', (e->>'size_bytes')::bigint, e->>'sha256'"
                   " FROM jsonb_array_elements($2::jsonb) e", 2, pf, &rc))
        goto fail;

    const char *pss[] = { c->session_id, c->job_id, o->status };
    if (store_step(db, "job.finish.session",
                   "UPDATE sessions SET current_job_id = CASE WHEN $3 = 'succeeded' THEN $2"
                   " ELSE current_job_id END,"
                   " expires_at = greatest(expires_at, now() + ttl_seconds * interval '1 second') "
                   "WHERE id = $1", 3, pss, &rc))
        goto fail;
    if (store_step(db, "job.finish.next", ENQUEUE_NEXT_SQL, 1, ps, &rc))
        goto fail;
    rc = db_commit(db);
    if (rc != DB_OK)
        goto fail;
    return STORE_OK;

fail:
    db_rollback(db);
    return store_from_db(rc);
}

int store_job_release(PGconn *db, const struct store_claim *c)
{
    const char *p[] = { c->job_id, c->lease_token };
    /* One statement, so the job is never queued without its outbox row. */
    long n = db_exec(db, "job.release",
        "WITH r AS ("
        "  UPDATE jobs SET status = 'queued', attempt = greatest(attempt - 1, 0),"
        "  lease_token = NULL, lease_expires_at = NULL "
        "  WHERE id = $1 AND lease_token = $2 AND status = 'running' RETURNING id)"
        "INSERT INTO job_outbox (job_id) SELECT id FROM r", 2, p);
    if (n < 0)
        return store_from_db(n);
    return n == 1 ? STORE_OK : STORE_NOT_FOUND;
}
