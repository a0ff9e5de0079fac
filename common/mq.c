/* mq.c - see mq.h. */
#include "mq.h"
#include "log.h"
#include "xalloc.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define MQ_CHANNEL 1
/* Heartbeats let both sides notice a dead peer. They are serviced only
 * inside rabbitmq-c calls; a worker slot that runs a job for a long time
 * may miss them and lose its connection, which is harmless: deliveries
 * are acked before a job runs, and the slot reconnects afterwards. */
#define MQ_HEARTBEAT_S 30

struct mq {
    amqp_connection_state_t conn;
    char *queue;
    uint64_t next_publish_seq;   /* delivery tag of our next publish */
    int consuming;
    char consumer_tag[256];      /* from basic.consume-ok, for basic.cancel */
};

/* Sorts a reply into ok / failure and writes the reason (rabbitmq-c's
 * examples/utils.c die_on_amqp_error, without dying). */
static int mq_reply_ok(amqp_rpc_reply_t r, const char *what, char *err, size_t err_len)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 1;
    case AMQP_RESPONSE_NONE:
        snprintf(err, err_len, "%s: missing RPC reply", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(err, err_len, "%s: %s", what, amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            snprintf(err, err_len, "%s: server closed connection: %.*s", what,
                     (int)m->reply_text.len, (char *)m->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            snprintf(err, err_len, "%s: server closed channel: %.*s", what,
                     (int)m->reply_text.len, (char *)m->reply_text.bytes);
        } else {
            snprintf(err, err_len, "%s: unexpected server method 0x%08X", what, r.reply.id);
        }
        break;
    }
    return 0;
}

struct mq *mq_open(const char *url, const char *queue, char *err, size_t err_len)
{
    struct amqp_connection_info ci;
    char *buf = xstrdup(url);       /* amqp_parse_url writes into its input */
    struct mq *mq = xcalloc(1, sizeof(*mq));
    amqp_default_connection_info(&ci);
    if (amqp_parse_url(buf, &ci) != AMQP_STATUS_OK) {
        snprintf(err, err_len, "AMQP_URL is not a valid amqp:// URL");
        goto fail;
    }
    mq->queue = xstrdup(queue);
    mq->conn = amqp_new_connection();
    amqp_socket_t *sock = mq->conn ? amqp_tcp_socket_new(mq->conn) : NULL;
    if (sock == NULL) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
    int st = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv);
    if (st != AMQP_STATUS_OK) {
        snprintf(err, err_len, "could not connect to %s:%d: %s", ci.host, ci.port,
                 amqp_error_string2(st));
        goto fail;
    }
    if (!mq_reply_ok(amqp_login(mq->conn, ci.vhost, 0, 131072, MQ_HEARTBEAT_S,
                                AMQP_SASL_METHOD_PLAIN, ci.user, ci.password),
                     "login", err, err_len))
        goto fail;
    amqp_channel_open(mq->conn, MQ_CHANNEL);
    if (!mq_reply_ok(amqp_get_rpc_reply(mq->conn), "channel.open", err, err_len))
        goto fail;
    amqp_queue_declare(mq->conn, MQ_CHANNEL, amqp_cstring_bytes(queue), 0, 1, 0, 0,
                       amqp_empty_table);
    if (!mq_reply_ok(amqp_get_rpc_reply(mq->conn), "queue.declare", err, err_len))
        goto fail;
    amqp_confirm_select(mq->conn, MQ_CHANNEL);
    if (!mq_reply_ok(amqp_get_rpc_reply(mq->conn), "confirm.select", err, err_len))
        goto fail;
    mq->next_publish_seq = 1;
    free(buf);
    return mq;

fail:
    free(buf);
    mq_close(mq);
    return NULL;
}

