/*
 * webhook.h - the janitor's webhook sender (README, "Webhooks").
 *
 * A thread of its own, with its own database connection, so a slow
 * receiver never delays a janitor pass (purging, reaping, the outbox). It
 * takes due rows of webhook_deliveries one at a time (FOR UPDATE SKIP
 * LOCKED plus a lease: several janitors deliver side by side, never the
 * same row at once), renders the job's status document exactly as GET
 * /job/status does (render_job), signs it with its key's secret(s)
 * (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature)
 * and POSTs it with libcurl within WEBHOOK_TIMEOUT_MS. Any 2xx is
 * delivered; anything else is retried after WEBHOOK_RETRY_BASE_S, doubling
 * up to WEBHOOK_RETRY_MAX_S, until WEBHOOK_RETRY_S after the job ended.
 * Each address libcurl connects to is checked first: loopback,
 * link-local, private, unspecified and multicast addresses are refused
 * (the attempt's error) unless WEBHOOK_ALLOW_PRIVATE=1. No proxy from the
 * environment is used and redirects are not followed. Each attempt logs
 * one webhook.attempt line: job, delivery id, attempt, HTTP status,
 * result, duration; never the secret, the URL or the body. When nothing
 * is due it looks again every second.
 *
 * Ownership: webhook_start() returns a sender that webhook_stop() joins
 * and frees. Threading: call both from the janitor's main thread; curl's
 * global init happens in webhook_start() (before the thread exists).
 */
#ifndef OC_JANITOR_WEBHOOK_H
#define OC_JANITOR_WEBHOOK_H

#include "config.h"

struct webhook_sender;

/* Starts the sender thread. Returns 0, or -1 (logged). */
int webhook_start(const struct cfg *cfg, struct webhook_sender **out);

/* Asks the thread to stop after its current attempt, joins it and frees
 * everything. Accepts NULL. */
void webhook_stop(struct webhook_sender *w);

/* Most attempts one webhook_send_due() makes. */
#define WEBHOOK_ONCE_MAX 1000

/* opencode-janitor --once: makes the attempts due now on the calling
 * thread, up to WEBHOOK_ONCE_MAX (a failed one is due again only after
 * its backoff), and returns how many it made, or -1 when the database
 * failed first. */
long webhook_send_due(const struct cfg *cfg);

#endif
