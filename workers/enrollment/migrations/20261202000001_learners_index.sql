-- A course's live learners in user id order (the announcement fan-out pages through them).
CREATE INDEX enrollments_learners ON enrollments (course_id, user_id) WHERE status <> 'cancelled';
