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

struct pg_conn;
struct mq;

/*
 * Publishes up to max outbox rows on mq. Returns the number published
 * (>= 0), or a negative value when the database or the broker failed:
 * -1 database, -2 broker (the caller then reopens mq with backoff). Rows
 * confirmed before a failure are still removed.
 */
int outbox_relay(struct pg_conn *db, struct mq *mq, int max);

#endif
