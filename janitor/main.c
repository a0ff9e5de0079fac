/* main.c - opencode-janitor: runs janitor_sweep() on a schedule. */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "janitor.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "mq.h"
#include "prog.h"
#include "webhook.h"

int main(int argc, char **argv)
{
    int once = argc == 2 && strcmp(argv[1], "--once") == 0;
    if (argc > 1 && !once) {
        fprintf(stderr, "usage: opencode-janitor [--once]\n");
        return 2;
    }
    struct cfg cfg;
    int rc = prog_init("opencode-janitor", CFG_ROLE_JANITOR, &cfg);
    if (rc != 0)
        return rc;
    /* The wait for a signal doubles as the sleep between passes. */
    sigset_t sigs;
    prog_signals(&sigs);

    /* METRICS_LISTEN; every step and role renders from the first scrape. */
    struct metrics_server *metrics = NULL;
    if (metrics_server_start(&cfg, "opencode-janitor", OCM_FOR_JANITOR, &metrics) != 0) {
        cfg_free(&cfg);
        return 1;
    }
    static const char *const steps[] = { "requeued", "failed", "expired", "removed", "pruned",
                                         "republished", "published", "outputs_pruned" };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        metric_touch(ocm(OCM_JANITOR_ROWS), METRIC_LABELS(steps[i]));
    metric_touch(ocm(OCM_JANITOR_PASSES), METRIC_LABELS("leader"));
    metric_touch(ocm(OCM_JANITOR_PASSES), METRIC_LABELS("follower"));
    static const char *const results[] = { "delivered", "retry", "gave_up" };
    for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++)
        metric_touch(ocm(OCM_WEBHOOK_ATTEMPTS), METRIC_LABELS(results[i]));

    struct db *db = db_new(cfg.database_url, "opencode-janitor");
    struct mq *mq = NULL;
    /* Webhooks go out from a thread of their own (janitor/webhook.h), so
     * a slow receiver never delays a pass. */
    struct webhook_sender *webhooks = NULL;
    if (!once && webhook_start(&cfg, &webhooks) != 0)
        log_warn("janitor.webhooks_off", "reason=\"the webhook sender did not start\"");
    log_info("janitor.started", "interval_s=%ld retention_s=%ld", cfg.janitor_interval_s,
             cfg.job_retention_s);
    for (;;) {
        enum sweep_rc r = janitor_sweep(&cfg, db, &mq);
        if (once) {
            long sent = r == SWEEP_DB_DOWN ? -1 : webhook_send_due(&cfg);
            log_info("janitor.webhooks_once", "attempts=%ld", sent);
            rc = r == SWEEP_DB_DOWN || sent < 0 ? 1 : 0;
            break;
        }
        if (prog_wait_signal(&sigs, cfg.janitor_interval_s * 1000) != 0)
            break;
    }
    webhook_stop(webhooks);
    log_info("janitor.stopped", "once=%d", once);
    mq_close(mq);
    db_free(db);
    metrics_server_stop(metrics);
    cfg_free(&cfg);
    return rc;
}
