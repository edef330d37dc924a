//! Payments' PostgreSQL store. Every function takes a connection so callers compose them in one
//! transaction with the ledger, the invoice counter and the outbox.

use coursebus_contracts::payments::{
    Coupon, Discount, Invoice, LedgerEntry, Order, OrderStatus, Refund, RefundStatus, RevenueRow,
};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{self, Posting};

pub type Result<T> = std::result::Result<T, sqlx::Error>;

fn corrupt(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected stored {what}").into())
}

const ORDER_COLUMNS: &str = "id, user_id, buyer_email, buyer_name, course_id, course_title, status, currency, \
     list_price_minor, discount_minor, total_minor, refunded_minor, coupon_code, payment_intent_id, client_secret, \
     invoice_number, enrollment_id, failure_reason, created_at, paid_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub buyer_email: String,
    pub buyer_name: String,
    pub course_id: Uuid,
    pub course_title: String,
    pub status: String,
    pub currency: String,
    pub list_price_minor: i64,
    pub discount_minor: i64,
    pub total_minor: i64,
    pub refunded_minor: i64,
    pub coupon_code: Option<String>,
    pub payment_intent_id: Option<String>,
    pub client_secret: Option<String>,
    pub invoice_number: Option<String>,
    pub enrollment_id: Option<Uuid>,
    pub failure_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub paid_at: Option<OffsetDateTime>,
}

impl OrderRow {
    pub fn status(&self) -> Result<OrderStatus> {
        OrderStatus::parse(&self.status).ok_or_else(|| corrupt("order status"))
    }

    pub fn to_order(&self, refunds: Vec<Refund>) -> Result<Order> {
        Ok(Order {
            id: self.id,
            user_id: self.user_id,
            course_id: self.course_id,
            course_title: self.course_title.clone(),
            status: self.status()?,
            currency: self.currency.clone(),
            list_price_minor: self.list_price_minor,
            discount_minor: self.discount_minor,
            total_minor: self.total_minor,
            refunded_minor: self.refunded_minor,
            coupon_code: self.coupon_code.clone(),
            payment_intent_id: self.payment_intent_id.clone(),
            invoice_number: self.invoice_number.clone(),
            enrollment_id: self.enrollment_id,
            failure_reason: self.failure_reason.clone(),
            refunds,
            created_at: self.created_at,
            paid_at: self.paid_at,
        })
    }
}

/// A new order (status `pending`).
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub buyer_email: &'a str,
    pub buyer_name: &'a str,
    pub course_id: Uuid,
    pub course_title: &'a str,
    pub currency: &'a str,
    pub list_price_minor: i64,
    pub discount_minor: i64,
    pub coupon_code: Option<&'a str>,
}

pub async fn insert_order(conn: &mut PgConnection, o: &NewOrder<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO orders (id, user_id, buyer_email, buyer_name, course_id, course_title, status, currency, \
         list_price_minor, discount_minor, total_minor, coupon_code) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11)",
    )
    .bind(o.id)
    .bind(o.user_id)
    .bind(o.buyer_email)
    .bind(o.buyer_name)
    .bind(o.course_id)
    .bind(o.course_title)
    .bind(o.currency)
    .bind(o.list_price_minor)
    .bind(o.discount_minor)
    .bind(o.list_price_minor - o.discount_minor)
    .bind(o.coupon_code)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn order(conn: &mut PgConnection, id: Uuid) -> Result<Option<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn order_for_update(conn: &mut PgConnection, id: Uuid) -> Result<Option<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 FOR UPDATE")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The order paid by PaymentIntent `intent` (read only: each saga step locks it itself).
pub async fn order_by_intent(conn: &mut PgConnection, intent: &str) -> Result<Option<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE payment_intent_id = $1")))
        .bind(intent)
        .fetch_optional(conn)
        .await
}

pub async fn pending_order_for_update(conn: &mut PgConnection, user: Uuid, course: Uuid) -> Result<Option<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 AND course_id = $2 AND status = 'pending' FOR UPDATE"
    )))
    .bind(user)
    .bind(course)
    .fetch_optional(conn)
    .await
}

