/*
 * render.c - see render.h.
 *
 * Null rules, kept from the seed: a field the seed had is always present;
 * it is null when the value does not exist yet (started_at of a queued
 * job, output_files before the job ended, usage when opencode reported
 * none). Timestamps are ISO-8601 UTC with microseconds.
 */
#include "render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "jsonutil.h"

/* Longest download_url: the path percent-encoded three bytes a byte. */
#define RENDER_URL_MAX (3 * 1024 + 200)

cJSON *render_error(enum errcode e, const char *detail)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "detail", detail);
    cJSON_AddStringToObject(o, "code", errcode_name(e));
    return o;
}

cJSON *render_health(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "healthy");
    return o;
}

/* Stored JSON text as a tree; null when absent or unreadable. */
static cJSON *render_stored_json(const char *text)
{
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    return j ? j : cJSON_CreateNull();
}

/* {path, size_bytes, mode[, sha256][, download_url]} for each file; mode
 * is git's, as a string: "100755" when the file had an execute bit, else
 * "100644" (store_file.mode 0 is 100644). session_id NULL: no
 * download_url; job_id NULL: the session's current files. */
static cJSON *render_files(const struct store_file *files, size_t n, const char *session_id,
                           const char *job_id)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, f);
        cJSON_AddStringToObject(f, "path", files[i].path);
        cJSON_AddNumberToObject(f, "size_bytes", (double)files[i].size_bytes);
        cJSON_AddStringToObject(f, "mode", files[i].mode == 0100755 ? "100755" : "100644");
        if (files[i].sha256 != NULL)
            cJSON_AddStringToObject(f, "sha256", files[i].sha256);
        char enc[RENDER_URL_MAX], url[RENDER_URL_MAX + 128];
        if (session_id == NULL || http_url_encode(files[i].path, enc, sizeof(enc)) != 0)
            continue;
        if (job_id != NULL)
            snprintf(url, sizeof(url), "/download?session_id=%s&file_path=%s&job_id=%s",
                     session_id, enc, job_id);
        else
            snprintf(url, sizeof(url), "/download?session_id=%s&file_path=%s", session_id,
                     enc);
        cJSON_AddStringToObject(f, "download_url", url);
    }
    return arr;
}

/* Adds change to each entry of arr (render_files of the same files):
 * added | modified | unchanged, null when not known (a job recorded
 * before migration 012, or files edited with PUT/DELETE /session/files). */
static cJSON *render_file_changes(cJSON *arr, const char *const *change, size_t n)
{
    cJSON *f = arr ? arr->child : NULL;
    for (size_t i = 0; i < n && f != NULL; i++, f = f->next)
        json_add_str_or_null(f, "change", change != NULL ? change[i] : NULL);
    return arr;
}

/* deleted_files: the stored JSON array, null when not known. */
static cJSON *render_deleted(const struct store_job *j)
{
    cJSON *d = j->has_outputs && j->deleted_files ? cJSON_Parse(j->deleted_files) : NULL;
    return cJSON_IsArray(d) ? d : (cJSON_Delete(d), cJSON_CreateNull());
}

cJSON *render_session_created(const struct store_session *s, const struct store_file *files,
                              size_t nfiles)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "session_id", s->id);
    json_add_time(o, "created_at", s->created_usec, 0);
    json_add_time(o, "expires_at", s->expires_usec, 0);
    cJSON_AddItemToObject(o, "input_files", render_files(files, nfiles, NULL, NULL));
    return o;
}

cJSON *render_job_created(const char *job_id, const char *session_id, int64_t created_usec)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", job_id);
    cJSON_AddStringToObject(o, "session_id", session_id);
    cJSON_AddStringToObject(o, "status", "queued");
    json_add_time(o, "created_at", created_usec, 0);
    return o;
}

