-- A course's gradebook: weighted categories and the quizzes in them.
CREATE TABLE gradebooks (
    course_id  UUID PRIMARY KEY,
    categories JSONB NOT NULL,
    items      JSONB NOT NULL,
    updated_by UUID NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
