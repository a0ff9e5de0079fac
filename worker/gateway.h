/*
 * gateway.h - the per-job LLM gateway: the agent's only way to its model
 * providers, and the reason provider keys never enter the sandbox.
 *
 *   agent (opencode, in its own network namespace)
 *     -> http://127.0.0.1:GATEWAY_BRIDGE_PORT/<provider>/...  (socat bridge
 *        inside the sandbox)
 *     -> the job's Unix socket (bind-mounted at GATEWAY_SANDBOX_SOCK)
 *     -> this gateway (a thread of the worker) -> the provider (libcurl)
 *
 * When the agent shares the host's network (AGENT_EGRESS=open, or
 * AGENT_SANDBOX=none) there is no bridge: the gateway listens on a TCP
 * port of the host's loopback instead and the agent's configuration
 * names that port.
 *
 * The agent gets a rewritten copy of the operator's provider
 * configuration (gateway_rewrite_config()): every provider's baseURL
 * becomes http://127.0.0.1:PORT/<provider> and its apiKey a dummy. The
 * gateway maps the first path segment back to the real base URL, drops
 * the credential headers the agent sent, adds the provider's own one
 * (Authorization: Bearer, x-api-key for Anthropic, x-goog-api-key for
 * Gemini) from the worker's configuration/environment, and streams the
 * answer back as it arrives (chunked, no buffering). Pass-through only:
 * no protocol translation.
 *
 * Logged per request (event gateway.request): job, provider, method,
 * upstream status, bytes each way, time to first byte. Never prompts,
 * answers, paths' query strings or credentials.
 *
 * Ownership: struct gw_routes owns its strings; gateway_start() takes the
 * routes over. Threading: gateway_start()/gateway_stop() from the job's
 * thread; the gateway runs a listener thread and one detached thread per
 * connection, all gone when gateway_stop() returns.
 */
#ifndef OC_WORKER_GATEWAY_H
#define OC_WORKER_GATEWAY_H

#include <stddef.h>

/* The bridge's TCP port inside the sandbox's own network namespace. */
#define GATEWAY_BRIDGE_PORT 4100
#define GATEWAY_BRIDGE_PORT_STR "4100"
#define GATEWAY_BRIDGE_PORT_HEX "1004"     /* as /proc/net/tcp shows it */
/* The bridge program (Debian's socat), run inside the sandbox from the
 * host's /usr; the worker refuses to start without it when agents get no
 * network of their own. */
#define GATEWAY_BRIDGE_BIN "/usr/bin/socat"
/* Where the job's socket appears inside the sandbox. */
#define GATEWAY_SANDBOX_SOCK "/run/oc-gateway.sock"
/* The dummy key the agent's configuration holds. */
#define GATEWAY_DUMMY_KEY "oc-gateway"

enum gw_auth {
    GW_AUTH_BEARER,              /* Authorization: Bearer KEY (OpenAI-compatible) */
    GW_AUTH_ANTHROPIC,           /* x-api-key: KEY */
    GW_AUTH_GOOGLE,              /* x-goog-api-key: KEY */
};

/* A model's price (the provider configuration's models.<id>.cost, as
 * opencode states it): USD per million tokens. */
struct gw_model {
    char *id;
    double in, out;
};

struct gw_route {
    char *name;                  /* the provider's id: the path prefix */
    char *base;                  /* real base URL, without a trailing '/' */
    char *header;                /* "Name: value" credential header, or NULL */
    enum gw_auth auth;           /* also which usage fields its answers carry */
    struct gw_model *models;     /* priced models (owned) */
    size_t models_n;
};

struct gw_routes {
    struct gw_route *v;
    size_t n;
    char **hidden;               /* variable names holding provider keys */
    size_t hidden_n;
};

/*
 * Reads config_json (the operator's opencode configuration, NULL = none),
 * adds the built-in providers (anthropic, openai, openrouter, google)
 * whose key the worker's environment holds, and returns the agent's copy
 * (malloc'd JSON text) with every routable provider pointed at
 * http://127.0.0.1:port/<name> and its apiKey GATEWAY_DUMMY_KEY; *routes
 * gets the mapping back. A key is options.apiKey ("{env:NAME}" is read
 * from the worker's environment) or the provider's usual variable.
 * Returns NULL when config_json is not a JSON object.
 */
char *gateway_rewrite_config(const char *config_json, int port, struct gw_routes *routes);
void gateway_routes_free(struct gw_routes *r);

/* 1 when the agent must not get variable name (it holds a provider key). */
int gateway_env_hidden(const struct gw_routes *r, const char *name);

/* The route of a request path "/<name>/rest..."; *rest points at "/rest"
 * (or "" when nothing follows). NULL: no such provider. */