void mq_close(struct mq *mq)
{
    if (mq == NULL)
        return;
    if (mq->conn != NULL) {
        /* Best effort: on a dead socket these fail fast. */
        amqp_channel_close(mq->conn, MQ_CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_connection_close(mq->conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(mq->conn);
    }
    free(mq->queue);
    free(mq);
}

static int mq_remaining_ms(const struct timeval *deadline)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    long ms = (deadline->tv_sec - now.tv_sec) * 1000L +
              (deadline->tv_usec - now.tv_usec) / 1000L;
    return ms < 0 ? 0 : (int)ms;
}

int mq_publish(struct mq *mq, const char *job_id, int timeout_ms)
{
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof(props));
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.delivery_mode = 2;     /* persistent */
    props.content_type = amqp_cstring_bytes("text/plain");

    uint64_t seq = mq->next_publish_seq++;
    int st = amqp_basic_publish(mq->conn, MQ_CHANNEL, amqp_empty_bytes,
                                amqp_cstring_bytes(mq->queue), 1, 0, &props,
                                amqp_cstring_bytes(job_id));
    if (st != AMQP_STATUS_OK) {
        log_warn("mq.publish_failed", "job=%s error=\"%s\"", job_id, amqp_error_string2(st));
        return -1;
    }

    struct timeval deadline;
    gettimeofday(&deadline, NULL);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_usec += (timeout_ms % 1000) * 1000;
    if (deadline.tv_usec >= 1000000) {
        deadline.tv_sec++;
        deadline.tv_usec -= 1000000;
    }

    int returned = 0;
    for (;;) {
        int ms = mq_remaining_ms(&deadline);
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
        amqp_frame_t frame;
        st = amqp_simple_wait_frame_noblock(mq->conn, &frame, &tv);
        if (st != AMQP_STATUS_OK) {
            log_warn("mq.confirm_failed", "job=%s error=\"%s\"", job_id,
                     amqp_error_string2(st));
            return -1;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD)
            continue;                 /* body of a basic.return */
        switch (frame.payload.method.id) {
        case AMQP_BASIC_RETURN_METHOD:
            returned = 1;             /* unroutable; its ack follows */
            break;
        case AMQP_BASIC_ACK_METHOD: {
            amqp_basic_ack_t *a = frame.payload.method.decoded;
            if (a->delivery_tag == seq || (a->multiple && a->delivery_tag >= seq)) {
                amqp_maybe_release_buffers(mq->conn);
                if (returned)
                    log_warn("mq.unroutable", "job=%s queue=%s", job_id, mq->queue);
                return returned ? -1 : 0;
            }
            break;
        }
        case AMQP_BASIC_NACK_METHOD: {
            amqp_basic_nack_t *n = frame.payload.method.decoded;
            if (n->delivery_tag == seq || (n->multiple && n->delivery_tag >= seq)) {
                log_warn("mq.nacked", "job=%s", job_id);
                return -1;
            }
            break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
            log_warn("mq.closed_by_server", "job=%s", job_id);
            return -1;
        default:
            break;
        }
    }
}

int mq_consume_start(struct mq *mq, int prefetch)
{
    char err[256];
    amqp_basic_qos(mq->conn, MQ_CHANNEL, 0, (uint16_t)prefetch, 0);
    if (!mq_reply_ok(amqp_get_rpc_reply(mq->conn), "basic.qos", err, sizeof(err))) {
        log_warn("mq.consume_failed", "error=\"%s\"", err);
        return -1;
    }
    amqp_basic_consume_ok_t *ok =
        amqp_basic_consume(mq->conn, MQ_CHANNEL, amqp_cstring_bytes(mq->queue),
                           amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    if (!mq_reply_ok(amqp_get_rpc_reply(mq->conn), "basic.consume", err, sizeof(err)) ||
        ok == NULL || ok->consumer_tag.len >= sizeof(mq->consumer_tag)) {
        log_warn("mq.consume_failed", "error=\"%s\"", err);
        return -1;
    }
    memcpy(mq->consumer_tag, ok->consumer_tag.bytes, ok->consumer_tag.len);
    mq->consumer_tag[ok->consumer_tag.len] = '\0';
    mq->consuming = 1;
    return 0;
}

int mq_consume_stop(struct mq *mq)
{
    char err[256];
    if (!mq->consuming)
        return 0;
    mq->consuming = 0;
    amqp_basic_cancel(mq->conn, MQ_CHANNEL, amqp_cstring_bytes(mq->consumer_tag));
    if (!mq_reply_ok(amqp_get_rpc_reply(mq->conn), "basic.cancel", err, sizeof(err))) {
        log_warn("mq.cancel_failed", "error=\"%s\"", err);
        return -1;
    }
    /* Deliveries that arrived before cancel-ok were queued by rabbitmq-c:
     * give them back so another consumer takes them. */
    while (amqp_frames_enqueued(mq->conn)) {
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(mq->conn, &frame) != AMQP_STATUS_OK)
            return -1;
        if (frame.frame_type == AMQP_FRAME_METHOD &&
            frame.payload.method.id == AMQP_BASIC_DELIVER_METHOD) {
            amqp_basic_deliver_t *d = frame.payload.method.decoded;
            if (amqp_basic_nack(mq->conn, MQ_CHANNEL, d->delivery_tag, 0, 1) != 0)
                return -1;
        }
    }
    amqp_maybe_release_buffers(mq->conn);
    return 0;
}

enum mq_next_rc mq_next(struct mq *mq, int timeout_ms, char *id, size_t id_len,
                        uint64_t *tag)
{
    amqp_envelope_t env;
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };

    amqp_maybe_release_buffers(mq->conn);
    amqp_rpc_reply_t r = amqp_consume_message(mq->conn, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        size_t n = env.message.body.len < id_len - 1 ? env.message.body.len : id_len - 1;
        memcpy(id, env.message.body.bytes, n);
        id[n] = '\0';
        *tag = env.delivery_tag;
        amqp_destroy_envelope(&env);
        return MQ_DELIVERY;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_TIMEOUT)
        return MQ_IDLE;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        /* A frame other than a delivery: a confirm or a close. */
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(mq->conn, &frame) != AMQP_STATUS_OK)
            return MQ_FAILED;
        if (frame.frame_type == AMQP_FRAME_METHOD &&
            (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
             frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD ||
             frame.payload.method.id == AMQP_BASIC_CANCEL_METHOD)) {
            log_warn("mq.consumer_closed", "method=0x%08X", frame.payload.method.id);
            return MQ_FAILED;
        }
        return MQ_IDLE;
    }
    char err[256];
    mq_reply_ok(r, "consume", err, sizeof(err));
    log_warn("mq.consume_error", "error=\"%s\"", err);
    return MQ_FAILED;
}

int mq_ack(struct mq *mq, uint64_t tag)
{
    return amqp_basic_ack(mq->conn, MQ_CHANNEL, tag, 0) == 0 ? 0 : -1;
}

int mq_nack(struct mq *mq, uint64_t tag, int requeue)
{
    return amqp_basic_nack(mq->conn, MQ_CHANNEL, tag, 0, requeue) == 0 ? 0 : -1;
}
