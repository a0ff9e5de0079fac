/*
 * routes_job.c - POST /job and GET /job/status.
 *
 * GET /job/status answers an ended job (whose document no longer
 * changes) from the process's cache (cache.h), checked on every hit: the
 * caller's key must be the one that read it, and the job still there,
 * unchanged (known without a query while the cache is fresh, else one
 * query by primary keys); queued and running jobs are always read and
 * rendered.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cache.h"
#include "db.h"
#include "jsonutil.h"
#include "log.h"
#include "path.h"
#include "render.h"
#include "timefmt.h"
#include "webhook_sign.h"

static int job_prompt_blank(const char *p)
{
    for (; *p; p++)
        if (!isspace((unsigned char)*p))
            return 0;
    return 1;
}

/* webhook_url: absent or null (the key's default applies, if any), else
 * an http(s) URL (webhook_url_valid). Returns 0, or the status after
 * answering 422. */
static int job_check_webhook(struct api_req *r, const cJSON *req, struct store_new_job *j)
{
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(req, "webhook_url");
    j->webhook_url = NULL;
    if (url == NULL || cJSON_IsNull(url))
        return 0;
    if (!cJSON_IsString(url) || !webhook_url_valid(url->valuestring))
        return api_fail(r, ERR_VALIDATION,
                        "webhook_url: must be an http:// or https:// URL with a host, "
                        "at most %d bytes, without spaces", WEBHOOK_URL_MAX);
    j->webhook_url = url->valuestring;
    return 0;
}

/* Checks the body of POST /job and fills j's prompt, model and timeout.
 * Returns 0, or the status after answering 422. */
static int job_check(struct api_req *r, const cJSON *req, struct store_new_job *j)
{
    const struct cfg *cfg = r->cfg;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(req, "prompt");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(req, "model");
    if (!cJSON_IsObject(req))
        return api_fail(r, ERR_VALIDATION, "request body must be a JSON object");
    if (!cJSON_IsString(prompt) || job_prompt_blank(prompt->valuestring))
        return api_fail(r, ERR_VALIDATION, "prompt: required, must be a non-empty string");
    size_t len = strlen(prompt->valuestring);
    if ((long)len > cfg->max_prompt_bytes)
        return api_fail(r, ERR_VALIDATION, "prompt: longer than %ld bytes",
                        cfg->max_prompt_bytes);
    if (!path_utf8_valid(prompt->valuestring, len))
        return api_fail(r, ERR_VALIDATION, "prompt: must be valid UTF-8");
    if (model != NULL && !cJSON_IsNull(model) &&
        (!cJSON_IsString(model) || !cfg_model_valid(model->valuestring)))
        return api_fail(r, ERR_VALIDATION, "model: must look like provider/model");
    j->timeout_s = cfg->default_job_timeout_s;
    if (json_get_int(req, "timeout_s", 1, cfg->max_job_timeout_s, &j->timeout_s) != 0)
        return api_fail(r, ERR_VALIDATION, "timeout_s: must be an integer from 1 to %ld",
                        cfg->max_job_timeout_s);
    int status = job_check_webhook(r, req, j);
    if (status != 0)
        return status;
    const cJSON *fresh = cJSON_GetObjectItemCaseSensitive(req, "fresh");
    if (fresh != NULL && !cJSON_IsNull(fresh) && !cJSON_IsBool(fresh))
        return api_fail(r, ERR_VALIDATION, "fresh: must be true or false");
    j->fresh = cJSON_IsTrue(fresh);
    j->prompt = prompt->valuestring;
    j->model = cJSON_IsString(model) ? model->valuestring : cfg->default_model;
    return 0;
}

/* Records the checked job and answers. */
static int job_store(struct api_req *r, struct store_new_job *j)
{
    char job_id[ID_HEX_LEN + 1];
    int64_t created = 0;
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    if (id_new(job_id) != 0)
        return api_fail(r, ERR_INTERNAL, "could not create a job id");
    j->job_id = job_id;
    int rc = store_job_create(db, j, &created);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Session not found");
    api_relay_wake(r->api);
    log_info("job.queued", "job=%s session=%s model=\"%s\" timeout_s=%ld", job_id,
             j->session_id, LOG_ESC(j->model), j->timeout_s);
    return api_send(r, 200, render_job_created(job_id, j->session_id, created));
}

int api_job_create(struct api_req *r)
{
    char session_id[ID_HEX_LEN + 1];
    int status = api_id_param(r, "session_id", session_id, "Session not found");
    if (status != 0)
        return status;
    /* A job body is a prompt (JSON-escaped, up to 6 bytes a byte) and two
     * small fields. */
    cJSON *req = NULL;
    status = api_read_json(r, (size_t)r->cfg->max_prompt_bytes * 6 + 4096, &req);
    if (status != 0)
        return status;
    struct store_new_job j = { .session_id = session_id, .key_id = r->key_id };
    status = job_check(r, req, &j);
    if (status == 0)
        status = api_quota_job(r);
    if (status == 0)
        status = job_store(r, &j);
    cJSON_Delete(req);
    return status;
}

