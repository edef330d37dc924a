//! Payments routes: checkout, orders, refunds, receipts, coupons, admin reports, and Stripe's
//! webhook (verified here, then handed to the payments worker through JetStream).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use coursebus_contracts::ErrorBody;
use coursebus_contracts::payments::{
    Checkout, CheckoutReply, CheckoutRequest, Coupon, CreateCoupon, CreateCouponRequest, GetOrder, InvoiceListRequest,
    InvoicePage, LedgerPage, LedgerRequest, ListInvoices, ListLedger, ListMyOrders, ListOrdersRequest, Order,
    OrderIdRequest, OrderPage, OrderReceipt, Period, Reconcile, ReconcileReport, RefundOrder, RefundRequest,
    RevenueReport, RevenueReportRpc, RevenueRequest, StripeEventHead,
};
use coursebus_contracts::rpc::Empty;
use coursebus_contracts::subjects::payments as subj;
use serde::Deserialize;
use uuid::Uuid;

use super::ApiResult;
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, Ctx};

/// Start (or resume) buying a course: an order and a Stripe PaymentIntent whose `client_secret`
/// the client confirms with Stripe.js. The same `Idempotency-Key` (required) returns the same
/// order and PaymentIntent, so a retried checkout never charges twice.
#[utoipa::path(post, path = "/v1/payments/checkout", tag = "payments", security(("bearer" = [])),
    request_body = CheckoutRequest,
    params(("Idempotency-Key" = String, Header, description = "Required: retry-safe key")),
    responses(
        (status = 201, description = "The order and how to pay it", body = CheckoutReply),
        (status = 400, description = "Unknown currency or coupon, no Idempotency-Key", body = ErrorBody),
        (status = 404, description = "No such published course", body = ErrorBody),
        (status = 409, description = "Free course, already enrolled, coupon used up", body = ErrorBody),
    ))]
pub async fn checkout(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<CheckoutRequest>,
) -> ApiResult<(StatusCode, Json<CheckoutReply>)> {
    Ok((StatusCode::CREATED, Json(s.bus.request::<Checkout>(&ctx, &req).await?)))
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/v1/payments/orders", tag = "payments", security(("bearer" = [])),
    params(ListOrdersRequest),
    responses((status = 200, description = "A page of orders", body = OrderPage)))]
pub async fn list_orders(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiQuery(req): ApiQuery<ListOrdersRequest>,
) -> ApiResult<Json<OrderPage>> {
    Ok(Json(s.bus.request::<ListMyOrders>(&ctx, &req).await?))
}

/// One order of the caller's (admins: anyone's), with its refunds.
#[utoipa::path(get, path = "/v1/payments/orders/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The order", body = Order), (status = 404, description = "No such order of yours", body = ErrorBody)))]
pub async fn get_order(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Order>> {
    Ok(Json(s.bus.request::<GetOrder>(&ctx, &OrderIdRequest { id }).await?))
}

/// Refund an order: its buyer in full within the refund window (days after payment and course
/// progress, in the worker's configuration); admins at any time, also part of it. A full refund
/// revokes the enrolment.
#[utoipa::path(post, path = "/v1/payments/orders/{id}/refund", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header, description = "Required: retry-safe key")),
    request_body = RefundRequest,
    responses(
        (status = 200, description = "The order with its refunds", body = Order),
        (status = 403, description = "Partial refund by a learner", body = ErrorBody),
        (status = 409, description = "Outside the refund window, or nothing left to refund", body = ErrorBody),
    ))]
pub async fn refund_order(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<RefundRequest>,
) -> ApiResult<Json<Order>> {
    req.order_id = id;
    Ok(Json(s.bus.request::<RefundOrder>(&ctx, &req).await?))
}

/// The PDF receipt of a paid order (its invoice number, discount and refunds).
#[utoipa::path(get, path = "/v1/payments/orders/{id}/receipt", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "application/pdf"), (status = 409, description = "Not paid", body = ErrorBody)))]
pub async fn receipt(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Response> {
    let reply = s.bus.request::<OrderReceipt>(&ctx, &OrderIdRequest { id }).await?;
    let pdf = base64::engine::general_purpose::STANDARD.decode(&reply.pdf_base64).map_err(|_| ErrorBody::internal())?;
    let mut response = pdf.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", reply.filename)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(response)
}

/// Create a coupon: admins for any course, instructors for one of their own.
#[utoipa::path(post, path = "/v1/payments/coupons", tag = "payments", security(("bearer" = [])),
    request_body = CreateCouponRequest,
    responses((status = 201, description = "The coupon", body = Coupon), (status = 403, description = "Not the course's instructor", body = ErrorBody), (status = 409, description = "The code exists", body = ErrorBody)))]
