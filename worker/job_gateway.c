/* job_gateway.c - the job's provider gateway around its agent (job.h,
 * gateway.h). */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "job.h"
#include "log.h"
#include "xalloc.h"

#define JOB_GW_PROXY "http://127.0.0.1:" GATEWAY_BRIDGE_PORT_STR

/* Without a network of its own the agent reaches the gateway through
 * the bridge on its loopback; otherwise on a TCP port of the host's. */
static int job_gateway_netns(const struct cfg *cfg)
{
    return cfg->sandbox == CFG_SANDBOX_BWRAP && cfg->egress != CFG_EGRESS_OPEN;
}

/* AGENT_EGRESS=allowlist: the proxy variables, appended. */
static char **job_gateway_proxy_env(char **env)
{
    static const char *const vars[] = {
        "HTTP_PROXY=" JOB_GW_PROXY, "HTTPS_PROXY=" JOB_GW_PROXY, "http_proxy=" JOB_GW_PROXY,
        "https_proxy=" JOB_GW_PROXY, "NO_PROXY=127.0.0.1,localhost",
        "no_proxy=127.0.0.1,localhost",
    };
    const size_t nv = sizeof(vars) / sizeof(vars[0]);
    size_t n = 0;
    while (env[n] != NULL)
        n++;
    env = xrealloc(env, (n + nv + 1) * sizeof(*env));
    for (size_t i = 0; i < nv; i++) {
        /* Replaces a session's own setting of the same name. */
        size_t nl = strcspn(vars[i], "=") + 1;
        for (size_t j = 0; j < n;) {
            if (strncmp(env[j], vars[i], nl) == 0) {
                free(env[j]);
                env[j] = env[--n];
            } else {
                j++;
            }
        }
    }
    for (size_t i = 0; i < nv; i++)
        env[n++] = xstrdup(vars[i]);
    env[n] = NULL;
    return env;
}

char **job_gateway_env(struct job_attempt *ja)
{
    const struct cfg *cfg = ja->w->cfg;
    const int netns = job_gateway_netns(cfg);
    struct gw_routes routes, view;
    char *text = gateway_rewrite_config(cfg->agent_config_json, 0, &routes);
    if (text == NULL)
        return NULL;
    free(text);
    int port = GATEWAY_BRIDGE_PORT;
    const char *allow = netns && cfg->egress == CFG_EGRESS_ALLOWLIST
                        ? (cfg->egress_allow ? cfg->egress_allow : "") : NULL;
    ja->gw = gateway_start(&routes, ja->c->job_id, netns ? ja->a.dir : NULL, allow,
                           &ja->gw_sock, &port);
    gateway_routes_free(&routes);
    if (ja->gw == NULL)
        return NULL;
    /* The key's own budgets, else the defaults (0: none). */
    const struct store_claim *c = ja->c;
    gateway_set_budget(ja->gw,
                       c->max_tokens_per_job >= 0 ? c->max_tokens_per_job
                                                  : cfg->key_max_tokens_per_job,
                       c->max_usd_per_day >= 0 ? c->max_usd_per_day : cfg->key_max_usd_per_day,
                       c->spent_usd_today);
    /* The agent's copy names the port it can reach. */
    text = gateway_rewrite_config(cfg->agent_config_json, port, &view);
    if (text == NULL)
        return NULL;
    log_debug("gateway.started", "job=%s providers=%zu via=%s port=%d", ja->c->job_id, view.n,
              netns ? "bridge" : "loopback", port);
    char **env = worker_env_build_gw(cfg, ja->a.home, ja->a.env_file, text, &view);
    free(text);
    gateway_routes_free(&view);
    if (env != NULL && allow != NULL)
        env = job_gateway_proxy_env(env);
    return env;
}

void job_gateway_spec(struct job_attempt *ja, struct agent_spec *spec)
{
    spec->share_net = !job_gateway_netns(ja->w->cfg);
    spec->gateway_sock = ja->gw_sock;
}

void job_gateway_end(struct job_attempt *ja)
{
    gateway_stop(ja->gw);
    ja->gw = NULL;
    free(ja->gw_sock);
    ja->gw_sock = NULL;
}

int job_gateway_budget(struct job_attempt *ja)
{
    if (!gateway_budget_exceeded(ja->gw, ja->limit_msg, sizeof(ja->limit_msg)))
        return 0;
    ja->limit = JOBERR_BUDGET_EXCEEDED;
    log_warn("job.limit", "job=%s code=%s", ja->c->job_id, joberr_name(ja->limit));
    return 1;
}

void job_gateway_usage(struct job_attempt *ja)
{
    if (ja->gw == NULL)
        return;
    struct gw_usage u;
    gateway_usage(ja->gw, &u);
    ja->o.has_gateway = 1;
    ja->o.gw_requests = u.requests;
    ja->o.gw_input_tokens = u.input_tokens;
    ja->o.gw_output_tokens = u.output_tokens;
    ja->o.gw_cost_usd = u.cost_usd;
}
