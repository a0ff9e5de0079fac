/*
 * agent_env.c - the agent's environment, built from an allowlist.
 *
 * The worker's own environment holds DATABASE_URL, AMQP_URL and maybe
 * API_KEY; none of it is inherited. The agent gets what is listed here
 * and nothing else.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gateway.h"
#include "worker.h"
#include "xalloc.h"

/* Session variables are at most 64 (checked by the api) plus ours. */
#define ENV_MAX (CFG_MAX_AGENT_ENV + 64 + 16)
/* 64 variables of at most 32 KiB each, JSON-escaped. */
#define ENV_FILE_MAX (64L * 32 * 1024 * 6 + 64 * 1024)

struct env_list {
    char *v[ENV_MAX + 1];
    size_t n;
    int failed;
};

static void env_add(struct env_list *e, const char *name, const char *value)
{
    if (e->failed || e->n == ENV_MAX) {
        e->failed = 1;
        return;
    }
    size_t len = strlen(name) + 1 + strlen(value) + 1;
    char *s = xmalloc(len);
    snprintf(s, len, "%s=%s", name, value);
    e->v[e->n++] = s;
}

/* opencode's settings: the operator's provider configuration, with tool
 * permissions granted (the sandbox is the boundary, and in `run` mode a
 * permission that would ask is rejected) and self-updates off. */
static char *env_opencode_config(const char *config)
{
    cJSON *c = config ? cJSON_Parse(config) : cJSON_CreateObject();
    if (c == NULL)
        return NULL;
    if (!cJSON_HasObjectItem(c, "permission")) {
        /* Everything: paths outside /workspace inside the sandbox (its
         * HOME, /tmp) would otherwise be auto-rejected in `run` mode. */
        cJSON *p = cJSON_AddObjectToObject(c, "permission");
        cJSON_AddStringToObject(p, "*", "allow");
    }
    if (!cJSON_HasObjectItem(c, "autoupdate"))
        cJSON_AddFalseToObject(c, "autoupdate");
    if (!cJSON_HasObjectItem(c, "share"))
        cJSON_AddStringToObject(c, "share", "disabled");
    char *text = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return text;
}

/* Adds the session's variables from env_file (written by the api). A
 * missing file means none. Returns 0 or -1. */
static int env_add_session(struct env_list *e, const char *env_file,
                           const struct gw_routes *hide)
{
    FILE *f = fopen(env_file, "r");
    if (f == NULL)
        return errno == ENOENT ? 0 : -1;
    char *buf = malloc(ENV_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, ENV_FILE_MAX, f) : 0;
    fclose(f);
    if (buf == NULL)
        return -1;
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return -1;
    }
    const cJSON *v;
    cJSON_ArrayForEach(v, j) {
        /* The api refused reserved names; check again, the file is on a
         * shared volume. */
        if (cJSON_IsString(v) && cfg_env_name_valid(v->string) &&
            !cfg_env_name_reserved(v->string) &&
            (hide == NULL || !gateway_env_hidden(hide, v->string)))
            env_add(e, v->string, v->valuestring);
    }
    cJSON_Delete(j);
    return 0;
}

char **worker_env_build(const struct cfg *cfg, const char *home, const char *env_file)
{
    return worker_env_build_gw(cfg, home, env_file, cfg->agent_config_json, NULL);
}

char **worker_env_build_gw(const struct cfg *cfg, const char *home, const char *env_file,
                           const char *agent_config, const struct gw_routes *hide)
{
    struct env_list e;
    memset(&e, 0, sizeof(e));
    env_add(&e, "HOME", home);
    env_add(&e, "PATH", "/usr/local/bin:/usr/bin:/bin");
    env_add(&e, "LANG", "C.UTF-8");
    env_add(&e, "TERM", "dumb");
    env_add(&e, "OPENCODE_DISABLE_MODELS_FETCH", "1");
    env_add(&e, "OPENCODE_DISABLE_AUTOUPDATE", "1");
    char *oc = env_opencode_config(agent_config);
    if (oc == NULL)
        e.failed = 1;
    else
        env_add(&e, "OPENCODE_CONFIG_CONTENT", oc);
    free(oc);
    for (size_t i = 0; i < cfg->agent_env_count; i++) {
        const char *v = getenv(cfg->agent_env[i]);
        if (v != NULL && (hide == NULL || !gateway_env_hidden(hide, cfg->agent_env[i])))
            env_add(&e, cfg->agent_env[i], v);
    }
    if (env_add_session(&e, env_file, hide) != 0)
        e.failed = 1;
    if (e.failed) {
        for (size_t i = 0; i < e.n; i++)
            free(e.v[i]);
        return NULL;
    }
    char **out = xcalloc(e.n + 1, sizeof(*out));
    memcpy(out, e.v, e.n * sizeof(*out));
    return out;
}

void worker_env_free(char **env)
{
    if (env == NULL)
        return;
    for (char **p = env; *p != NULL; p++)
        free(*p);
    free(env);
}