/* 1 for a status a job never leaves. */
static int job_ended(const char *status)
{
    return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "timed_out") == 0 || strcmp(status, "cancelled") == 0;
}

static int job_same_version(const struct store_job_version *a,
                            const struct store_job_version *b)
{
    return strcmp(a->status, b->status) == 0 && a->finished_usec == b->finished_usec &&
           a->pruned == b->pruned;
}

/* Answers a hit of the caller's own key: without a query when the cache
 * was fresh before the entry was looked up (cache.h), else when the
 * database shows the job unchanged; a changed or vanished job's entry is
 * dropped. Returns the status sent, or 0 (the caller reads the job). */
static int job_status_hit(struct api_req *r, const char *job_id, const struct api_cached_job *c,
                          int fresh)
{
    struct api_cache *cache = r->api->cache;
    if (fresh) {
        api_cache_count(cache, API_CACHE_FRESH);
        return api_send_etag(r, c->body, c->len, c->etag);
    }
    if (api_db(r) == NULL)
        return 503;
    struct store_job_version now;
    int rc = store_job_check(r->db, job_id, r->key_id, &now);
    if (rc == STORE_OK && job_same_version(&c->version, &now)) {
        api_cache_count(cache, API_CACHE_CHECKED);
        return api_send_etag(r, c->body, c->len, c->etag);
    }
    if (rc == STORE_OK || rc == STORE_NOT_FOUND)
        api_cache_job_drop(cache, job_id);
    return rc == STORE_OK ? 0 : api_store_fail(r, rc, "Job not found");
}

/* Answers from the cache when it holds job_id for this key. An entry read
 * by another key is not used: the query decides what that caller sees.
 * Freshness is read before the lookup: a fresh cache holds no job changed
 * before its heartbeat, but an entry copied out before the listener
 * caught up must not pass for fresh because the listener then did.
 * Returns the status sent, or 0 (no usable entry: the caller reads the
 * job). */
static int job_status_cached(struct api_req *r, const char *job_id)
{
    int fresh = api_cache_fresh(r->api->cache, time_mono_ms(), r->api->cfg->api_cache_stale_ms);
    struct api_cached_job c;
    if (!api_cache_job_get(r->api->cache, job_id, &c))
        return 0;
    int status = strcmp(c.key_id, r->key_id) == 0 ? job_status_hit(r, job_id, &c, fresh) : 0;
    free(c.body);
    return status;
}

/* Keeps the body of an ended job, with its version as store_job_check
 * reads it (the version a checked hit is compared with); epoch was read
 * before the job was. */
static void job_status_keep(struct api_req *r, struct db *db, const struct store_job *j,
                            uint64_t epoch, const char *text, size_t len, const char *etag)
{
    struct store_job_version v;
    if (!job_ended(j->status) || j->finished_usec == 0 ||
        store_job_check(db, j->id, r->key_id, &v) != STORE_OK ||
        strcmp(v.status, j->status) != 0 || v.finished_usec != j->finished_usec)
        return;
    api_cache_job_put(r->api->cache, j->id, r->key_id, epoch, &v, text, len, etag);
}

/* Reads, renders and answers the job. */
static int job_status_read(struct api_req *r, struct db *db, const char *job_id)
{
    uint64_t epoch = api_cache_epoch(r->api->cache, job_id);
    struct store_job j;
    int rc = store_job_get(db, job_id, r->key_id, &j);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Job not found");
    api_cache_count(r->api->cache, API_CACHE_MISS);
    cJSON *doc = render_job(&j);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    size_t len = strlen(text);
    char etag[API_ETAG_LEN];
    api_etag(text, len, etag);
    job_status_keep(r, db, &j, epoch, text, len, etag);
    store_job_free(&j);
    int status = api_send_etag(r, text, len, etag);
    free(text);
    return status;
}

int api_job_status(struct api_req *r)
{
    char job_id[ID_HEX_LEN + 1];
    long wait_s = 0;
    int status = api_id_param(r, "job_id", job_id, "Job not found");
    if (status == 0)
        status = api_wait_param(r, &wait_s);
    if (status == 0 && wait_s > 0)
        status = api_job_wait(r, job_id, wait_s);
    if (status != 0)
        return status;
    status = job_status_cached(r, job_id);
    if (status != 0)
        return status;
    struct db *db = api_db(r);
    return db != NULL ? job_status_read(r, db, job_id) : 503;
}