pub async fn create_coupon(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<CreateCouponRequest>,
) -> ApiResult<(StatusCode, Json<Coupon>)> {
    Ok((StatusCode::CREATED, Json(s.bus.request::<CreateCoupon>(&ctx, &req).await?)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportFormat {
    #[default]
    Json,
    Csv,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevenueQuery {
    /// First day (UTC), `2026-01-01`.
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub period: Option<Period>,
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub format: ReportFormat,
}

/// Admins: revenue per course and period from the ledger (gross, discounts, refunds, net), as
/// JSON or as a CSV download (`format=csv`).
#[utoipa::path(get, path = "/v1/payments/reports/revenue", tag = "payments", security(("bearer" = [])),
    params(RevenueQuery),
    responses((status = 200, description = "The report", body = RevenueReport), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub async fn revenue_report(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiQuery(q): ApiQuery<RevenueQuery>,
) -> ApiResult<Response> {
    let req = RevenueRequest { from: q.from, to: q.to, period: q.period.unwrap_or(Period::Month) };
    let report = s.bus.request::<RevenueReportRpc>(&ctx, &req).await?;
    if q.format == ReportFormat::Json {
        return Ok(Json(report).into_response());
    }
    let mut response = report.csv.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"revenue-{}-{}.csv\"", req.from, req.to)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Admins: ledger entries (of one order, or the latest), newest first.
#[utoipa::path(get, path = "/v1/payments/ledger", tag = "payments", security(("bearer" = [])),
    params(LedgerRequest),
    responses((status = 200, description = "Entries", body = LedgerPage), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub async fn ledger(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiQuery(req): ApiQuery<LedgerRequest>,
) -> ApiResult<Json<LedgerPage>> {
    Ok(Json(s.bus.request::<ListLedger>(&ctx, &req).await?))
}

/// Admins: a year's invoices in number order.
#[utoipa::path(get, path = "/v1/payments/invoices", tag = "payments", security(("bearer" = [])),
    params(InvoiceListRequest),
    responses((status = 200, description = "Invoices", body = InvoicePage), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub async fn invoices(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiQuery(req): ApiQuery<InvoiceListRequest>,
) -> ApiResult<Json<InvoicePage>> {
    Ok(Json(s.bus.request::<ListInvoices>(&ctx, &req).await?))
}

/// Admins: run the reconciliation pass now (it also runs on a timer): orders and refunds left
/// waiting are checked against Stripe and driven to their end.
#[utoipa::path(post, path = "/v1/payments/admin/reconcile", tag = "payments", security(("bearer" = [])),
    responses((status = 200, description = "What was repaired"), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub async fn reconcile(State(s): State<AppState>, _caller: Caller, Ctx(ctx): Ctx) -> ApiResult<Json<ReconcileReport>> {
    Ok(Json(s.bus.request::<Reconcile>(&ctx, &Empty {}).await?))
}

/// How far a webhook's signed timestamp may be from now (Stripe's libraries use 5 minutes).
const WEBHOOK_TOLERANCE_SECS: i64 = 300;

/// Stripe's webhook. Nothing in it is trusted before its `Stripe-Signature` is verified against
/// the raw body; then it is stored in JetStream (`IN_STRIPE`, deduplicated by Stripe's event id)
/// and acknowledged. The payments worker acts on it, even if it was down when Stripe called.
#[utoipa::path(post, path = "/v1/payments/webhooks/stripe", tag = "payments",
    params(("Stripe-Signature" = String, Header, description = "`t=<unix>,v1=<hex HMAC-SHA256>`")),
    responses(
        (status = 200, description = "Received"),
        (status = 400, description = "Bad or stale signature, or not a Stripe event", body = ErrorBody),
        (status = 503, description = "Could not store it; Stripe retries", body = ErrorBody),
    ))]
pub async fn stripe_webhook(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let Some(secret) = &s.stripe_webhook else {
        return Err(ErrorBody::not_found("Stripe webhooks are not configured on this gateway").into());
    };
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if let Err(why) = secret.verify(signature, &body, now, WEBHOOK_TOLERANCE_SECS) {
        tracing::warn!(reason = why, "Stripe webhook rejected");
        return Err(ErrorBody::invalid_field("Stripe-Signature", why).into());
    }
    let head: StripeEventHead =
        serde_json::from_slice(&body).map_err(|_| ErrorBody::invalid_input("the body is not a Stripe event"))?;
    if head.id.is_empty() || head.id.len() > 255 {
        return Err(ErrorBody::invalid_input("the event has no usable id").into());
    }
    let js = async_nats::jetstream::new(s.bus.client().clone());
    let publish = async_nats::jetstream::message::PublishMessage::build().payload(body).message_id(&head.id);
    let stored = async {
        let ack = js.send_publish(subj::stripe_subject(&head.kind), publish).await.map_err(|e| e.to_string())?;
        ack.await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(s.bus.deadline(), stored).await {
        Ok(Ok(ack)) => {
            tracing::info!(stripe_event = %head.id, kind = %head.kind, duplicate = ack.duplicate, "Stripe webhook stored");
            Ok((StatusCode::OK, Json(serde_json::json!({ "received": true }))).into_response())
        }
        Ok(Err(err)) => {
            tracing::error!(stripe_event = %head.id, error = %err, "could not store a Stripe webhook");
            Err(ErrorBody::unavailable("could not store the event; retry").into())
        }
        Err(_) => Err(ErrorBody::unavailable("could not store the event in time; retry").into()),
    }
}