/// The caller's orders, newest first, strictly before `before`.
pub async fn orders_of(conn: &mut PgConnection, user: Uuid, before: Option<Uuid>, limit: i64) -> Result<Vec<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 AND ($2::uuid IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3"
    )))
    .bind(user)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn set_intent(conn: &mut PgConnection, order: Uuid, intent: &str, client_secret: Option<&str>) -> Result<()> {
    sqlx::query("UPDATE orders SET payment_intent_id = $2, client_secret = $3 WHERE id = $1")
        .bind(order)
        .bind(intent)
        .bind(client_secret)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_status(conn: &mut PgConnection, order: Uuid, status: OrderStatus, reason: Option<&str>) -> Result<()> {
    sqlx::query("UPDATE orders SET status = $2, failure_reason = COALESCE($3, failure_reason) WHERE id = $1")
        .bind(order)
        .bind(status.as_str())
        .bind(reason)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn mark_paid(conn: &mut PgConnection, order: Uuid, invoice: &str, at: OffsetDateTime) -> Result<()> {
    sqlx::query(
        "UPDATE orders SET status = 'paid', paid_at = $2, invoice_number = $3, failure_reason = NULL WHERE id = $1",
    )
    .bind(order)
    .bind(at)
    .bind(invoice)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_fulfilled(conn: &mut PgConnection, order: Uuid, enrollment: Uuid) -> Result<()> {
    sqlx::query("UPDATE orders SET status = 'fulfilled', enrollment_id = $2, fulfilled_at = now() WHERE id = $1")
        .bind(order)
        .bind(enrollment)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn add_refunded(conn: &mut PgConnection, order: Uuid, amount: i64, full: bool) -> Result<()> {
    sqlx::query(
        "UPDATE orders SET refunded_minor = refunded_minor + $2, \
         status = CASE WHEN $3 THEN 'refunded' ELSE status END WHERE id = $1",
    )
    .bind(order)
    .bind(amount)
    .bind(full)
    .execute(conn)
    .await?;
    Ok(())
}

/// Orders waiting longer than `older_than` (pending with a PaymentIntent, or paid but not yet
/// enrolled), oldest first.
pub async fn waiting_orders(conn: &mut PgConnection, older_than: OffsetDateTime, limit: i64) -> Result<Vec<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE status IN ('pending', 'paid') AND created_at < $1 \
         AND (status = 'paid' OR payment_intent_id IS NOT NULL) ORDER BY created_at LIMIT $2"
    )))
    .bind(older_than)
    .bind(limit)
    .fetch_all(conn)
    .await
}

// -- coupons ---------------------------------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CouponRow {
    pub code: String,
    pub percent_off: Option<i16>,
    pub amount_off_minor: Option<i64>,
    pub currency: Option<String>,
    pub course_id: Option<Uuid>,
    pub expires_at: Option<OffsetDateTime>,
    pub max_uses: Option<i32>,
    pub used: i32,
    pub created_by: Uuid,
}

impl CouponRow {
    pub fn discount(&self) -> Result<Discount> {
        match (self.percent_off, self.amount_off_minor, &self.currency) {
            (Some(p), None, _) => Ok(Discount::Percent(u8::try_from(p).map_err(|_| corrupt("coupon percentage"))?)),
            (None, Some(a), Some(c)) => Ok(Discount::Amount { amount_minor: a, currency: c.clone() }),
            _ => Err(corrupt("coupon discount")),
        }
    }

    pub fn to_coupon(&self) -> Result<Coupon> {
        Ok(Coupon {
            code: self.code.clone(),
            discount: self.discount()?,
            course_id: self.course_id,
            expires_at: self.expires_at,
            max_uses: self.max_uses.and_then(|m| u32::try_from(m).ok()),
            used: u32::try_from(self.used).unwrap_or(0),
            created_by: self.created_by,
        })
    }
}

const COUPON_COLUMNS: &str =
    "code, percent_off, amount_off_minor, currency, course_id, expires_at, max_uses, used, created_by";

/// Store a coupon; `false` when the code exists.
pub async fn insert_coupon(conn: &mut PgConnection, c: &CouponRow) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO coupons (code, percent_off, amount_off_minor, currency, course_id, expires_at, max_uses, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (code) DO NOTHING",
    )
    .bind(&c.code)
    .bind(c.percent_off)
    .bind(c.amount_off_minor)
    .bind(&c.currency)
    .bind(c.course_id)
    .bind(c.expires_at)
    .bind(c.max_uses)
    .bind(c.created_by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn coupon_for_update(conn: &mut PgConnection, code: &str) -> Result<Option<CouponRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COUPON_COLUMNS} FROM coupons WHERE code = $1 FOR UPDATE")))
        .bind(code)
        .fetch_optional(conn)
        .await
}

