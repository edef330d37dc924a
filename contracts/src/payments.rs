//! Payments messages: checkout, orders, refunds, coupons, the ledger, invoices and receipts, the
//! Stripe webhook hand-over, and payment events.
//!
//! A paid enrolment is a saga: checkout creates an order and a Stripe PaymentIntent; the client
//! confirms it with Stripe; Stripe's `payment_intent.succeeded` webhook (verified by the gateway)
//! marks the order `paid` (ledger entries and an invoice number in the same transaction) and
//! emits [`OrderPaid`]; enrollment enrols and emits its `enrolment.created` with the order id
//! (the order becomes `fulfilled`, [`OrderFulfilled`] sends the receipt) or
//! `enrolment.rejected` (the order is refunded in full). A full refund emits [`OrderRefunded`],
//! and enrollment revokes the enrolment.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::event::Event;
use crate::rpc::rpc;
use crate::subjects::payments as subj;
use crate::validate::ValidationError;

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Waiting for the buyer to confirm the payment.
    Pending,
    /// Paid; the enrolment is being made.
    Paid,
    /// Paid and enrolled; the receipt is out.
    Fulfilled,
    /// The payment failed (declined); nothing was charged.
    Failed,
    /// Replaced by a newer checkout or abandoned; nothing was charged.
    Cancelled,
    /// Refunded in full (the enrolment is revoked).
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Fulfilled => "fulfilled",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Paid, Self::Fulfilled, Self::Failed, Self::Cancelled, Self::Refunded]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Asked of Stripe, answer not recorded yet (the reconciliation pass finishes it).
    Pending,
    Succeeded,
    Failed,
}

/// One refund of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Refund {
    pub id: Uuid,
    pub amount_minor: i64,
    pub reason: String,
    pub status: RefundStatus,
    /// Who asked (the buyer, an admin, or the saga's compensation: the buyer's id then).
    pub requested_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// An order for one course. Money is integer minor units of `currency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub course_title: String,
    pub status: OrderStatus,
    pub currency: String,
    pub list_price_minor: i64,
    pub discount_minor: i64,
    pub total_minor: i64,
    pub refunded_minor: i64,
    pub coupon_code: Option<String>,
    /// Stripe's PaymentIntent (none when a coupon made the course free).
    pub payment_intent_id: Option<String>,
    /// `2026-000042`: sequential per year, no gaps; given when the order is paid.
    pub invoice_number: Option<String>,
    pub enrollment_id: Option<Uuid>,
    /// Why the payment failed (Stripe's message), or why the saga refunded it.
    pub failure_reason: Option<String>,
    pub refunds: Vec<Refund>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<OffsetDateTime>,
}

