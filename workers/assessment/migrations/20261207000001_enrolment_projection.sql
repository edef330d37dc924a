-- Who is enrolled where, as enrollment's events (EVT_ENROLLMENT) tell it: a quiz start checks
-- this table in its own statement instead of asking enrollment. A learner not found here is
-- asked of enrollment (the events may not have arrived yet) and recorded.
CREATE TABLE learner_enrolments (
    enrollment_id UUID PRIMARY KEY,
    user_id       UUID NOT NULL,
    course_id     UUID NOT NULL,
    -- false once cancelled (unenrolled or refunded); an enrolment never comes back to life.
    live          BOOLEAN NOT NULL
);
CREATE INDEX learner_enrolments_live ON learner_enrolments (user_id, course_id) WHERE live;

-- Papers are written once per attempt and read on every save: lz4 compresses them several
-- times faster than the default pglz (a server built without lz4 keeps pglz).
DO $$
BEGIN
    ALTER TABLE attempts ALTER COLUMN paper SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available: attempts.paper keeps pglz';
END
$$;