/// Count a redemption (the caller checked the limit under the row lock).
pub async fn use_coupon(conn: &mut PgConnection, code: &str, delta: i32) -> Result<()> {
    sqlx::query("UPDATE coupons SET used = greatest(used + $2, 0) WHERE code = $1")
        .bind(code)
        .bind(delta)
        .execute(conn)
        .await?;
    Ok(())
}

// -- refunds ---------------------------------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub amount_minor: i64,
    pub reason: String,
    pub status: String,
    pub requested_by: Uuid,
    pub created_at: OffsetDateTime,
}

impl RefundRow {
    pub fn to_refund(&self) -> Result<Refund> {
        let status = match self.status.as_str() {
            "pending" => RefundStatus::Pending,
            "succeeded" => RefundStatus::Succeeded,
            "failed" => RefundStatus::Failed,
            _ => return Err(corrupt("refund status")),
        };
        Ok(Refund {
            id: self.id,
            amount_minor: self.amount_minor,
            reason: self.reason.clone(),
            status,
            requested_by: self.requested_by,
            created_at: self.created_at,
        })
    }
}

const REFUND_COLUMNS: &str = "id, order_id, amount_minor, reason, status, requested_by, created_at";

pub async fn refunds_of(conn: &mut PgConnection, order: Uuid) -> Result<Vec<Refund>> {
    let rows: Vec<RefundRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE order_id = $1 ORDER BY created_at, id"
    )))
    .bind(order)
    .fetch_all(conn)
    .await?;
    rows.iter().map(RefundRow::to_refund).collect()
}

/// Refunds not failed (pending or succeeded) add up to what is no longer refundable.
pub async fn committed_refunds(conn: &mut PgConnection, order: Uuid) -> Result<i64> {
    let (sum,): (Option<i64>,) =
        sqlx::query_as("SELECT sum(amount_minor)::bigint FROM refunds WHERE order_id = $1 AND status <> 'failed'")
            .bind(order)
            .fetch_one(conn)
            .await?;
    Ok(sum.unwrap_or(0))
}

pub async fn pending_refund(conn: &mut PgConnection, order: Uuid) -> Result<Option<RefundRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE order_id = $1 AND status = 'pending'"
    )))
    .bind(order)
    .fetch_optional(conn)
    .await
}

