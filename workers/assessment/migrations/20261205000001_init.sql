-- Assessment: question banks, quizzes, attempts with their papers and answers.

CREATE TABLE banks (
    id         UUID PRIMARY KEY,
    course_id  UUID NOT NULL,
    title      TEXT NOT NULL,
    created_by UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX banks_by_course ON banks (course_id);

-- Questions are never edited (a changed question is a new one), so papers and grades that
-- refer to them stay true.
CREATE TABLE questions (
    id       UUID PRIMARY KEY,
    bank_id  UUID NOT NULL REFERENCES banks (id),
    position INTEGER NOT NULL,
    prompt   TEXT NOT NULL,
    points   INTEGER NOT NULL CHECK (points >= 0),
    body     JSONB NOT NULL,
    UNIQUE (bank_id, position)
);

CREATE TABLE quizzes (
    id              UUID PRIMARY KEY,
    course_id       UUID NOT NULL,
    title           TEXT NOT NULL,
    draws           JSONB NOT NULL,
    time_limit_secs INTEGER,
    max_attempts    INTEGER NOT NULL CHECK (max_attempts > 0),
    opens_at        TIMESTAMPTZ,
    closes_at       TIMESTAMPTZ,
    scoring         TEXT NOT NULL CHECK (scoring IN ('highest', 'latest', 'average')),
    question_count  INTEGER NOT NULL,
    created_by      UUID NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE attempts (
    id               UUID PRIMARY KEY,
    quiz_id          UUID NOT NULL REFERENCES quizzes (id),
    user_id          UUID NOT NULL,
    number           INTEGER NOT NULL CHECK (number > 0),
    status           TEXT NOT NULL CHECK (status IN ('in_progress', 'submitted', 'needs_manual_grading', 'graded')),
    -- The learner's paper as shown (question ids, shuffled choices), so a resume shows it again.
    paper            JSONB NOT NULL,
    max_points       INTEGER NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL,
    deadline         TIMESTAMPTZ,
    submitted_at     TIMESTAMPTZ,
    score_hundredths INTEGER,
    results          JSONB,
    -- Which grading replica graded it (operators see the queue group share the work).
    graded_by        TEXT,
    graded_at        TIMESTAMPTZ,
    UNIQUE (quiz_id, user_id, number)
);
-- At most one attempt in progress per learner and quiz.
CREATE UNIQUE INDEX attempts_one_open ON attempts (quiz_id, user_id) WHERE status = 'in_progress';

CREATE TABLE answers (
    attempt_id  UUID NOT NULL REFERENCES attempts (id),
    question_id UUID NOT NULL,
    value       JSONB NOT NULL,
    saved_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (attempt_id, question_id)
);
