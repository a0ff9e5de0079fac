/*
 * idempotency.h - Idempotency-Key on the routes the table marks
 * idempotent (POST /session, POST /job; README "Idempotency").
 *
 * The dispatcher calls api_idem_run() instead of the route's handler.
 * Without the header it just runs the handler. With it, the body is read
 * and hashed first (the handler then gets it through api_read_body()),
 * the scope (key, method, path+query, Idempotency-Key) is reserved in
 * idempotency_keys, and the handler's answer is kept (struct api_capture)
 * and stored; a later request in the same scope gets it back byte for
 * byte with Idempotent-Replayed: true.
 *
 * Threading: one request on one server thread; all state is in the
 * database.
 */
#ifndef OC_IDEMPOTENCY_H
#define OC_IDEMPOTENCY_H

#include "api.h"

/* Longest Idempotency-Key accepted (1..255 printable ASCII). */
#define IDEM_KEY_MAX 255

/* An in-flight entry older than this is taken to be abandoned (its API
 * crashed mid-request) and may be taken over. */
#define IDEM_ABANDON_S 300

/* Runs handler for r honouring Idempotency-Key. Returns the status sent. */
int api_idem_run(struct api_req *r, api_handler handler);

/* 1 when key is a valid Idempotency-Key value. */
int api_idem_key_valid(const char *key);

#endif