/// `POST /v1/payments/checkout` (an `Idempotency-Key` is required).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub course_id: Uuid,
    /// One of the course's currencies (its price, or one of its other prices); its main price's
    /// currency when absent.
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub coupon: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckoutReply {
    pub order: Order,
    /// Hand to Stripe.js (`confirmCardPayment`) with the publishable key; `None` when nothing is
    /// to be paid (the order is already `paid`).
    pub client_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderIdRequest {
    pub id: Uuid,
}

/// `GET /v1/payments/orders?cursor=&limit=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListOrdersRequest {
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<Order>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/payments/orders/{id}/refund` (an `Idempotency-Key` is required).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Set by the gateway from the path.
    #[serde(default)]
    #[schema(ignore)]
    pub order_id: Uuid,
    /// Admins only: refund part of what is left (whole remainder when absent).
    #[serde(default)]
    pub amount_minor: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The receipt of a paid order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptReply {
    pub filename: String,
    /// The PDF, base64 (standard alphabet, padded).
    pub pdf_base64: String,
}

/// Money off: a percentage or a fixed amount in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Discount {
    /// 1 to 100.
    Percent(u8),
    Amount {
        amount_minor: i64,
        currency: String,
    },
}

/// `POST /v1/payments/coupons`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCouponRequest {
    /// 3 to 32 characters of `A-Z 0-9 - _` (case-insensitive; stored upper case).
    pub code: String,
    pub discount: Discount,
    /// Only this course (required for instructors, who may only discount their own courses).
    #[serde(default)]
    pub course_id: Option<Uuid>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub max_uses: Option<u32>,
}

impl CreateCouponRequest {
    /// The normalised code, or which field is wrong.
    pub fn validate(&self) -> Result<String, ValidationError> {
        let code = self.code.trim().to_ascii_uppercase();
        if !(3..=32).contains(&code.len()) || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ValidationError::new("code", "a code is 3 to 32 characters of A-Z, 0-9, - and _"));
        }
        match &self.discount {
            Discount::Percent(p) if !(1..=100).contains(p) => {
                return Err(ValidationError::new("discount.percent", "a percentage is 1 to 100"));
            }
            Discount::Amount { amount_minor, currency } => {
                if !(1..=100_000_000).contains(amount_minor) {
                    return Err(ValidationError::new("discount.amount.amount_minor", "1 to 100000000 minor units"));
                }
                if !is_currency(currency) {
                    return Err(ValidationError::new("discount.amount.currency", "an ISO 4217 code like EUR"));
                }
            }
            Discount::Percent(_) => {}
        }
        if self.max_uses == Some(0) {
            return Err(ValidationError::new("max_uses", "at least 1 when given"));
        }
        Ok(code)
    }
}

/// The number of decimal places ISO 4217 gives the currency `code` (upper case).
fn currency_exponent(code: &str) -> u8 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "VND" | "VUV"
        | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Formats `minor` units of `currency` as `"<CODE> <amount>"`: `"EUR 12.50"`, `"JPY 1200"`, `"KWD 1.250"`,
/// `"USD -3.00"`.
///
/// The amount has the currency's ISO 4217 exponent as its number of decimal places (0 for BIF CLP DJF GNF ISK JPY
/// KMF KRW PYG RWF UGX VND VUV XAF XOF XPF; 3 for BHD IQD JOD KWD LYD OMR TND; 2 otherwise) and no thousands
/// separators. The code is trimmed and upper-cased. Integer arithmetic only, so every `i64` (including
/// `i64::MIN`) is formatted exactly.
pub fn format_money(minor: i64, currency: &str) -> String {
    let code = currency.trim().to_ascii_uppercase();
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    let amount = match currency_exponent(&code) {
        0 => format!("{sign}{magnitude}"),
        3 => format!("{sign}{}.{:03}", magnitude / 1000, magnitude % 1000),
        _ => format!("{sign}{}.{:02}", magnitude / 100, magnitude % 100),
    };
    if code.is_empty() { amount } else { format!("{code} {amount}") }
}

/// An upper-case three-letter code (ISO 4217 shape).
pub fn is_currency(raw: &str) -> bool {
    raw.len() == 3 && raw.chars().all(|c| c.is_ascii_uppercase())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Coupon {
    pub code: String,
    pub discount: Discount,
    pub course_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub max_uses: Option<u32>,
    /// Redemptions held by pending or paid orders.
    pub used: u32,
    pub created_by: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

/// `GET /v1/payments/reports/revenue?from=2026-01-01&to=2026-12-31&period=month&format=csv`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevenueRequest {
    /// First day, inclusive (`YYYY-MM-DD`, UTC).
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    #[serde(default = "default_period")]
    pub period: Period,
}

fn default_period() -> Period {
    Period::Month
}

/// Revenue of one course in one period and currency, from the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevenueRow {
    /// `2026-11` (month) or `2026-11-26` (day).
    pub period: String,
    pub course_id: Uuid,
    pub course_title: String,
    pub currency: String,
    /// Orders paid in the period.
    pub orders: u64,
    /// List prices of those orders.
    pub gross_minor: i64,
    pub discounts_minor: i64,
    /// Refunds made in the period (of any order of the course).
    pub refunds_minor: i64,
    /// What the payment provider kept (its fees stay on refunds).
    pub fees_minor: i64,
    /// gross − discounts − refunds − fees.
    pub net_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevenueReport {
    pub rows: Vec<RevenueRow>,
    /// The same rows as CSV (RFC 4180, header line first).
    pub csv: String,
}

/// `GET /v1/payments/ledger?order_id=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LedgerRequest {
    #[serde(default)]
    pub order_id: Option<Uuid>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One line of the double-entry ledger: debits positive, credits negative; the lines of one
/// transaction sum to zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LedgerEntry {
    pub transaction_id: Uuid,
    pub order_id: Uuid,
    /// `stripe_balance`, `course_revenue`, `coupon_discounts`, `refunds`, `payment_fees`.
    pub account: String,
    pub currency: String,
    pub amount_minor: i64,
    pub memo: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LedgerPage {
    pub items: Vec<LedgerEntry>,
}

/// `GET /v1/payments/invoices?year=2026`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceListRequest {
    pub year: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Invoice {
    pub number: String,
    pub year: i32,
    pub sequence: i64,
    pub order_id: Uuid,
    pub total_minor: i64,
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvoicePage {
    pub items: Vec<Invoice>,
}

/// What a reconciliation pass found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Orders and refunds looked at.
    pub checked: u32,
    /// One line per repair (`order <id>: paid at Stripe, webhook missing → paid`).
    pub repaired: Vec<String>,
}

/// The two fields of a Stripe event the gateway reads to forward it (`evt_...`, its type).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StripeEventHead {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

rpc!(Checkout, CheckoutRequest, CheckoutReply, subj::CHECKOUT_CREATE);
rpc!(GetOrder, OrderIdRequest, Order, subj::ORDER_GET);
rpc!(ListMyOrders, ListOrdersRequest, OrderPage, subj::ORDER_MINE);
rpc!(RefundOrder, RefundRequest, Order, subj::ORDER_REFUND);
rpc!(OrderReceipt, OrderIdRequest, ReceiptReply, subj::ORDER_RECEIPT);
rpc!(CreateCoupon, CreateCouponRequest, Coupon, subj::COUPON_CREATE);
rpc!(RevenueReportRpc, RevenueRequest, RevenueReport, subj::REPORT_REVENUE);
rpc!(ListLedger, LedgerRequest, LedgerPage, subj::LEDGER_LIST);
rpc!(ListInvoices, InvoiceListRequest, InvoicePage, subj::INVOICE_LIST);
rpc!(Reconcile, crate::rpc::Empty, ReconcileReport, subj::ADMIN_RECONCILE);

/// `cb.evt.payments.order.paid`: enrollment enrols `user_id` (idempotent per `order_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPaid {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub total_minor: i64,
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    pub paid_at: OffsetDateTime,
}

impl Event for OrderPaid {
    const SUBJECT: &'static str = subj::EVT_ORDER_PAID;
    const TYPE: &'static str = "payments.order.paid";
}

/// `cb.evt.payments.order.fulfilled`: paid and enrolled; what a receipt email says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderFulfilled {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub course_title: String,
    pub enrollment_id: Uuid,
    pub invoice_number: Option<String>,
    pub total_minor: i64,
    pub currency: String,
}

