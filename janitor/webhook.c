/* webhook.c - the janitor's webhook sender (see webhook.h). */
#include "webhook.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "render.h"
#include "store.h"
#include "timefmt.h"
#include "webhook_sign.h"

/* When nothing is due, the next look comes after this. */
#define WEBHOOK_IDLE_MS 1000
/* Beyond its timeout, how long a taken row stays leased to this janitor. */
#define WEBHOOK_LEASE_EXTRA_S 60

struct webhook_sender {
    const struct cfg *cfg;
    struct db        *db;
    pthread_t         thread;
    pthread_mutex_t   mu;
    pthread_cond_t    cv;
    atomic_int        stop;
};

/* One attempt: what the socket callback refused, and the outcome. */
struct webhook_try {
    int  allow_private;
    int  refused;                   /* an address was refused */
    char refused_why[128];
    long http_status;
    char error[CURL_ERROR_SIZE + 160];
};

/* CURLOPT_OPENSOCKETFUNCTION: the address check, on each address curl is
 * about to connect to (after DNS, so a name resolving to a private
 * address is caught too). */
static curl_socket_t webhook_open_socket(void *clientp, curlsocktype purpose,
                                         struct curl_sockaddr *a)
{
    struct webhook_try *t = clientp;
    const char *why = NULL;
    if (purpose == CURLSOCKTYPE_IPCXN && !t->allow_private &&
        !webhook_addr_public(&a->addr, &why)) {
        char ip[INET6_ADDRSTRLEN] = "?";
        const void *bytes = a->family == AF_INET6
            ? (const void *)&((const struct sockaddr_in6 *)(const void *)&a->addr)->sin6_addr
            : (const void *)&((const struct sockaddr_in *)(const void *)&a->addr)->sin_addr;
        inet_ntop(a->family, bytes, ip, sizeof(ip));
        t->refused = 1;
        snprintf(t->refused_why, sizeof(t->refused_why), "%s is %s", ip, why);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

/* The receiver's answer body is not needed: read and dropped. */
static size_t webhook_discard(char *p, size_t size, size_t n, void *u)
{
    (void)p;
    (void)u;
    return size * n;
}

static void webhook_set_options(CURL *c, const struct cfg *cfg, const char *url,
                                struct webhook_try *t, char *errbuf)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");          /* never a proxy from the environment */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, cfg->webhook_timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, cfg->webhook_timeout_ms);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, webhook_open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, webhook_discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "opencode-jobs-webhook/1");
}

/* POSTs body with the Standard Webhooks headers; fills t. */
static void webhook_post(const struct cfg *cfg, const char *url, const char *headers[3],
                         const char *body, size_t len, struct webhook_try *t)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    CURL *c = curl_easy_init();
    if (c == NULL) {
        snprintf(t->error, sizeof(t->error), "could not start libcurl");
        return;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; i < 3; i++)
        h = curl_slist_append(h, headers[i]);
    h = curl_slist_append(h, "Expect:");
    webhook_set_options(c, cfg, url, t, errbuf);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t->http_status);
        if (t->http_status < 200 || t->http_status > 299)
            snprintf(t->error, sizeof(t->error), "HTTP %ld", t->http_status);
    } else if (t->refused) {
        snprintf(t->error, sizeof(t->error),
                 "address refused: %s (set WEBHOOK_ALLOW_PRIVATE=1 to allow)", t->refused_why);
    } else {
        snprintf(t->error, sizeof(t->error), "%s: %s", curl_easy_strerror(rc),
                 errbuf[0] ? errbuf : "no detail");
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

/* The job's document as GET /job/status sends it. NULL when the job is
 * gone (its session was pruned) or unreadable; error says which. */
static char *webhook_body(struct webhook_sender *w, const struct store_webhook_due *d,
                          char *error, size_t error_len)
{
    struct store_job j;
    int rc = store_job_get(w->db, d->job_id, d->key_id, &j);
    if (rc != STORE_OK) {
        snprintf(error, error_len, "%s", rc == STORE_NOT_FOUND ? "the job no longer exists"
                                                             : "could not read the job");
        return NULL;
    }
    cJSON *doc = render_job(&j);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    store_job_free(&j);
    return text;
}

/* "webhook-signature: v1,<current>[ v1,<previous>]" for this message.
 * Returns 0, or -1 with error set (no secret, or a malformed one). */
static int webhook_signature(struct webhook_sender *w, const struct store_webhook_due *d,
                             long long ts, const char *body, char *out, size_t out_len,
                             char *error, size_t error_len)
{
    char cur[STORE_WEBHOOK_SECRET_MAX] = "", prev[STORE_WEBHOOK_SECRET_MAX] = "";
    char s1[WEBHOOK_SIG_MAX], s2[WEBHOOK_SIG_MAX];
    int rc = STORE_OK;
    if (strcmp(d->key_id, "bootstrap") == 0 && w->cfg->webhook_secret != NULL)
        snprintf(cur, sizeof(cur), "%s", w->cfg->webhook_secret);
    else
        rc = store_webhook_secrets_get(w->db, d->key_id, w->cfg->webhook_secret_grace_s, cur,
                                       prev);
    int ok = rc == STORE_OK && webhook_sign(cur, d->id, ts, body, strlen(body), s1) == 0;
    int two = ok && prev[0] != '\0' && webhook_sign(prev, d->id, ts, body, strlen(body), s2) == 0;
    memset(cur, 0, sizeof(cur));
    memset(prev, 0, sizeof(prev));
    if (!ok) {
        snprintf(error, error_len, "%s", rc == STORE_NOT_FOUND
                 ? "the key has no webhook secret (opencode-api keys rotate-webhook-secret)"
                 : rc == STORE_OK ? "the key's webhook secret is malformed"
                                  : "could not read the key's webhook secret");
        return -1;
    }
    snprintf(out, out_len, "webhook-signature: %s%s%s", s1, two ? " " : "", two ? s2 : "");
    return 0;
}

/* Renders, signs and sends one taken delivery; fills t. */
static void webhook_attempt(struct webhook_sender *w, const struct store_webhook_due *d,
                            struct webhook_try *t)
{
    char *body = webhook_body(w, d, t->error, sizeof(t->error));
    if (body == NULL)
        return;
    long long ts = (long long)time(NULL);
    char h_id[64], h_ts[64], h_sig[256];
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", d->id);
    snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", ts);
    if (webhook_signature(w, d, ts, body, h_sig, sizeof(h_sig), t->error,
                          sizeof(t->error)) == 0) {
        const char *headers[3] = { h_id, h_ts, h_sig };
        webhook_post(w->cfg, d->url, headers, body, strlen(body), t);
    }
    free(body);
}

/* Takes, sends and records one due delivery. Returns 1 when one was
 * handled, 0 when none is due, -1 on a database error. */
static int webhook_one(struct webhook_sender *w)
{
    const struct cfg *cfg = w->cfg;
    struct store_webhook_due d;
    int rc = store_webhook_take(w->db, cfg->webhook_timeout_ms / 1000 + WEBHOOK_LEASE_EXTRA_S,
                                &d);
    if (rc != STORE_OK)
        return rc == STORE_NOT_FOUND ? 0 : -1;
    struct webhook_try t;
    memset(&t, 0, sizeof(t));
    t.allow_private = cfg->webhook_allow_private != 0;
    int64_t start = time_mono_ms();
    webhook_attempt(w, &d, &t);
    int ok = t.error[0] == '\0';
    struct store_webhook_result r = {
        .ok = ok, .http_status = (int)t.http_status, .error = ok ? NULL : t.error,
        .retry_base_s = cfg->webhook_retry_base_s, .retry_max_s = cfg->webhook_retry_max_s,
        .retry_window_s = cfg->webhook_retry_s,
    };
    int gave_up = 0;
    long retry_in = 0;
    rc = store_webhook_record(w->db, &d, &r, &gave_up, &retry_in);
    const char *result = ok ? "delivered" : gave_up ? "gave_up" : "retry";
    int64_t took_ms = time_mono_ms() - start;
    metric_add(ocm(OCM_WEBHOOK_ATTEMPTS), METRIC_LABELS(result), 1);
    metric_observe(ocm(OCM_WEBHOOK_DURATION), NULL, (double)took_ms / 1000.0);
    log_msg(ok ? LOG_INFO : LOG_WARN, "webhook.attempt",
            "job=%s delivery=%s attempt=%d status=%ld result=%s duration_ms=%lld "
            "retry_in_s=%ld error=\"%s\"", d.job_id, d.id, d.attempt, t.http_status, result,
            (long long)took_ms, ok || gave_up ? 0 : retry_in, LOG_ESC(t.error));
    store_webhook_due_free(&d);
    return rc == STORE_OK || rc == STORE_NOT_FOUND ? 1 : -1;
}

/* Sleeps up to ms, or until webhook_stop(). */
static void webhook_idle(struct webhook_sender *w, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    if (!atomic_load(&w->stop))
        pthread_cond_timedwait(&w->cv, &w->mu, &until);
    pthread_mutex_unlock(&w->mu);
}

static void *webhook_main(void *arg)
{
    struct webhook_sender *w = arg;
    while (!atomic_load(&w->stop)) {
        int got = db_ensure(w->db, NULL, 0) == DB_OK ? webhook_one(w) : -1;
        if (got <= 0)
            webhook_idle(w, WEBHOOK_IDLE_MS);
    }
    return NULL;
}

int webhook_start(const struct cfg *cfg, struct webhook_sender **out)
{
    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("webhook.start_failed", "error=\"curl_global_init failed\"");
        return -1;
    }
    struct webhook_sender *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -1;
    w->cfg = cfg;
    w->db = db_new(cfg->database_url, "opencode-janitor-webhooks");
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    atomic_init(&w->stop, 0);
    if (pthread_create(&w->thread, NULL, webhook_main, w) != 0) {
        log_error("webhook.start_failed", "error=\"pthread_create failed\"");
        db_free(w->db);
        free(w);
        return -1;
    }
    log_info("webhook.started", "timeout_ms=%ld retry_s=%ld retry_base_s=%ld "
             "allow_private=%ld", cfg->webhook_timeout_ms, cfg->webhook_retry_s,
             cfg->webhook_retry_base_s, cfg->webhook_allow_private);
    *out = w;
    return 0;
}

long webhook_send_due(const struct cfg *cfg)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("webhook.start_failed", "error=\"curl_global_init failed\"");
        return -1;
    }
    struct webhook_sender w;
    memset(&w, 0, sizeof(w));
    w.cfg = cfg;
    w.db = db_new(cfg->database_url, "opencode-janitor-webhooks");
    long made = 0;
    int got = 1;
    while (made < WEBHOOK_ONCE_MAX && got > 0) {
        got = db_ensure(w.db, NULL, 0) == DB_OK ? webhook_one(&w) : -1;
        made += got > 0;
    }
    db_free(w.db);
    curl_global_cleanup();
    return got < 0 && made == 0 ? -1 : made;
}

void webhook_stop(struct webhook_sender *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stop, 1);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    db_free(w->db);
    free(w);
    curl_global_cleanup();
}
