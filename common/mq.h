/*
 * mq.h - the RabbitMQ side: "job X is ready" messages.
 *
 * The broker carries job ids only; PostgreSQL holds the jobs. Messages are
 * persistent on a durable queue, published with mandatory=1 and publisher
 * confirms, so mq_publish() returns 0 only once the broker has taken
 * responsibility for the message. A struct mq is one connection with one
 * channel and belongs to one thread (rabbitmq-c is not thread-safe).
 *
 * After any error the connection is unusable: mq_close() it and open a
 * new one (with backoff) later.
 */
#ifndef OC_MQ_H
#define OC_MQ_H

#include <stddef.h>
#include <stdint.h>

struct mq;

/* Connects to url (amqp://user:pass@host:port/vhost), opens a channel,
 * declares the durable queue and turns on publisher confirms. Returns the
 * connection, or NULL with a reason in err. */
struct mq *mq_open(const char *url, const char *queue, char *err, size_t err_len);

/* Closes the connection politely if it is still up. Accepts NULL. */
void mq_close(struct mq *mq);

/* Publishes job_id and waits up to timeout_ms for the broker's confirm.
 * Returns 0 when confirmed, -1 otherwise (nacked, unroutable, timed out or
 * connection lost). Must not be called while consuming. */
int mq_publish(struct mq *mq, const char *job_id, int timeout_ms);

/* Starts consuming with the given prefetch (basic.qos + basic.consume).
 * Returns 0 or -1. */
int mq_consume_start(struct mq *mq, int prefetch);

/* Cancels the consumer. Deliveries that raced the cancel are handed back
 * to the broker (nack with requeue). Returns 0 or -1. */
int mq_consume_stop(struct mq *mq);

enum mq_next_rc {
    MQ_DELIVERY = 1,    /* a message: its body and tag were copied */
    MQ_IDLE     = 0,    /* nothing arrived in time */
    MQ_FAILED   = -1,   /* the connection or channel failed: mq_close() it */
};

/* Waits up to timeout_ms for a delivery. On MQ_DELIVERY the job id is
 * copied to id (NUL-terminated, cut to id_len-1) and its tag to *tag. */
enum mq_next_rc mq_next(struct mq *mq, int timeout_ms, char *id, size_t id_len,
                        uint64_t *tag);

/* Acknowledges, or hands back (requeue), one delivery. Return 0 or -1. */
int mq_ack(struct mq *mq, uint64_t tag);
int mq_nack(struct mq *mq, uint64_t tag, int requeue);

#endif