impl Event for OrderFulfilled {
    const SUBJECT: &'static str = subj::EVT_ORDER_FULFILLED;
    const TYPE: &'static str = "payments.order.fulfilled";
}

/// `cb.evt.payments.order.failed`: the payment was declined; nothing was charged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderFailed {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub reason: String,
}

impl Event for OrderFailed {
    const SUBJECT: &'static str = subj::EVT_ORDER_FAILED;
    const TYPE: &'static str = "payments.order.failed";
}

/// `cb.evt.payments.order.refunded`: `amount_minor` went back; `full` revokes the enrolment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRefunded {
    pub order_id: Uuid,
    pub refund_id: Uuid,
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub full: bool,
    pub reason: String,
}

impl Event for OrderRefunded {
    const SUBJECT: &'static str = subj::EVT_ORDER_REFUNDED;
    const TYPE: &'static str = "payments.order.refunded";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Rpc;

    #[test]
    fn subjects_follow_the_naming_scheme() {
        assert_eq!(<Checkout as Rpc>::ENDPOINT.subject(), "cb.payments.checkout.create");
        for subject in [OrderPaid::SUBJECT, OrderFulfilled::SUBJECT, OrderFailed::SUBJECT, OrderRefunded::SUBJECT] {
            assert!(subject.starts_with("cb.evt.payments."), "{subject}");
            assert_eq!(subject.split('.').count(), 5, "{subject}");
        }
        assert_eq!(subj::stripe_subject("payment_intent.succeeded"), "cb.in.stripe.payment_intent.succeeded");
        assert_eq!(subj::stripe_subject("a b>*"), "cb.in.stripe.a_b__");
    }