pub async fn insert_refund(conn: &mut PgConnection, r: &RefundRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO refunds (id, order_id, amount_minor, reason, status, requested_by, created_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
    )
    .bind(r.id)
    .bind(r.order_id)
    .bind(r.amount_minor)
    .bind(&r.reason)
    .bind(r.requested_by)
    .bind(r.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn refund_for_update(conn: &mut PgConnection, id: Uuid) -> Result<Option<RefundRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 FOR UPDATE")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn settle_refund(
    conn: &mut PgConnection,
    id: Uuid,
    provider_id: Option<&str>,
    failure: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE refunds SET status = CASE WHEN $3::text IS NULL THEN 'succeeded' ELSE 'failed' END, \
         provider_refund_id = $2, failure_reason = $3, settled_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(provider_id)
    .bind(failure)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn stale_refunds(conn: &mut PgConnection, older_than: OffsetDateTime, limit: i64) -> Result<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT id FROM refunds WHERE status = 'pending' AND created_at < $1 ORDER BY created_at LIMIT $2",
    )
    .bind(older_than)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

// -- invoices and the ledger -----------------------------------------------------------------

/// The next invoice number of `year` (locks the year's counter until commit: no gaps).
pub async fn next_invoice(conn: &mut PgConnection, year: i32) -> Result<(String, i64)> {
    let (seq,): (i64,) = sqlx::query_as(
        "INSERT INTO invoice_counters (year, last) VALUES ($1, 1) \
         ON CONFLICT (year) DO UPDATE SET last = invoice_counters.last + 1 RETURNING last",
    )
    .bind(year)
    .fetch_one(conn)
    .await?;
    Ok((domain::invoice_number(year, seq), seq))
}

pub async fn insert_invoice(conn: &mut PgConnection, inv: &Invoice) -> Result<()> {
    sqlx::query(
        "INSERT INTO invoices (number, year, sequence, order_id, total_minor, currency, issued_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&inv.number)
    .bind(inv.year)
    .bind(inv.sequence)
    .bind(inv.order_id)
    .bind(inv.total_minor)
    .bind(&inv.currency)
    .bind(inv.issued_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn invoices(conn: &mut PgConnection, year: i32) -> Result<Vec<Invoice>> {
    let rows: Vec<(String, i32, i64, Uuid, i64, String, OffsetDateTime)> = sqlx::query_as(
        "SELECT number, year, sequence, order_id, total_minor, currency, issued_at FROM invoices \
         WHERE year = $1 ORDER BY sequence",
    )
    .bind(year)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(number, year, sequence, order_id, total_minor, currency, issued_at)| Invoice {
            number,
            year,
            sequence,
            order_id,
            total_minor,
            currency,
            issued_at,
        })
        .collect())
}

/// One balanced ledger transaction (the database checks the balance at commit).
pub async fn post(conn: &mut PgConnection, order: &OrderRow, postings: &[Posting]) -> Result<Uuid> {
    let txn = Uuid::now_v7();
    for p in postings {
        sqlx::query(
            "INSERT INTO ledger_entries (transaction_id, order_id, course_id, account, currency, amount_minor, memo) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(txn)
        .bind(order.id)
        .bind(order.course_id)
        .bind(p.account)
        .bind(&order.currency)
        .bind(p.amount_minor)
        .bind(&p.memo)
        .execute(&mut *conn)
        .await?;
    }
    Ok(txn)
}

pub async fn ledger(conn: &mut PgConnection, order: Option<Uuid>, limit: i64) -> Result<Vec<LedgerEntry>> {
    let rows: Vec<(Uuid, Uuid, String, String, i64, String, OffsetDateTime)> = sqlx::query_as(
        "SELECT transaction_id, order_id, account, currency, amount_minor, memo, created_at FROM ledger_entries \
         WHERE $1::uuid IS NULL OR order_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(order)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(transaction_id, order_id, account, currency, amount_minor, memo, created_at)| LedgerEntry {
            transaction_id,
            order_id,
            account,
            currency,
            amount_minor,
            memo,
            created_at,
        })
        .collect())
}

#[derive(Debug, sqlx::FromRow)]
struct RevenueDbRow {
    period: String,
    course_id: Uuid,
    course_title: String,
    currency: String,
    orders: i64,
    gross: i64,
    discounts: i64,
    refunds: i64,
    fees: i64,
}

/// Revenue per period, course and currency between two instants, from the ledger.
pub async fn revenue(
    conn: &mut PgConnection,
    from: OffsetDateTime,
    until: OffsetDateTime,
    month: bool,
) -> Result<Vec<RevenueRow>> {
    let format = if month { "YYYY-MM" } else { "YYYY-MM-DD" };
    let rows: Vec<RevenueDbRow> = sqlx::query_as(
        "SELECT to_char(l.created_at AT TIME ZONE 'UTC', $3) AS period, l.course_id, max(o.course_title) AS course_title, \
         l.currency, \
         count(DISTINCT l.order_id) FILTER (WHERE l.account = 'course_revenue')::bigint AS orders, \
         coalesce(-sum(l.amount_minor) FILTER (WHERE l.account = 'course_revenue'), 0)::bigint AS gross, \
         coalesce(sum(l.amount_minor) FILTER (WHERE l.account = 'coupon_discounts'), 0)::bigint AS discounts, \
         coalesce(sum(l.amount_minor) FILTER (WHERE l.account = 'refunds'), 0)::bigint AS refunds, \
         coalesce(sum(l.amount_minor) FILTER (WHERE l.account = 'payment_fees'), 0)::bigint AS fees \
         FROM ledger_entries l JOIN orders o ON o.id = l.order_id \
         WHERE l.created_at >= $1 AND l.created_at < $2 \
         GROUP BY 1, l.course_id, l.currency ORDER BY 1, 3, l.currency",
    )
    .bind(from)
    .bind(until)
    .bind(format)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RevenueRow {
            period: r.period,
            course_id: r.course_id,
            course_title: r.course_title,
            currency: r.currency,
            orders: u64::try_from(r.orders).unwrap_or(0),
            gross_minor: r.gross,
            discounts_minor: r.discounts,
            refunds_minor: r.refunds,
            fees_minor: r.fees,
            net_minor: r.gross - r.discounts - r.refunds - r.fees,
        })
        .collect())
}

/// Try to become the one replica running the reconciliation pass: a transaction-level advisory
/// lock, released when the caller's transaction ends (also if its task is cancelled).
pub async fn claim_reconciler(tx: &mut PgConnection) -> Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('coursebus.payments.reconcile'))").fetch_one(tx).await
}

/// Record that Stripe event `id` was acted on; `false` if it was before.
pub async fn first_stripe_event(conn: &mut PgConnection, id: &str, kind: &str) -> Result<bool> {
    let done = sqlx::query("INSERT INTO stripe_events (id, type) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(id)
        .bind(kind)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
