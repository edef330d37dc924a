-- Lesson assets: metadata here, bytes in S3 under keys this worker generates.
CREATE TABLE assets (
    id               UUID PRIMARY KEY,
    course_id        UUID NOT NULL,
    owner_id         UUID NOT NULL,
    kind             TEXT NOT NULL,
    filename         TEXT NOT NULL,
    content_type     TEXT NOT NULL,
    size_bytes       BIGINT NOT NULL CHECK (size_bytes > 0),
    part_size        BIGINT NOT NULL CHECK (part_size > 0),
    part_count       INT NOT NULL CHECK (part_count BETWEEN 1 AND 10000),
    object_key       TEXT NOT NULL UNIQUE,
    -- The S3 multipart upload while `status = 'uploading'`.
    upload_id        TEXT,
    status           TEXT NOT NULL,
    failure_reason   TEXT,
    progress_percent SMALLINT NOT NULL DEFAULT 0 CHECK (progress_percent BETWEEN 0 AND 100),
    sha256           TEXT,
    etag             TEXT,
    duration_seconds DOUBLE PRECISION,
    width            INT,
    height           INT,
    segment_seconds  INT,
    renditions       JSONB NOT NULL DEFAULT '[]'::jsonb,
    captions         JSONB NOT NULL DEFAULT '[]'::jsonb,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX assets_by_course ON assets (course_id, created_at, id);

-- Keys this worker signs with (playback grants); made once, kept here.
CREATE TABLE signing_keys (
    name   TEXT PRIMARY KEY,
    secret BYTEA NOT NULL
);