    #[test]
    fn coupons_are_validated_and_normalised() {
        let ok: CreateCouponRequest =
            serde_json::from_str(r#"{"code":"spring-25","discount":{"percent":25},"max_uses":10}"#).unwrap();
        assert_eq!(ok.validate().unwrap(), "SPRING-25");
        let fixed: CreateCouponRequest =
            serde_json::from_str(r#"{"code":"TENOFF","discount":{"amount":{"amount_minor":1000,"currency":"EUR"}}}"#)
                .unwrap();
        assert!(fixed.validate().is_ok());
        for bad in [
            r#"{"code":"x","discount":{"percent":5}}"#,
            r#"{"code":"OK1","discount":{"percent":0}}"#,
            r#"{"code":"OK1","discount":{"percent":101}}"#,
            r#"{"code":"OK1","discount":{"amount":{"amount_minor":-1,"currency":"EUR"}}}"#,
            r#"{"code":"OK1","discount":{"amount":{"amount_minor":5,"currency":"eur"}}}"#,
            r#"{"code":"OK1","discount":{"percent":5},"max_uses":0}"#,
            r#"{"code":"OK 1","discount":{"percent":5}}"#,
        ] {
            let req: CreateCouponRequest = serde_json::from_str(bad).unwrap();
            assert!(req.validate().is_err(), "{bad}");
        }
        assert!(
            serde_json::from_str::<CreateCouponRequest>(r#"{"code":"OK1","discount":{"percent":5},"x":1}"#).is_err()
        );
    }

    #[test]
    fn formats_two_decimal_currencies() {
        assert_eq!(format_money(1250, "EUR"), "EUR 12.50");
        assert_eq!(format_money(5, "EUR"), "EUR 0.05");
        assert_eq!(format_money(100, "usd"), "USD 1.00");
    }

    #[test]
    fn formats_zero_and_three_decimal_currencies() {
        assert_eq!(format_money(1200, "JPY"), "JPY 1200");
        assert_eq!(format_money(-1200, "JPY"), "JPY -1200");
        assert_eq!(format_money(1250, "KWD"), "KWD 1.250");
        assert_eq!(format_money(7, "BHD"), "BHD 0.007");
    }

    #[test]
    fn formats_negative_amounts() {
        assert_eq!(format_money(-300, "USD"), "USD -3.00");
        assert_eq!(format_money(-5, "EUR"), "EUR -0.05");
        assert_eq!(format_money(-1, "KWD"), "KWD -0.001");
    }

    #[test]
    fn formats_zero() {
        assert_eq!(format_money(0, "EUR"), "EUR 0.00");
        assert_eq!(format_money(0, "JPY"), "JPY 0");
        assert_eq!(format_money(0, "KWD"), "KWD 0.000");
    }

    #[test]
    fn formats_large_amounts_exactly() {
        assert_eq!(format_money(123_456_789_012_345_678, "EUR"), "EUR 1234567890123456.78");
        assert_eq!(format_money(i64::MAX, "EUR"), "EUR 92233720368547758.07");
        assert_eq!(format_money(i64::MIN, "EUR"), "EUR -92233720368547758.08");
        assert_eq!(format_money(i64::MIN, "JPY"), "JPY -9223372036854775808");
        assert_eq!(format_money(i64::MAX, "KWD"), "KWD 9223372036854775.807");
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            OrderStatus::Pending,
            OrderStatus::Paid,
            OrderStatus::Fulfilled,
            OrderStatus::Failed,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
        ] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
    }
}
