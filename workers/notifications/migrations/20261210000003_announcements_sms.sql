-- Announcements (an instructor to a course's learners) and their fan-out progress; text messages
-- (the number a user gave, and the `sms` channel in the log and preferences).

CREATE TABLE announcements (
    id           UUID PRIMARY KEY,
    course_id    UUID NOT NULL,
    author_id    UUID NOT NULL,
    course_title TEXT NOT NULL,
    course_slug  TEXT NOT NULL,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'delivering', 'done')),
    -- The last learner (user id) whose page is stored: a redelivered fan-out resumes after it.
    after_user   UUID,
    recipients   BIGINT NOT NULL DEFAULT 0 CHECK (recipients >= 0),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ,
    CONSTRAINT announcements_done_has_time CHECK ((status = 'done') = (finished_at IS NOT NULL))
);
-- The sweeper re-queues fan-outs whose job was never stored (the process died after the commit).
CREATE INDEX announcements_open ON announcements (created_at) WHERE status <> 'done';
CREATE INDEX announcements_course ON announcements (course_id, created_at DESC);

ALTER TABLE recipients ALTER COLUMN email DROP NOT NULL;
ALTER TABLE recipients ALTER COLUMN display_name DROP NOT NULL;
ALTER TABLE recipients ADD COLUMN phone TEXT CHECK (phone ~ '^\+[1-9][0-9]{6,14}$');

ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check CHECK (channel IN ('in_app', 'email', 'sms'));
ALTER TABLE preferences DROP CONSTRAINT preferences_channel_check;
ALTER TABLE preferences ADD CONSTRAINT preferences_channel_check CHECK (channel IN ('in_app', 'email', 'sms'));
