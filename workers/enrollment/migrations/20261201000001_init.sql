-- Enrollment: pinned course versions, enrolments, lesson progress, certificates.

-- What an enrolment is held to: the outline (modules with their drip delay, lessons with their
-- required flag) of one published version of a course, as the catalog served it at enrol time.
-- Shared by every enrolment made against that version; never updated.
CREATE TABLE course_versions (
    course_id     UUID NOT NULL,
    version       BIGINT NOT NULL,
    instructor_id UUID NOT NULL,
    title         TEXT NOT NULL,
    slug          TEXT NOT NULL,
    outline       JSONB NOT NULL,
    pinned_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (course_id, version)
);

CREATE TABLE enrollments (
    id               UUID PRIMARY KEY,
    user_id          UUID NOT NULL,
    course_id        UUID NOT NULL,
    course_version   BIGINT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'completed', 'cancelled')),
    required_total   INTEGER NOT NULL CHECK (required_total >= 0),
    required_done    INTEGER NOT NULL DEFAULT 0 CHECK (required_done >= 0),
    enrolled_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ,
    cancelled_at     TIMESTAMPTZ,
    last_activity_at TIMESTAMPTZ,
    FOREIGN KEY (course_id, course_version) REFERENCES course_versions (course_id, version),
    CONSTRAINT enrollments_completed_has_time CHECK ((status = 'completed') = (completed_at IS NOT NULL)),
    CONSTRAINT enrollments_cancelled_has_time CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);
-- At most one live (active or completed) enrolment per learner and course: enrolling twice, even
-- concurrently, yields one row. Cancelled ones stay as history, so re-enrolling after unenrolling
-- makes a fresh enrolment.
CREATE UNIQUE INDEX enrollments_one_live ON enrollments (user_id, course_id) WHERE status <> 'cancelled';
CREATE INDEX enrollments_by_user ON enrollments (user_id, id);
CREATE INDEX enrollments_by_course ON enrollments (course_id, id);

CREATE TABLE lesson_progress (
    enrollment_id UUID NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
    lesson_id     UUID NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('started', 'completed')),
    percent       INTEGER NOT NULL CHECK (percent BETWEEN 0 AND 100),
    position_secs INTEGER CHECK (position_secs >= 0),
    started_at    TIMESTAMPTZ NOT NULL,
    completed_at  TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (enrollment_id, lesson_id)
);

-- One certificate per completed enrolment; the code is the public verification key.
CREATE TABLE certificates (
    enrollment_id UUID PRIMARY KEY REFERENCES enrollments (id),
    code          TEXT NOT NULL UNIQUE,
    user_id       UUID NOT NULL,
    course_id     UUID NOT NULL,
    course_title  TEXT NOT NULL,
    issued_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
