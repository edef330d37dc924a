-- Payments: orders, refunds, coupons, invoices, the double-entry ledger, processed Stripe events.

CREATE TABLE coupons (
    code             TEXT PRIMARY KEY,
    percent_off      SMALLINT CHECK (percent_off BETWEEN 1 AND 100),
    amount_off_minor BIGINT CHECK (amount_off_minor > 0),
    currency         TEXT,
    course_id        UUID,
    expires_at       TIMESTAMPTZ,
    max_uses         INTEGER CHECK (max_uses > 0),
    -- Redemptions held by orders that are not cancelled.
    used             INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    created_by       UUID NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((percent_off IS NULL) <> (amount_off_minor IS NULL)),
    CHECK ((amount_off_minor IS NULL) = (currency IS NULL)),
    CHECK (max_uses IS NULL OR used <= max_uses)
);

CREATE TABLE orders (
    id                UUID PRIMARY KEY,
    user_id           UUID NOT NULL,
    buyer_email       TEXT NOT NULL,
    buyer_name        TEXT NOT NULL,
    course_id         UUID NOT NULL,
    course_title      TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'fulfilled', 'failed', 'cancelled', 'refunded')),
    currency          TEXT NOT NULL,
    list_price_minor  BIGINT NOT NULL CHECK (list_price_minor >= 0),
    discount_minor    BIGINT NOT NULL CHECK (discount_minor >= 0),
    total_minor       BIGINT NOT NULL CHECK (total_minor >= 0),
    refunded_minor    BIGINT NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0 AND refunded_minor <= total_minor),
    coupon_code       TEXT REFERENCES coupons (code),
    payment_intent_id TEXT UNIQUE,
    client_secret     TEXT,
    invoice_number    TEXT UNIQUE,
    enrollment_id     UUID,
    failure_reason    TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    paid_at           TIMESTAMPTZ,
    fulfilled_at      TIMESTAMPTZ,
    CHECK (total_minor = list_price_minor - discount_minor),
    CHECK ((status IN ('pending', 'failed', 'cancelled')) = (paid_at IS NULL))
);
-- One checkout in flight per learner and course: a second one resumes or replaces it.
CREATE UNIQUE INDEX orders_one_pending ON orders (user_id, course_id) WHERE status = 'pending';
CREATE INDEX orders_by_user ON orders (user_id, id DESC);
-- The reconciliation pass looks at orders still waiting.
CREATE INDEX orders_waiting ON orders (created_at) WHERE status IN ('pending', 'paid');

CREATE TABLE refunds (
    id                 UUID PRIMARY KEY,
    order_id           UUID NOT NULL REFERENCES orders (id),
    amount_minor       BIGINT NOT NULL CHECK (amount_minor > 0),
    reason             TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    requested_by       UUID NOT NULL,
    provider_refund_id TEXT,
    failure_reason     TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at         TIMESTAMPTZ
);
-- One refund in flight per order, so two concurrent asks cannot both pass the amount check.
CREATE UNIQUE INDEX refunds_one_pending ON refunds (order_id) WHERE status = 'pending';

-- Invoice numbers: sequential per year without gaps. The counter row is taken in the
-- transaction that marks the order paid, so a rollback gives the number back.
CREATE TABLE invoice_counters (
    year INTEGER PRIMARY KEY,
    last BIGINT NOT NULL
);

CREATE TABLE invoices (
    number      TEXT PRIMARY KEY,
    year        INTEGER NOT NULL,
    sequence    BIGINT NOT NULL,
    order_id    UUID NOT NULL UNIQUE REFERENCES orders (id),
    total_minor BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    issued_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (year, sequence)
);

-- The double-entry ledger: debits positive, credits negative. Append-only, and every
-- transaction sums to zero (checked at commit).
CREATE TABLE ledger_entries (
    id             BIGSERIAL PRIMARY KEY,
    transaction_id UUID NOT NULL,
    order_id       UUID NOT NULL REFERENCES orders (id),
    course_id      UUID NOT NULL,
    account        TEXT NOT NULL CHECK (account IN ('stripe_balance', 'course_revenue', 'coupon_discounts', 'refunds')),
    currency       TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL CHECK (amount_minor <> 0),
    memo           TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ledger_by_order ON ledger_entries (order_id);
CREATE INDEX ledger_by_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_by_time ON ledger_entries (created_at);

CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT sum(amount_minor) FROM ledger_entries WHERE transaction_id = NEW.transaction_id) <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance', NEW.transaction_id;
    END IF;
    IF (SELECT count(DISTINCT currency) FROM ledger_entries WHERE transaction_id = NEW.transaction_id) > 1 THEN
        RAISE EXCEPTION 'ledger transaction % mixes currencies', NEW.transaction_id;
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are never changed or deleted';
END $$;

CREATE TRIGGER ledger_immutable BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- Stripe events already acted on (Stripe may deliver one more than once).
CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
