/*
 * outbox.h - publishes the job_outbox table to RabbitMQ.
 *
 * A job change and its outbox row commit together (store_*.c); a relay
 * pass then publishes the rows with publisher confirms and deletes those
 * the broker confirmed. A crash between the two publishes a row again
 * later: workers treat the duplicate as a no-op. Rows are taken FOR
 * UPDATE SKIP LOCKED, so the relays of several api processes, workers and
 * janitors never publish the same row at once.
 */
#ifndef OC_OUTBOX_H
#define OC_OUTBOX_H

struct db;
struct mq;

enum outbox_rc {
    OUTBOX_OK          = 0,   /* every row taken was published */
    OUTBOX_DB_DOWN     = -1,  /* the database failed: retry later */
    OUTBOX_BROKER_DOWN = -2,  /* the broker failed: reopen mq with backoff */
};

/*
 * Publishes up to max outbox rows on mq; *published gets how many (rows
 * confirmed before a failure are still removed). Returns an enum
 * outbox_rc.
 */
int outbox_relay(struct db *db, struct mq *mq, int max, int *published);

#endif