/* usage and cost_usd: both null when opencode reported no usage. */
static void render_usage(cJSON *o, const struct store_job *j)
{
    if (!j->has_usage) {
        cJSON_AddNullToObject(o, "usage");
        cJSON_AddNullToObject(o, "cost_usd");
        return;
    }
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", (double)j->tokens_input);
    cJSON_AddNumberToObject(u, "output_tokens", (double)j->tokens_output);
    cJSON_AddNumberToObject(u, "reasoning_tokens", (double)j->tokens_reasoning);
    cJSON_AddNumberToObject(u, "cache_read_tokens", (double)j->tokens_cache_read);
    cJSON_AddNumberToObject(u, "cache_write_tokens", (double)j->tokens_cache_write);
    cJSON_AddNumberToObject(o, "cost_usd", j->cost_usd);
}

/* gateway_usage: what the job's provider gateway counted; null when the
 * job never ran to an outcome through it (or ended before migration 015). */
static void render_gateway_usage(cJSON *o, const struct store_job *j)
{
    if (!j->has_gateway_usage) {
        cJSON_AddNullToObject(o, "gateway_usage");
        return;
    }
    cJSON *u = cJSON_AddObjectToObject(o, "gateway_usage");
    cJSON_AddNumberToObject(u, "requests", (double)j->gw_requests);
    cJSON_AddNumberToObject(u, "input_tokens", (double)j->gw_input_tokens);
    cJSON_AddNumberToObject(u, "output_tokens", (double)j->gw_output_tokens);
    cJSON_AddNumberToObject(u, "cost_usd", j->gw_cost_usd);
}

cJSON *render_job(const struct store_job *j)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", j->id);
    cJSON_AddStringToObject(o, "session_id", j->session_id);
    cJSON_AddStringToObject(o, "status", j->status);
    json_add_str_or_null(o, "error", j->error);
    json_add_str_or_null(o, "error_code", j->error_code);
    cJSON_AddStringToObject(o, "prompt", j->prompt);
    cJSON_AddStringToObject(o, "model", j->model);
    cJSON_AddNumberToObject(o, "timeout_s", (double)j->timeout_s);
    cJSON_AddNumberToObject(o, "attempt", (double)j->attempt);
    json_add_time(o, "created_at", j->created_usec, 0);
    json_add_time(o, "started_at", j->started_usec, j->started_usec == 0);
    json_add_time(o, "finished_at", j->finished_usec, j->finished_usec == 0);
    json_add_time(o, "cancel_requested_at", j->cancel_requested_usec,
                  j->cancel_requested_usec == 0);
    cJSON_AddItemToObject(o, "output_files",
                          j->has_outputs ? render_files(j->outputs.v, j->outputs.n,
                                                        j->session_id, j->id)
                                         : cJSON_CreateNull());
    render_file_changes(cJSON_GetObjectItemCaseSensitive(o, "output_files"),
                        j->outputs.change, j->outputs.n);
    cJSON_AddItemToObject(o, "deleted_files", render_deleted(j));
    if (j->has_exit_code)
        cJSON_AddNumberToObject(o, "exit_code", (double)j->exit_code);
    else
        cJSON_AddNullToObject(o, "exit_code");
    json_add_str_or_null(o, "stdout", j->stdout_text);
    json_add_str_or_null(o, "result", j->result);
    cJSON_AddItemToObject(o, "result_json", render_stored_json(j->result_json));
    render_usage(o, j);
    render_gateway_usage(o, j);
    return o;
}

cJSON *render_results(const char *session_id, const struct store_results *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "session_id", session_id);
    json_add_str_or_null(o, "latest_job_id", r->latest_job_id);
    cJSON_AddItemToObject(o, "output_files",
                          render_file_changes(render_files(r->files.v, r->files.n,
                                                           session_id, NULL),
                                              r->files.change, r->files.n));
    json_add_str_or_null(o, "result", r->result);
    cJSON_AddItemToObject(o, "result_json", render_stored_json(r->result_json));
    return o;
}

