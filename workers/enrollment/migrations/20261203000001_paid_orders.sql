-- Paid enrolments: the order an enrolment fulfils (one enrolment per order), and the orders
-- that could not become one (payments refunds them).
ALTER TABLE enrollments ADD COLUMN order_id UUID;
CREATE UNIQUE INDEX enrollments_by_order ON enrollments (order_id) WHERE order_id IS NOT NULL;

CREATE TABLE order_rejections (
    order_id    UUID PRIMARY KEY,
    reason      TEXT NOT NULL,
    rejected_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
