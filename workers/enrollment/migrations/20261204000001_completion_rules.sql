-- Completion rules: per course, the assessment items (quizzes, assignments) a learner must pass
-- besides the required lessons, and each learner's latest grade per item, fed by assessment's
-- `grade.released` events.

-- One row per course whose rules were ever set. A completion decision holds it FOR SHARE while
-- it reads the rules, and setting rules updates it, so the two never interleave: no learner is
-- judged against rules that were being replaced.
CREATE TABLE completion_rule_sets (
    course_id  UUID PRIMARY KEY,
    updated_by UUID NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE completion_rules (
    course_id      UUID NOT NULL REFERENCES completion_rule_sets (course_id) ON DELETE CASCADE,
    position       INTEGER NOT NULL CHECK (position >= 0),
    item_id        UUID NOT NULL,
    item_kind      TEXT NOT NULL CHECK (item_kind IN ('quiz', 'assignment')),
    title          TEXT NOT NULL,
    min_percent_bp INTEGER NOT NULL CHECK (min_percent_bp BETWEEN 0 AND 10000),
    PRIMARY KEY (course_id, item_id),
    UNIQUE (course_id, position)
);

-- A learner's latest grade on an item: the `grade.released` event with the latest time wins
-- (an older one delivered late changes nothing). Kept across re-enrolments, like the grade.
CREATE TABLE item_grades (
    user_id    UUID NOT NULL,
    item_id    UUID NOT NULL,
    item_kind  TEXT NOT NULL CHECK (item_kind IN ('quiz', 'assignment')),
    course_id  UUID NOT NULL,
    percent_bp INTEGER NOT NULL CHECK (percent_bp >= 0),
    graded_at  TIMESTAMPTZ NOT NULL,
    event_id   UUID NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, item_id)
);
