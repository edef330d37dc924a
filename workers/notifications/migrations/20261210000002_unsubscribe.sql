-- Signed unsubscribe links: the worker's HMAC key (made once, shared by every replica) and the
-- links already used (each works once).
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE unsubscribe_uses (
    token_hash BYTEA PRIMARY KEY,
    user_id    UUID NOT NULL,
    kind       TEXT NOT NULL,
    used_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
