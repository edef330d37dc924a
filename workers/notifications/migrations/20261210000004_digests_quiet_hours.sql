-- Digests and quiet hours: each user's schedule, and the emails held for their next digest.

CREATE TABLE schedules (
    user_id     UUID PRIMARY KEY,
    digest      TEXT NOT NULL DEFAULT 'off' CHECK (digest IN ('off', 'daily', 'weekly')),
    -- Quiet hours in the user's time zone (all three or none).
    quiet_start TIME,
    quiet_end   TIME,
    time_zone   TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT schedules_quiet_complete CHECK (
        (quiet_start IS NULL) = (quiet_end IS NULL) AND (quiet_start IS NULL) = (time_zone IS NULL))
);
CREATE INDEX schedules_digest ON schedules (digest) WHERE digest <> 'off';

-- An email held for a digest: what it would have said, in one line. `digest_id` is the digest
-- notification that carried it (set in the transaction that records that email `sent`).
CREATE TABLE digest_items (
    notification_id UUID PRIMARY KEY,
    user_id         UUID NOT NULL,
    kind            TEXT NOT NULL,
    line            TEXT NOT NULL,
    link            TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    digest_id       UUID
);
CREATE INDEX digest_items_pending ON digest_items (user_id, created_at) WHERE digest_id IS NULL;

ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('queued', 'sent', 'failed', 'skipped', 'digested'));
