-- Idempotency-Key on POST /session and POST /job (README, "Idempotency"),
-- and the index that pages a key's own sessions (GET /sessions).
--
-- Independent of migrations 008 and 009: only tables of 001 are named.

CREATE TABLE idempotency_keys (
    key_id        text NOT NULL,
    method        text NOT NULL,
    path          text NOT NULL,
    idem_key      text NOT NULL CHECK (length(idem_key) BETWEEN 1 AND 255),
    body_sha256   text NOT NULL CHECK (body_sha256 ~ '^[0-9a-f]{64}$'),
    status        integer CHECK (status BETWEEN 200 AND 499),
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (key_id, method, path, idem_key),
    CHECK ((completed_at IS NULL) = (status IS NULL))
);
COMMENT ON TABLE idempotency_keys IS
    'One row per Idempotency-Key a client sent on POST /session or POST /job: the answer it got, replayed byte for byte when the same key comes again with the same body within IDEMPOTENCY_TTL_S. The janitor deletes older rows each pass.';
COMMENT ON COLUMN idempotency_keys.key_id IS
    'The API key that sent the request (api_keys.id or "bootstrap"): keys never see each other''s entries.';
COMMENT ON COLUMN idempotency_keys.method IS 'HTTP method of the request (POST).';
COMMENT ON COLUMN idempotency_keys.path IS
    'Path and query string as the client sent them (/job?session_id=...): part of the scope.';
COMMENT ON COLUMN idempotency_keys.idem_key IS
    'The Idempotency-Key header (1 to 255 printable ASCII characters).';
COMMENT ON COLUMN idempotency_keys.body_sha256 IS
    'SHA-256 (hex) of the request body bytes; the same key with another body is refused (422 idempotency_key_reused).';
COMMENT ON COLUMN idempotency_keys.status IS
    'HTTP status of the stored answer (2xx or 4xx; 5xx and 429 answers are not stored, their row is deleted so the client may retry). NULL while in flight.';
COMMENT ON COLUMN idempotency_keys.body IS
    'The stored answer''s body bytes (JSON). NULL while in flight.';
COMMENT ON COLUMN idempotency_keys.created_at IS
    'When the first request with this key arrived; the entry is replayed until created_at + IDEMPOTENCY_TTL_S.';
COMMENT ON COLUMN idempotency_keys.completed_at IS
    'When the answer was stored. NULL: the first request is still in flight (duplicates get 409 idempotency_in_flight); an in-flight row older than 5 minutes is taken to be abandoned by a crashed API and taken over.';
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- GET /sessions pages a key's active sessions in (created_at, id) order.
CREATE INDEX sessions_key_page_idx ON sessions (api_key_id, created_at, id)
    WHERE status = 'active';