const struct gw_route *gateway_route_find(const struct gw_routes *r, const char *path,
                                          const char **rest);

/* 0 when a request header from the agent must not be forwarded upstream
 * (credentials, hop-by-hop headers, Host, Content-Length, Expect). */
int gateway_header_forwarded(const char *name, size_t len);

/* 0 when an upstream response header must not be passed to the agent
 * (hop-by-hop, Content-Length, Transfer-Encoding: the gateway re-frames). */
int gateway_response_header_passed(const char *name, size_t len);

/* AGENT_EGRESS=allowlist: 1 when host:port is listed in allow (entries
 * "name", "*.suffix", "address", "[v6]", each with an optional ":port";
 * without one, ports 80 and 443); *by_address: the entry that matched
 * is an address, which lets gateway_addr_blocked() ranges through. */
int gateway_egress_listed(const char *allow, const char *host, int port, int *by_address);

/* The port of the n characters at s (digits only, 1..65535), or -1. */
int gateway_parse_port(const char *s, size_t n);

/* 1 for loopback, link-local (cloud metadata), private, CGNAT, multicast
 * and unspecified addresses: never reached through a name. */
struct sockaddr;
int gateway_addr_blocked(const struct sockaddr *sa);

/* ---- accounting (gateway_usage.c) ---------------------------------------
 * The tokens of one answer, read from the provider's usage fields as the
 * bytes pass (never buffered: a bounded window is kept across pieces).
 * OpenAI-compatible: usage.prompt_tokens/completion_tokens (the last SSE
 * chunk when the request asked stream_options.include_usage, or the JSON
 * answer); Anthropic: input_tokens (message_start) and output_tokens
 * (message_delta, cumulative); Gemini: usageMetadata.promptTokenCount and
 * candidatesTokenCount. The last value of each field wins (they are
 * cumulative), which also makes re-reading the kept window harmless. */
#define GW_SCAN_WINDOW 4096
#define GW_SCAN_KEEP   96        /* bytes kept when the window is full */

struct gw_scan {
    enum gw_auth dialect;
    char buf[GW_SCAN_WINDOW + 1];
    size_t len;
    long long in, out;           /* -1: not seen */
};
void gw_scan_init(struct gw_scan *s, enum gw_auth dialect);
void gw_scan_feed(struct gw_scan *s, const char *data, size_t len);
void gw_scan_end(struct gw_scan *s);   /* reads what the window still holds */

/* The model a request names: the JSON body's "model", else Gemini's
 * path ".../models/<id>:verb". Writes "" when none. */
void gw_request_model(const char *body, size_t body_len, const char *path, char *out,
                      size_t cap);
/* The USD cost of in/out tokens of model on route rt (0 when unpriced;
 * a "provider/model" id also matches). */
double gw_cost(const struct gw_route *rt, const char *model, long long in, long long out);

/* A job's totals so far. */
struct gw_usage {
    long long requests, input_tokens, output_tokens;
    double cost_usd;
};

struct gateway;

/* The job's budgets, before the agent starts: max_tokens (input+output
 * of the job, 0 = none), max_usd (a UTC day, 0 = none) with spent_usd
 * already spent today by the key's other jobs. */
void gateway_set_budget(struct gateway *g, long long max_tokens, long long max_usd,
                        double spent_usd);
/* The totals so far (any thread). */
void gateway_usage(struct gateway *g, struct gw_usage *out);
/* 1 once a request was refused for a budget; msg gets which and its limit. */
int gateway_budget_exceeded(struct gateway *g, char *msg, size_t cap);

/*
 * Starts the gateway of job_id. With dir != NULL it listens on the Unix
 * socket dir/gateway.sock (mode 0666: bwrap binds it into the sandbox;
 * dir itself must be private) and *sock_path gets that path (malloc'd);
 * with dir == NULL on 127.0.0.1:<ephemeral>, *port gets the port. Takes
 * *routes over (zeroed). Returns NULL on failure (errno-style cause
 * logged). egress_allow (AGENT_EGRESS_ALLOW, copied; NULL: off) turns on
 * the egress proxy on the same socket: CONNECT host:port and absolute-form
 * http:// requests to listed hosts are relayed (gateway_egress_listed(),
 * gateway_addr_blocked()); everything else not a provider path gets 403.
 * Logged per connection as gateway.egress (host, port, status, bytes).
 */
struct gateway *gateway_start(struct gw_routes *routes, const char *job_id, const char *dir,
                              const char *egress_allow, char **sock_path, int *port);

/* Stops listening, aborts transfers in flight and waits for every
 * connection thread. NULL is a no-op. */
void gateway_stop(struct gateway *g);

#endif
