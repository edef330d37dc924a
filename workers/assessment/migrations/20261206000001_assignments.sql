-- Assignments: text or file hand-ins graded by rubric, a late policy, grade release, and the
-- plagiarism reports of text submissions.

CREATE TABLE assignments (
    id                      UUID PRIMARY KEY,
    course_id               UUID NOT NULL,
    title                   TEXT NOT NULL,
    instructions            TEXT NOT NULL,
    submission_type         TEXT NOT NULL CHECK (submission_type IN ('text', 'file', 'text_or_file')),
    rubric                  JSONB NOT NULL,
    max_points              INTEGER NOT NULL CHECK (max_points > 0),
    due_at                  TIMESTAMPTZ NOT NULL,
    grace_minutes           INTEGER NOT NULL CHECK (grace_minutes >= 0),
    penalty_percent_per_day INTEGER NOT NULL CHECK (penalty_percent_per_day BETWEEN 0 AND 100),
    cutoff_at               TIMESTAMPTZ CHECK (cutoff_at >= due_at),
    check_plagiarism        BOOLEAN NOT NULL,
    released_at             TIMESTAMPTZ,
    created_by              UUID NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX assignments_by_course ON assignments (course_id);

-- A learner's current hand-in (a resubmission replaces it and bumps the version).
CREATE TABLE submissions (
    id               UUID PRIMARY KEY,
    assignment_id    UUID NOT NULL REFERENCES assignments (id),
    user_id          UUID NOT NULL,
    version          INTEGER NOT NULL CHECK (version > 0),
    text             TEXT,
    asset_id         UUID,
    submitted_at     TIMESTAMPTZ NOT NULL,
    late_days        INTEGER NOT NULL CHECK (late_days >= 0),
    penalty_percent  INTEGER NOT NULL CHECK (penalty_percent BETWEEN 0 AND 100),
    -- Set when graded: {scores, feedback, raw_points}; cleared by a resubmission.
    grade            JSONB,
    points_hundredths INTEGER,
    graded_by        UUID,
    graded_at        TIMESTAMPTZ,
    CHECK (text IS NOT NULL OR asset_id IS NOT NULL),
    UNIQUE (assignment_id, user_id)
);

-- The plagiarism check of a submission's text, for the version it was computed on.
CREATE TABLE similarity_reports (
    submission_id UUID PRIMARY KEY REFERENCES submissions (id),
    version       INTEGER NOT NULL,
    matches       JSONB NOT NULL,
    checked_at    TIMESTAMPTZ NOT NULL
);
