-- Notifications: who can be reached where, the in-app inbox, and the delivery log.

-- What notifications knows of each user, from identity events (no worker reads another's
-- tables): the address emails go to and the name they greet.
CREATE TABLE recipients (
    user_id      UUID PRIMARY KEY,
    email        TEXT NOT NULL,
    display_name TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per notification delivered in-app. `id` is the job's stable id, so a redelivered job
-- inserts nothing; `seq` orders the inbox and backs its cursor.
CREATE TABLE notifications (
    seq        BIGSERIAL UNIQUE,
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL,
    kind       TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    link       TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    read_at    TIMESTAMPTZ
);
CREATE INDEX notifications_inbox ON notifications (user_id, seq DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;

-- The delivery log: one row per notification and channel. `sent` is recorded in the same
-- transaction that held the row lock while sending, and checked before any send, so a
-- redelivered job never sends twice.
CREATE TABLE deliveries (
    notification_id UUID NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('in_app', 'email')),
    user_id         UUID NOT NULL,
    kind            TEXT NOT NULL,
    -- `skipped`: the user turned this channel off for this kind.
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Why the last attempt failed (a retry may still follow while `queued`).
    last_error      TEXT,
    queued_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at         TIMESTAMPTZ,
    PRIMARY KEY (notification_id, channel),
    CONSTRAINT deliveries_sent_has_time CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);

-- What a user turned off (or back on) per kind and channel; no row means on.
CREATE TABLE preferences (
    user_id    UUID NOT NULL,
    kind       TEXT NOT NULL,
    channel    TEXT NOT NULL CHECK (channel IN ('in_app', 'email')),
    enabled    BOOLEAN NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, kind, channel)
);
