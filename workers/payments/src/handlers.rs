//! One method per endpoint. Every method verifies the caller's token itself; an order is seen
//! only by its buyer and admins (others get "not found"); reports, the ledger and invoices are
//! for admins only.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use coursebus_bus::auth::JwtVerifier;
use coursebus_bus::clock::Clock;
use coursebus_bus::idempotency::Idempotency;
use coursebus_bus::settings::Live;
use coursebus_bus::{Bus, CallContext, outbox};
use coursebus_contracts::catalog::{Course, CourseStatus, GetCourse, GetCourseRequest};
use coursebus_contracts::enrollment::{AccessCheckRequest, CheckAccess, EnrollmentIdRequest, GetEnrollment};
use coursebus_contracts::identity::{AccessClaims, GetProfile, Profile};
use coursebus_contracts::payments::{
    Checkout, CheckoutReply, CheckoutRequest, Coupon, CreateCouponRequest, Discount, InvoiceListRequest, InvoicePage,
    LedgerPage, LedgerRequest, ListOrdersRequest, Order, OrderIdRequest, OrderPage, OrderStatus, ReceiptReply,
    ReconcileReport, RefundOrder, RefundRequest, RevenueReport, RevenueRequest,
};
use coursebus_contracts::rpc::Empty;
use coursebus_contracts::validate::{Role, page_limit};
use coursebus_contracts::{ErrorBody, ErrorCode, Rpc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{self, RefundWindow};
use crate::provider::{PaymentProvider, ProviderError};
use crate::receipt;
use crate::store::{self, CouponRow, NewOrder, OrderRow};

/// The payments service's state, shared by the endpoint handlers and the saga of one replica.
#[derive(Debug)]
pub struct Payments {
    pub pool: PgPool,
    pub verifier: Arc<JwtVerifier>,
    /// For calls to catalog, enrollment and identity.
    pub bus: Bus,
    pub call_deadline: Duration,
    pub outbox: outbox::Waker,
    pub provider: Arc<dyn PaymentProvider>,
    /// The refund window's two live settings (`cb_config`).
    pub refund_days: Live<u32>,
    pub refund_max_progress: Live<u32>,
    /// The time refund windows, coupons, invoices and reconciliation go by.
    pub clock: Clock,
    /// The seller's name on receipts.
    pub seller: String,
    /// How long an order may wait (pending or paid) before the reconciliation pass looks at it.
    pub stale_after: Duration,
}

/// Log a database error and answer `internal` (the client never sees database details).
pub(crate) use coursebus_bus::db;

pub(crate) fn provider(err: ProviderError) -> ErrorBody {
    match err {
        ProviderError::Rejected(msg) => {
            tracing::error!(error = %msg, "payment provider refused");
            ErrorBody::new(ErrorCode::Conflict, format!("the payment provider refused: {msg}"))
        }
        ProviderError::Unavailable(msg) => {
            tracing::warn!(error = %msg, "payment provider unavailable");
            ErrorBody::new(ErrorCode::Unavailable, "the payment provider is not reachable; retry with the same key")
        }
    }
}

fn no_order() -> ErrorBody {
    ErrorBody::not_found("no such order")
}

fn require_key(ctx: &CallContext) -> Result<&str, ErrorBody> {
    ctx.idempotency_key.as_deref().ok_or_else(|| {
        ErrorBody::invalid_field("Idempotency-Key", "this request moves money: send an Idempotency-Key header")
    })
}

fn admin(me: &AccessClaims) -> Result<(), ErrorBody> {
    if me.has_role(Role::Admin) { Ok(()) } else { Err(ErrorBody::forbidden("admins only")) }
}

impl Payments {
    /// The refund window as the live settings say now.
    pub fn refund_window(&self) -> RefundWindow {
        RefundWindow { days: self.refund_days.get(), max_progress_percent: self.refund_max_progress.get() }
    }

    pub(crate) async fn caller(&self, ctx: &CallContext) -> Result<AccessClaims, ErrorBody> {
        self.verifier.verify_ctx(ctx).await
    }

    /// A call context for another service: the same request id and trace, with or without the
    /// caller's token.
    fn call(ctx: &CallContext, as_caller: bool) -> CallContext {
        CallContext {
            request_id: ctx.request_id.clone(),
            traceparent: ctx.traceparent.clone(),
            authorization: if as_caller { ctx.authorization.clone() } else { None },
            idempotency_key: None,
        }
    }

    /// The published course (asked anonymously: never a working copy).
    pub(crate) async fn published_course(&self, ctx: &CallContext, id: Uuid) -> Result<Course, ErrorBody> {
        let req = GetCourseRequest { id_or_slug: id.to_string(), draft: false };
        let course = self.bus.request_within::<GetCourse>(&Self::call(ctx, false), &req, self.call_deadline).await?;
        if course.id != id || course.status != CourseStatus::Published {
            return Err(ErrorBody::not_found("no such course"));
        }
        Ok(course)
    }

    /// The order if the caller may read it (its buyer, or an admin); else not found.
    async fn readable(&self, me: &AccessClaims, id: Uuid) -> Result<OrderRow, ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        store::order(&mut conn, id)
            .await
            .map_err(db)?
            .filter(|o| o.user_id == me.sub || me.has_role(Role::Admin))
            .ok_or_else(no_order)
    }

    pub(crate) async fn order_view(&self, row: &OrderRow) -> Result<Order, ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let refunds = store::refunds_of(&mut conn, row.id).await.map_err(db)?;
        row.to_order(refunds).map_err(db)
    }

    async fn reload(&self, id: Uuid) -> Result<Order, ErrorBody> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let row = store::order(&mut conn, id).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
        drop(conn);
        self.order_view(&row).await
    }

    /// Create (or resume) the caller's order for a paid course and its PaymentIntent.
    pub async fn checkout(&self, ctx: CallContext, req: CheckoutRequest) -> Result<CheckoutReply, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let key = require_key(&ctx)?;
        let idem = Idempotency::new(format!("{}:{}", <Checkout as Rpc>::ENDPOINT.subject(), me.sub), key, &req)?;
        if let Some(reply) = idem.replay::<CheckoutReply>(&self.pool).await? {
            return Ok(reply);
        }
        let course = self.published_course(&ctx, req.course_id).await?;
        if course.price.is_free() {
            return Err(ErrorBody::conflict("this course is free: enrol directly"));
        }
        let price = domain::price_in(&course, req.currency.as_deref())?;
        let access = AccessCheckRequest { user_id: me.sub, course_id: course.id, lesson_id: None };
        let enrolled =
            self.bus.request_within::<CheckAccess>(&Self::call(&ctx, true), &access, self.call_deadline).await?;
        if enrolled.enrolled {
            return Err(ErrorBody::conflict("you are already enrolled in this course"));
        }
        let coupon_code = req.coupon.as_deref().map(|c| c.trim().to_ascii_uppercase()).filter(|c| !c.is_empty());
        // The buyer's name and email for the receipt (asked before any row is locked).
        let buyer =
            self.bus.request_within::<GetProfile>(&Self::call(&ctx, true), &Empty {}, self.call_deadline).await?;

        let mut tx = self.pool.begin().await.map_err(db)?;
        let order_id = match store::pending_order_for_update(&mut tx, me.sub, course.id).await.map_err(db)? {
            // The same checkout again (another key, a reload): resume it.
            Some(p)
                if p.currency == price.currency
                    && p.coupon_code == coupon_code
                    && p.list_price_minor == price.amount_minor =>
            {
                p.id
            }
            Some(p) => {
                // A different checkout replaces the waiting one, which must not be payable any more.
                if let Some(intent) = &p.payment_intent_id {
                    match self.provider.cancel_intent(intent).await {
                        Ok(_) => {}
                        Err(ProviderError::Rejected(_)) => {
                            let now = self.provider.intent(intent).await.map_err(provider)?;
                            if now.status != crate::provider::IntentStatus::Canceled {
                                return Err(ErrorBody::conflict(
                                    "an earlier checkout of this course is being paid; wait for it to finish",
                                ));
                            }
                        }
                        Err(err) => return Err(provider(err)),
                    }
                }
                store::set_status(&mut tx, p.id, OrderStatus::Cancelled, Some("replaced by a newer checkout"))
                    .await
                    .map_err(db)?;
                if let Some(code) = &p.coupon_code {
                    store::use_coupon(&mut tx, code, -1).await.map_err(db)?;
                }
                tracing::info!(order_id = %p.id, "pending order replaced by a new checkout");
                self.new_order(&mut tx, &me, &buyer, &course, &price, coupon_code.as_deref()).await?
            }
            None => self.new_order(&mut tx, &me, &buyer, &course, &price, coupon_code.as_deref()).await?,
        };
        tx.commit().await.map_err(db)?;

        let mut conn = self.pool.acquire().await.map_err(db)?;
        let row = store::order(&mut conn, order_id).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
        drop(conn);
        let client_secret = if row.total_minor == 0 {
            // A coupon made it free: paid now, no PaymentIntent.
            self.settle_paid(row.id, "free with coupon", 0).await.map_err(|e| e.into_body())?;
            None
        } else if let Some(secret) = &row.client_secret {
            Some(secret.clone())
        } else {
            let intent = self
                .provider
                .create_intent(row.id, row.total_minor, &row.currency, &row.course_title)
                .await
                .map_err(provider)?;
            let mut conn = self.pool.acquire().await.map_err(db)?;
            store::set_intent(&mut conn, row.id, &intent.id, intent.client_secret.as_deref()).await.map_err(db)?;
            tracing::info!(order_id = %row.id, payment_intent = %intent.id, amount_minor = row.total_minor, currency = %row.currency, "payment intent created");
            intent.client_secret
        };
        let reply = CheckoutReply { order: self.reload(row.id).await?, client_secret };
        let mut tx = self.pool.begin().await.map_err(db)?;
        idem.record(&mut tx, &reply).await?;
        tx.commit().await.map_err(db)?;
        Ok(reply)
    }

    async fn new_order(
        &self,
        tx: &mut sqlx::PgConnection,
        me: &AccessClaims,
        buyer: &Profile,
        course: &Course,
        price: &coursebus_contracts::catalog::Price,
        coupon_code: Option<&str>,
    ) -> Result<Uuid, ErrorBody> {
        let discount = match coupon_code {
            None => 0,
            Some(code) => {
                let coupon = store::coupon_for_update(tx, code).await.map_err(db)?;
                let coupon = coupon.ok_or_else(|| ErrorBody::invalid_field("coupon", "no such coupon"))?;
                if coupon.expires_at.is_some_and(|at| at <= self.clock.now()) {
                    return Err(ErrorBody::invalid_field("coupon", "this coupon has expired"));
                }
                if coupon.course_id.is_some_and(|c| c != course.id) {
                    return Err(ErrorBody::invalid_field("coupon", "this coupon is for another course"));
                }
                if coupon.max_uses.is_some_and(|m| coupon.used >= m) {
                    return Err(ErrorBody::conflict("this coupon has been used up"));
                }
                let off = domain::discount(&coupon.discount().map_err(db)?, price)?;
                store::use_coupon(tx, code, 1).await.map_err(db)?;
                off
            }
        };
        let id = Uuid::now_v7();
        store::insert_order(
            tx,
            &NewOrder {
                id,
                user_id: me.sub,
                buyer_email: &buyer.email,
                buyer_name: &buyer.display_name,
                course_id: course.id,
                course_title: &course.title,
                currency: &price.currency,
                list_price_minor: price.amount_minor,
                discount_minor: discount,
                coupon_code,
            },
        )
        .await
        .map_err(db)?;
        tracing::info!(order_id = %id, user_id = %me.sub, course_id = %course.id, list_price_minor = price.amount_minor, discount_minor = discount, "order created");
        Ok(id)
    }

    pub async fn get(&self, ctx: CallContext, req: OrderIdRequest) -> Result<Order, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let row = self.readable(&me, req.id).await?;
        self.order_view(&row).await
    }

    pub async fn mine(&self, ctx: CallContext, req: ListOrdersRequest) -> Result<OrderPage, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let limit = page_limit(req.limit, 20)?;
        let before = req
            .cursor
            .as_deref()
            .map(|c| Uuid::parse_str(c).map_err(|_| ErrorBody::invalid_field("cursor", "cursor is not valid")))
            .transpose()?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut rows = store::orders_of(&mut conn, me.sub, before, i64::from(limit) + 1).await.map_err(db)?;
        drop(conn);
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|r| r.id.to_string()) } else { None };
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(self.order_view(row).await?);
        }
        Ok(OrderPage { items, next_cursor })
    }

    /// Refund: the buyer in full within the refund window; admins any time, also partially.
    pub async fn refund(&self, ctx: CallContext, req: RefundRequest) -> Result<Order, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let key = require_key(&ctx)?;
        let idem = Idempotency::new(format!("{}:{}", <RefundOrder as Rpc>::ENDPOINT.subject(), me.sub), key, &req)?;
        if let Some(reply) = idem.replay::<Order>(&self.pool).await? {
            return Ok(reply);
        }
        let is_admin = me.has_role(Role::Admin);
        let order = self.readable(&me, req.order_id).await?;
        let reason = domain::reason(
            req.reason.as_deref(),
            if is_admin { "refunded by an admin" } else { "asked by the learner" },
        )?;
        match order.status().map_err(db)? {
            OrderStatus::Paid | OrderStatus::Fulfilled => {}
            OrderStatus::Refunded => return Err(ErrorBody::conflict("this order is already refunded")),
            _ => return Err(ErrorBody::conflict("nothing was paid for this order")),
        }
        if order.total_minor == 0 {
            return Err(ErrorBody::conflict("nothing was paid for this order (a coupon made it free)"));
        }
        if req.amount_minor.is_some() && !is_admin {
            return Err(ErrorBody::forbidden("only admins refund part of an order"));
        }
        if !is_admin {
            let progress = match order.enrollment_id {
                Some(id) => {
                    let detail = self
                        .bus
                        .request_within::<GetEnrollment>(
                            &Self::call(&ctx, true),
                            &EnrollmentIdRequest { id },
                            self.call_deadline,
                        )
                        .await?;
                    detail.enrollment.progress.percent
                }
                None => 0,
            };
            let paid_at = order.paid_at.unwrap_or(order.created_at);
            let window = self.refund_window();
            if let Err(why) = window.allows(paid_at, self.clock.now(), progress) {
                return Err(ErrorBody::conflict(format!("this order can no longer be refunded by you: {why}"))
                    .with_details(serde_json::json!({ "refund_window_days": window.days, "max_progress_percent": window.max_progress_percent })));
            }
        }
        let refund = self.start_refund(order.id, req.amount_minor, &reason, me.sub).await?;
        match self.execute_refund(refund).await {
            Ok(()) | Err(crate::saga::Failure::Transient(_)) => {}
            Err(err) => return Err(err.into_body()),
        }
        let reply = self.reload(order.id).await?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        idem.record(&mut tx, &reply).await?;
        tx.commit().await.map_err(db)?;
        Ok(reply)
    }

    pub async fn receipt(&self, ctx: CallContext, req: OrderIdRequest) -> Result<ReceiptReply, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let order = self.readable(&me, req.id).await?;
        let Some(number) = order.invoice_number.clone() else {
            return Err(ErrorBody::conflict("this order has not been paid; it has no receipt"));
        };
        let receipt = receipt::Receipt {
            invoice_number: number.clone(),
            issued_at: order.paid_at.unwrap_or(order.created_at),
            seller: self.seller.clone(),
            buyer_name: order.buyer_name.clone(),
            buyer_email: order.buyer_email.clone(),
            order_id: order.id,
            payment_reference: order.payment_intent_id.clone().unwrap_or_else(|| "coupon".into()),
            course_title: order.course_title.clone(),
            currency: order.currency.clone(),
            list_price_minor: order.list_price_minor,
            discount_minor: order.discount_minor,
            coupon_code: order.coupon_code.clone(),
            total_minor: order.total_minor,
            refunded_minor: order.refunded_minor,
        };
        let pdf = receipt::render_pdf(&receipt);
        Ok(ReceiptReply {
            filename: format!("receipt-{number}.pdf"),
            pdf_base64: base64::engine::general_purpose::STANDARD.encode(pdf),
        })
    }

    /// Admins for any course; instructors only for their own course.
    pub async fn create_coupon(&self, ctx: CallContext, req: CreateCouponRequest) -> Result<Coupon, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let code = req.validate()?;
        if !me.has_role(Role::Admin) {
            let Some(course_id) = req.course_id else {
                return Err(ErrorBody::forbidden("instructors create coupons for one of their courses (course_id)"));
            };
            let own = GetCourseRequest { id_or_slug: course_id.to_string(), draft: true };
            let course =
                match self.bus.request_within::<GetCourse>(&Self::call(&ctx, true), &own, self.call_deadline).await {
                    Ok(course) => Some(course),
                    // Another instructor's draft is invisible to the caller.
                    Err(e) if e.code == ErrorCode::NotFound => None,
                    Err(e) => return Err(e),
                };
            if course.is_none_or(|c| c.instructor_id != me.sub) {
                return Err(ErrorBody::forbidden("only the course's instructor or an admin creates its coupons"));
            }
        }
        if req.expires_at.is_some_and(|at| at <= self.clock.now()) {
            return Err(ErrorBody::invalid_field("expires_at", "must be in the future"));
        }
        let (percent_off, amount_off_minor, currency) = match &req.discount {
            Discount::Percent(p) => (Some(i16::from(*p)), None, None),
            Discount::Amount { amount_minor, currency } => (None, Some(*amount_minor), Some(currency.clone())),
        };
        let row = CouponRow {
            code,
            percent_off,
            amount_off_minor,
            currency,
            course_id: req.course_id,
            expires_at: req.expires_at,
            max_uses: req.max_uses.map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            used: 0,
            created_by: me.sub,
        };
        let mut conn = self.pool.acquire().await.map_err(db)?;
        if !store::insert_coupon(&mut conn, &row).await.map_err(db)? {
            return Err(ErrorBody::conflict("a coupon with this code exists"));
        }
        tracing::info!(code = %row.code, created_by = %me.sub, "coupon created");
        row.to_coupon().map_err(db)
    }

    pub async fn revenue(&self, ctx: CallContext, req: RevenueRequest) -> Result<RevenueReport, ErrorBody> {
        admin(&self.caller(&ctx).await?)?;
        let from = domain::parse_day("from", &req.from)?;
        let to = domain::parse_day("to", &req.to)?;
        if to < from || (to - from).whole_days() > 3_660 {
            return Err(ErrorBody::invalid_field("to", "`to` is on or after `from`, at most 10 years later"));
        }
        let until = to.next_day().ok_or_else(|| ErrorBody::invalid_field("to", "out of range"))?;
        let month = req.period == coursebus_contracts::payments::Period::Month;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let rows = store::revenue(&mut conn, from.midnight().assume_utc(), until.midnight().assume_utc(), month)
            .await
            .map_err(db)?;
        let csv = domain::revenue_csv(&rows);
        Ok(RevenueReport { rows, csv })
    }

    pub async fn ledger(&self, ctx: CallContext, req: LedgerRequest) -> Result<LedgerPage, ErrorBody> {
        admin(&self.caller(&ctx).await?)?;
        let limit = page_limit(req.limit, 100)?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let items = store::ledger(&mut conn, req.order_id, i64::from(limit)).await.map_err(db)?;
        Ok(LedgerPage { items })
    }

    pub async fn invoices(&self, ctx: CallContext, req: InvoiceListRequest) -> Result<InvoicePage, ErrorBody> {
        admin(&self.caller(&ctx).await?)?;
        if !(2000..=9999).contains(&req.year) {
            return Err(ErrorBody::invalid_field("year", "a year like 2026"));
        }
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let items = store::invoices(&mut conn, req.year).await.map_err(db)?;
        Ok(InvoicePage { items })
    }

    pub async fn reconcile_now(&self, ctx: CallContext, _req: Empty) -> Result<ReconcileReport, ErrorBody> {
        admin(&self.caller(&ctx).await?)?;
        self.reconcile().await.map_err(|e| e.into_body())
    }
}
