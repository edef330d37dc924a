-- A fan-out is an instructor's announcement or a "course updated" notice (a course published again).
ALTER TABLE announcements ADD COLUMN kind TEXT NOT NULL DEFAULT 'announcement'
    CHECK (kind IN ('announcement', 'course_updated'));
