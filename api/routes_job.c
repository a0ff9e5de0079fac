/* routes_job.c - POST /job and GET /job/status. */
#include <civetweb.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http.h"
#include "jsonutil.h"
#include "log.h"
#include "path.h"

static int job_prompt_blank(const char *p)
{
    for (; *p; p++)
        if (!isspace((unsigned char)*p))
            return 0;
    return 1;
}

static int job_create(struct mg_connection *conn, struct api *api, const char *key_id)
{
    const struct cfg *cfg = api->cfg;
    char session_id[ID_HEX_LEN + 1];
    int status = api_id_param(conn, "session_id", session_id, "Session not found");
    if (status != 0)
        return status;

    /* A job body is a prompt (JSON-escaped, up to 6 bytes a byte) and two
     * small fields. */
    cJSON *req = NULL;
    status = http_read_json(conn, (size_t)cfg->max_prompt_bytes * 6 + 4096, &req);
    if (status != 0)
        return status;

    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(req, "prompt");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(req, "model");
    long timeout_s = cfg->default_job_timeout_s;
    const char *model_name = cfg->default_model;
    char job_id[ID_HEX_LEN + 1];
    int64_t created = 0;

    if (!cJSON_IsObject(req)) {
        status = http_send_error(conn, 422, "request body must be a JSON object");
    } else if (!cJSON_IsString(prompt) || job_prompt_blank(prompt->valuestring)) {
        status = http_send_error(conn, 422, "prompt: required, must be a non-empty string");
    } else if ((long)strlen(prompt->valuestring) > cfg->max_prompt_bytes) {
        status = http_send_errorf(conn, 422, "prompt: longer than %ld bytes",
                                  cfg->max_prompt_bytes);
    } else if (!path_utf8_valid(prompt->valuestring, strlen(prompt->valuestring))) {
        status = http_send_error(conn, 422, "prompt: must be valid UTF-8");
    } else if (model != NULL && !cJSON_IsNull(model) &&
               (!cJSON_IsString(model) || !cfg_model_valid(model->valuestring))) {
        status = http_send_error(conn, 422, "model: must look like provider/model");
    } else if (json_get_int(req, "timeout_s", 1, cfg->max_job_timeout_s, &timeout_s) != 0) {
        status = http_send_errorf(conn, 422, "timeout_s: must be an integer from 1 to %ld",
                                  cfg->max_job_timeout_s);
    }
    if (status != 0)
        goto out;
    if (cJSON_IsString(model))
        model_name = model->valuestring;

    struct pg_conn *db = api_db(conn, api);
    if (db == NULL) {
        status = 503;
        goto out;
    }
    if (id_new(job_id) != 0) {
        status = http_send_error(conn, 500, "could not create a job id");
        goto out;
    }
    int rc = store_job_create(db, job_id, session_id, key_id, prompt->valuestring, model_name,
                              timeout_s, &created);
    if (rc != STORE_OK) {
        status = api_store_fail(conn, rc, "Session not found");
        goto out;
    }
    api_relay_wake(api);
    log_info("job.queued", "job=%s session=%s model=%s timeout_s=%ld", job_id, session_id,
             model_name, timeout_s);

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", job_id);
    cJSON_AddStringToObject(o, "session_id", session_id);
    cJSON_AddStringToObject(o, "status", "queued");
    json_add_time(o, "created_at", created, 0);
    status = http_send_json(conn, 200, o);

out:
    cJSON_Delete(req);
    return status;
}

int api_route_job(struct mg_connection *conn, void *cbdata)
{
    struct api *api = cbdata;
    char key_id[STORE_KEY_ID_MAX];
    if (!http_method_is(conn, "POST"))
        return http_method_not_allowed(conn, "POST");
    if (api_authenticate(conn, api, key_id) != 0)
        return 401;
    return job_create(conn, api, key_id);
}

int api_route_job_status(struct mg_connection *conn, void *cbdata)
{
    struct api *api = cbdata;
    char key_id[STORE_KEY_ID_MAX], job_id[ID_HEX_LEN + 1];
    if (!http_method_is(conn, "GET"))
        return http_method_not_allowed(conn, "GET");
    if (api_authenticate(conn, api, key_id) != 0)
        return 401;
    int status = api_id_param(conn, "job_id", job_id, "Job not found");
    if (status != 0)
        return status;
    struct pg_conn *db = api_db(conn, api);
    if (db == NULL)
        return 503;
    int rc;
    cJSON *o = store_job_status(db, job_id, key_id, &rc);
    if (o == NULL)
        return api_store_fail(conn, rc, "Job not found");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(o, "session_id");
    api_add_download_urls(cJSON_GetObjectItemCaseSensitive(o, "output_files"),
                          sid->valuestring, job_id);
    return http_send_json(conn, 200, o);
}