cJSON *render_keys(const struct store_keys *k)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < k->n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "id", k->v[i].id);
        cJSON_AddStringToObject(o, "name", k->v[i].name);
        json_add_time(o, "created_at", k->v[i].created_usec, 0);
        json_add_time(o, "revoked_at", k->v[i].revoked_usec, !k->v[i].revoked);
    }
    return arr;
}

/* [{job_id, status, model, created_at, started_at, finished_at}] */
static cJSON *render_job_rows(const struct store_job_rows *r)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < r->n; i++) {
        const struct store_job_row *j = &r->v[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "job_id", j->id);
        cJSON_AddStringToObject(o, "status", j->status);
        cJSON_AddStringToObject(o, "model", j->model);
        json_add_time(o, "created_at", j->created_usec, 0);
        json_add_time(o, "started_at", j->started_usec, j->started_usec == 0);
        json_add_time(o, "finished_at", j->finished_usec, j->finished_usec == 0);
    }
    return arr;
}

cJSON *render_session_view(const struct store_session_view *v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "session_id", v->id);
    cJSON_AddStringToObject(o, "status", v->status);
    json_add_time(o, "created_at", v->created_usec, 0);
    json_add_time(o, "expires_at", v->expires_usec, 0);
    cJSON_AddNumberToObject(o, "ttl_seconds", (double)v->ttl_s);
    cJSON_AddItemToObject(o, "input_files", render_files(v->files.v, v->files.n, NULL, NULL));
    cJSON_AddItemToObject(o, "jobs", render_job_rows(&v->jobs));
    return o;
}

cJSON *render_job_page(const char *session_id, const struct store_job_rows *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "session_id", session_id);
    cJSON_AddItemToObject(o, "jobs", render_job_rows(r));
    json_add_str_or_null(o, "next_after", r->next_after);
    return o;
}

cJSON *render_session_page(const struct store_session_rows *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "sessions");
    for (size_t i = 0; i < r->n; i++) {
        const struct store_session_row *s = &r->v[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, e);
        cJSON_AddStringToObject(e, "session_id", s->id);
        cJSON_AddStringToObject(e, "status", s->status);
        json_add_time(e, "created_at", s->created_usec, 0);
        json_add_time(e, "expires_at", s->expires_usec, 0);
        cJSON_AddNumberToObject(e, "ttl_seconds", (double)s->ttl_s);
        cJSON_AddNumberToObject(e, "input_file_count", (double)s->input_file_count);
        cJSON_AddNumberToObject(e, "input_bytes", (double)s->input_bytes);
    }
    json_add_str_or_null(o, "next_after", r->next_after);
    return o;
}

/* The statuses a job never leaves. */
static int render_status_final(const char *status)
{
    return status != NULL &&
           (strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
            strcmp(status, "timed_out") == 0 || strcmp(status, "cancelled") == 0);
}

char *render_event(const struct store_event *e, int *final)
{
    cJSON *data = cJSON_Parse(e->data);
    if (!cJSON_IsObject(data)) {
        cJSON_Delete(data);
        data = cJSON_CreateObject();
    }
    cJSON_DeleteItemFromObjectCaseSensitive(data, "seq");
    cJSON_DeleteItemFromObjectCaseSensitive(data, "attempt");
    cJSON_DeleteItemFromObjectCaseSensitive(data, "time");
    cJSON_AddNumberToObject(data, "seq", (double)e->seq);
    cJSON_AddNumberToObject(data, "attempt", (double)e->attempt);
    json_add_time(data, "time", e->time_usec, 0);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(data, "status");
    *final = strcmp(e->kind, "status") == 0 && cJSON_IsString(st) &&
             render_status_final(st->valuestring);
    char *json = cJSON_PrintUnformatted(data);
    cJSON_Delete(data);
    if (json == NULL)
        return NULL;
    size_t len = strlen(json) + strlen(e->kind) + 64;
    char *frame = malloc(len);
    if (frame != NULL)
        snprintf(frame, len, "id: %lld\nevent: %s\ndata: %s\n\n", e->seq, e->kind, json);
    free(json);
    return frame;
}
