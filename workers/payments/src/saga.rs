//! The paid-enrolment saga and its repairs. Each step is a transaction that is idempotent by the
//! order's (or refund's) state under a row lock, so a redelivered event, a replayed webhook or a
//! second replica running the same step changes nothing twice:
//!
//! - Stripe `payment_intent.succeeded` → [`Payments::settle_paid`] (checked against Stripe
//!   itself): order `paid`, an invoice number, the ledger's payment postings and `OrderPaid`, in
//!   one transaction;
//! - enrollment's `enrolment.created` with the order id → `fulfilled` and `OrderFulfilled`;
//!   `enrolment.rejected` → a full refund (the compensation);
//! - refunds are recorded `pending` first, then asked of Stripe with the refund's id as the
//!   idempotency key, then settled with the ledger's refund postings and `OrderRefunded`;
//! - [`Payments::reconcile`] finds what a lost webhook, a crash or an outage left waiting and
//!   drives it to its end with the same steps.

use bytes::Bytes;
use coursebus_bus::consume::Handled;
use coursebus_bus::outbox;
use coursebus_contracts::enrollment::{EnrollmentCreated, EnrollmentRejected};
use coursebus_contracts::payments::{
    Invoice, OrderFailed, OrderFulfilled, OrderPaid, OrderRefunded, OrderStatus, ReconcileReport,
};
use coursebus_contracts::subjects::enrollment as enrollment_subj;
use coursebus_contracts::{Actor, ErrorBody, Event, EventEnvelope};
use uuid::Uuid;

use crate::domain;
use crate::handlers::Payments;
use crate::provider::{IntentStatus, ProviderError};
use crate::store::{self, RefundRow};

/// Why a saga step did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Try again later (database or provider unavailable).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed as asked.
    #[error("{0}")]
    Refused(String),
}

impl Failure {
    pub fn into_body(self) -> ErrorBody {
        match self {
            Failure::Transient(msg) => {
                tracing::warn!(error = %msg, "saga step will be retried");
                ErrorBody::unavailable("the payment could not be completed now; retry with the same key")
            }
            Failure::Refused(msg) => ErrorBody::conflict(msg),
        }
    }

    fn handled(self) -> Handled {
        match self {
            Failure::Transient(msg) => Handled::Retry(msg),
            Failure::Refused(msg) => Handled::Reject(msg),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(err: sqlx::Error) -> Self {
        Failure::Transient(format!("database: {err}"))
    }
}

impl From<coursebus_bus::BusError> for Failure {
    fn from(err: coursebus_bus::BusError) -> Self {
        Failure::Transient(format!("outbox: {err}"))
    }
}

impl From<ProviderError> for Failure {
    fn from(err: ProviderError) -> Self {
        match err {
            ProviderError::Rejected(msg) => Failure::Refused(msg),
            ProviderError::Unavailable(msg) => Failure::Transient(msg),
        }
    }
}

fn service() -> Actor {
    Actor::Service { name: coursebus_contracts::subjects::payments::SERVICE.into() }
}

/// The parts of a Stripe event the saga reads.
#[derive(Debug, serde::Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: StripeEventData,
}

#[derive(Debug, serde::Deserialize)]
struct StripeEventData {
    object: StripeObject,
}

#[derive(Debug, serde::Deserialize)]
struct StripeObject {
    id: String,
    object: String,
}

impl Payments {
    /// Mark an order paid (from `pending`, or from `failed` when a later attempt succeeded).
    /// Idempotent: a paid order stays as it is.
    /// `fee`: what the provider kept (0 when nothing was charged).
    pub async fn settle_paid(&self, order_id: Uuid, how: &str, fee: i64) -> Result<(), Failure> {
        let mut tx = self.pool.begin().await?;
        let Some(order) = store::order_for_update(&mut tx, order_id).await? else {
            return Err(Failure::Refused(format!("no order {order_id}")));
        };
        let status = order.status()?;
        if !matches!(status, OrderStatus::Pending | OrderStatus::Failed) {
            return Ok(());
        }
        let now = self.clock.now();
        let (number, sequence) = store::next_invoice(&mut tx, now.year()).await?;
        store::insert_invoice(
            &mut tx,
            &Invoice {
                number: number.clone(),
                year: now.year(),
                sequence,
                order_id,
                total_minor: order.total_minor,
                currency: order.currency.clone(),
                issued_at: now,
            },
        )
        .await?;
        store::mark_paid(&mut tx, order_id, &number, now).await?;
        let postings = domain::payment_postings(
            order.list_price_minor,
            order.discount_minor,
            order.total_minor,
            fee,
            order.coupon_code.as_deref(),
        );
        store::post(&mut tx, &order, &postings).await?;
        let event = OrderPaid {
            order_id,
            user_id: order.user_id,
            course_id: order.course_id,
            total_minor: order.total_minor,
            currency: order.currency.clone(),
            paid_at: now,
        }
        .envelope(service());
        outbox::enqueue(&mut tx, &event, None).await?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(%order_id, invoice = %number, how, "order paid");
        Ok(())
    }

    /// A declined payment: the order waits for another attempt, marked `failed` with the reason.
    async fn settle_failed(&self, order_id: Uuid, reason: &str) -> Result<(), Failure> {
        let mut tx = self.pool.begin().await?;
        let Some(order) = store::order_for_update(&mut tx, order_id).await? else { return Ok(()) };
        if order.status()? != OrderStatus::Pending {
            return Ok(());
        }
        store::set_status(&mut tx, order_id, OrderStatus::Failed, Some(reason)).await?;
        let event = OrderFailed { order_id, user_id: order.user_id, course_id: order.course_id, reason: reason.into() }
            .envelope(service());
        outbox::enqueue(&mut tx, &event, None).await?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(%order_id, reason, "payment failed");
        Ok(())
    }

    /// A PaymentIntent's state, as Stripe has it, applied to its order.
    async fn apply_intent(&self, intent_id: &str, how: &str) -> Result<bool, Failure> {
        let intent = self.provider.intent(intent_id).await?;
        let mut conn = self.pool.acquire().await?;
        let Some(order) = store::order_by_intent(&mut conn, intent_id).await? else {
            // Not ours (another integration on the same Stripe account): nothing to do.
            tracing::info!(payment_intent = %intent_id, "event for an unknown payment intent ignored");
            return Ok(false);
        };
        drop(conn);
        if intent.amount_minor != order.total_minor || !intent.currency.eq_ignore_ascii_case(&order.currency) {
            return Err(Failure::Refused(format!(
                "payment intent {intent_id} is for {} {}, the order for {} {}",
                intent.amount_minor, intent.currency, order.total_minor, order.currency
            )));
        }
        match intent.status {
            IntentStatus::Succeeded => {
                let fee = match &intent.charge {
                    Some(charge) => self.provider.fee(charge).await?,
                    None => 0,
                };
                self.settle_paid(order.id, how, fee).await?;
                Ok(true)
            }
            IntentStatus::AwaitingPayment if intent.last_error.is_some() => {
                self.settle_failed(order.id, intent.last_error.as_deref().unwrap_or("declined")).await?;
                Ok(true)
            }
            IntentStatus::Canceled => {
                let mut tx = self.pool.begin().await?;
                if let Some(o) = store::order_for_update(&mut tx, order.id).await?
                    && matches!(o.status()?, OrderStatus::Pending | OrderStatus::Failed)
                {
                    store::set_status(&mut tx, o.id, OrderStatus::Cancelled, Some("payment cancelled")).await?;
                    if let Some(code) = &o.coupon_code {
                        store::use_coupon(&mut tx, code, -1).await?;
                    }
                    tx.commit().await?;
                    return Ok(true);
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// One verified Stripe event from `IN_STRIPE`. The event's content is not trusted beyond
    /// the id of the object: its state is read back from Stripe.
    pub async fn on_stripe_event(&self, payload: Bytes) -> Handled {
        let event: StripeEvent = match serde_json::from_slice(&payload) {
            Ok(e) => e,
            Err(err) => return Handled::Reject(format!("not a Stripe event: {err}")),
        };
        if event.data.object.object != "payment_intent" {
            return Handled::Done; // other objects are not part of the saga
        }
        let outcome = match event.kind.as_str() {
            "payment_intent.succeeded" | "payment_intent.payment_failed" | "payment_intent.canceled" => {
                self.apply_intent(&event.data.object.id, "webhook").await
            }
            _ => Ok(false),
        };
        match outcome {
            Ok(_) => {
                let recorded = async {
                    let mut conn = self.pool.acquire().await?;
                    store::first_stripe_event(&mut conn, &event.id, &event.kind).await
                };
                if let Ok(false) = recorded.await {
                    tracing::info!(stripe_event = %event.id, "Stripe event seen before (no change)");
                }
                Handled::Done
            }
            Err(err) => err.handled(),
        }
    }

    /// An enrolment outcome from `EVT_ENROLLMENT` (only those about orders matter here).
    pub async fn on_enrollment_event(&self, subject: &str, payload: Bytes) -> Handled {
        let outcome = match subject {
            enrollment_subj::EVT_ENROLMENT_CREATED => {
                match serde_json::from_slice::<EventEnvelope<EnrollmentCreated>>(&payload) {
                    Ok(e) => match e.data.order_id {
                        Some(order_id) => self.fulfil(order_id, e.data.enrollment_id).await,
                        None => Ok(()),
                    },
                    Err(err) => Err(Failure::Refused(format!("malformed enrolment event: {err}"))),
                }
            }
            enrollment_subj::EVT_ENROLMENT_REJECTED => {
                match serde_json::from_slice::<EventEnvelope<EnrollmentRejected>>(&payload) {
                    Ok(e) => self.compensate(e.data).await,
                    Err(err) => Err(Failure::Refused(format!("malformed rejection event: {err}"))),
                }
            }
            _ => Ok(()),
        };
        match outcome {
            Ok(()) => Handled::Done,
            Err(err) => err.handled(),
        }
    }

    async fn fulfil(&self, order_id: Uuid, enrollment_id: Uuid) -> Result<(), Failure> {
        let mut tx = self.pool.begin().await?;
        let Some(order) = store::order_for_update(&mut tx, order_id).await? else {
            return Err(Failure::Refused(format!("enrolment for unknown order {order_id}")));
        };
        if order.status()? != OrderStatus::Paid {
            return Ok(());
        }
        store::mark_fulfilled(&mut tx, order_id, enrollment_id).await?;
        let event = OrderFulfilled {
            order_id,
            user_id: order.user_id,
            course_id: order.course_id,
            course_title: order.course_title.clone(),
            enrollment_id,
            invoice_number: order.invoice_number.clone(),
            total_minor: order.total_minor,
            currency: order.currency.clone(),
        }
        .envelope(service());
        outbox::enqueue(&mut tx, &event, None).await?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(%order_id, %enrollment_id, "order fulfilled");
        Ok(())
    }

    /// Enrollment could not enrol the buyer of a paid order: give the money back.
    async fn compensate(&self, rejected: EnrollmentRejected) -> Result<(), Failure> {
        tracing::warn!(order_id = %rejected.order_id, reason = %rejected.reason, "enrolment rejected; refunding");
        let reason = format!("enrolment not possible: {}", rejected.reason);
        let mut conn = self.pool.acquire().await?;
        let order = store::order(&mut conn, rejected.order_id).await?;
        drop(conn);
        let Some(order) = order else { return Err(Failure::Refused("rejection of an unknown order".into())) };
        if !matches!(order.status()?, OrderStatus::Paid | OrderStatus::Fulfilled) || order.total_minor == 0 {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        store::set_status(&mut conn, order.id, order.status()?, Some(&reason)).await?;
        drop(conn);
        match self.start_refund(order.id, None, &reason, order.user_id).await {
            Ok(refund) => self.execute_refund(refund).await,
            Err(body) if body.code == coursebus_contracts::ErrorCode::Conflict => Ok(()), // nothing left
            Err(body) => Err(Failure::Transient(body.message)),
        }
    }

    /// Record a refund of `amount` (what is left when `None`) as `pending`; an order has at most
    /// one pending refund, which is returned again.
    pub async fn start_refund(
        &self,
        order_id: Uuid,
        amount: Option<i64>,
        reason: &str,
        by: Uuid,
    ) -> Result<RefundRow, ErrorBody> {
        let db = crate::handlers::db;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let order = store::order_for_update(&mut tx, order_id).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
        if let Some(pending) = store::pending_refund(&mut tx, order_id).await.map_err(db)? {
            return Ok(pending);
        }
        let left = order.total_minor - store::committed_refunds(&mut tx, order_id).await.map_err(db)?;
        let amount = amount.unwrap_or(left);
        if left <= 0 {
            return Err(ErrorBody::conflict("nothing is left to refund on this order"));
        }
        if amount <= 0 || amount > left {
            return Err(ErrorBody::invalid_field("amount_minor", format!("between 1 and {left} (what is left)")));
        }
        let row = RefundRow {
            id: Uuid::now_v7(),
            order_id,
            amount_minor: amount,
            reason: reason.to_owned(),
            status: "pending".into(),
            requested_by: by,
            created_at: self.clock.now(),
        };
        store::insert_refund(&mut tx, &row).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(%order_id, refund_id = %row.id, amount_minor = amount, "refund requested");
        Ok(row)
    }

    /// Ask the provider for a pending refund (idempotent per refund id) and settle it.
    pub async fn execute_refund(&self, refund: RefundRow) -> Result<(), Failure> {
        let mut conn = self.pool.acquire().await?;
        let order =
            store::order(&mut conn, refund.order_id).await?.ok_or_else(|| Failure::Refused("no order".into()))?;
        drop(conn);
        let Some(intent) = order.payment_intent_id.clone() else {
            return Err(Failure::Refused("the order has no payment to refund".into()));
        };
        let outcome = self.provider.refund(refund.id, &intent, refund.amount_minor).await;
        let mut tx = self.pool.begin().await?;
        let Some(current) = store::refund_for_update(&mut tx, refund.id).await? else { return Ok(()) };
        if current.status != "pending" {
            return Ok(());
        }
        match outcome {
            Ok(done) if done.succeeded => {
                let order = store::order_for_update(&mut tx, order.id)
                    .await?
                    .ok_or_else(|| Failure::Refused("no order".into()))?;
                let full = order.refunded_minor + refund.amount_minor >= order.total_minor;
                store::settle_refund(&mut tx, refund.id, Some(&done.id), None).await?;
                store::add_refunded(&mut tx, order.id, refund.amount_minor, full).await?;
                store::post(&mut tx, &order, &domain::refund_postings(refund.amount_minor, &refund.reason)).await?;
                let event = OrderRefunded {
                    order_id: order.id,
                    refund_id: refund.id,
                    user_id: order.user_id,
                    course_id: order.course_id,
                    amount_minor: refund.amount_minor,
                    currency: order.currency.clone(),
                    full,
                    reason: refund.reason.clone(),
                }
                .envelope(Actor::User { id: refund.requested_by });
                outbox::enqueue(&mut tx, &event, None).await?;
                tx.commit().await?;
                self.outbox.wake();
                tracing::info!(order_id = %order.id, refund_id = %refund.id, amount_minor = refund.amount_minor, full, "refunded");
                Ok(())
            }
            Ok(done) => {
                store::settle_refund(
                    &mut tx,
                    refund.id,
                    Some(&done.id),
                    Some("the provider did not complete the refund"),
                )
                .await?;
                tx.commit().await?;
                Err(Failure::Refused("the provider did not complete the refund".into()))
            }
            Err(ProviderError::Rejected(msg)) => {
                store::settle_refund(&mut tx, refund.id, None, Some(&msg)).await?;
                tx.commit().await?;
                Err(Failure::Refused(msg))
            }
            Err(ProviderError::Unavailable(msg)) => Err(Failure::Transient(msg)),
        }
    }

    /// One reconciliation pass: orders and refunds left waiting longer than `stale_after` are
    /// driven to their end with the saga's own steps.
    pub async fn reconcile(&self) -> Result<ReconcileReport, Failure> {
        // One pass at a time across the replicas (their timers run side by side): the lock lives
        // as long as `guard`, a transaction that only holds it.
        let mut guard = self.pool.begin().await?;
        if !store::claim_reconciler(&mut guard).await? {
            tracing::info!("another replica is reconciling; skipped");
            return Ok(ReconcileReport::default());
        }
        let outcome = self.reconcile_pass().await;
        guard.rollback().await?;
        outcome
    }

    async fn reconcile_pass(&self) -> Result<ReconcileReport, Failure> {
        let older_than = self.clock.now() - self.stale_after;
        let mut report = ReconcileReport::default();
        let mut conn = self.pool.acquire().await?;
        let orders = store::waiting_orders(&mut conn, older_than, 200).await?;
        let refunds = store::stale_refunds(&mut conn, older_than, 200).await?;
        drop(conn);
        for order in orders {
            report.checked += 1;
            match (order.status()?, &order.payment_intent_id) {
                (OrderStatus::Pending, Some(intent)) => match self.apply_intent(intent, "reconciliation").await {
                    Ok(true) => {
                        report.repaired.push(format!("order {}: applied the payment's state at Stripe", order.id))
                    }
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(order_id = %order.id, error = %err, "reconciliation could not check the payment")
                    }
                },
                (OrderStatus::Paid, _) if order.paid_at.is_some_and(|at| at < older_than) => {
                    // Paid but never enrolled: ask enrollment again (it is idempotent per order).
                    let event = OrderPaid {
                        order_id: order.id,
                        user_id: order.user_id,
                        course_id: order.course_id,
                        total_minor: order.total_minor,
                        currency: order.currency.clone(),
                        paid_at: order.paid_at.unwrap_or(order.created_at),
                    }
                    .envelope(service());
                    let mut tx = self.pool.begin().await?;
                    outbox::enqueue(&mut tx, &event, None).await?;
                    tx.commit().await?;
                    self.outbox.wake();
                    report.repaired.push(format!("order {}: paid but not enrolled, enrolment asked again", order.id));
                }
                _ => {}
            }
        }
        for id in refunds {
            report.checked += 1;
            let mut conn = self.pool.acquire().await?;
            let row: Option<RefundRow> = store::refund_for_update(&mut conn, id).await?;
            drop(conn);
            let Some(row) = row.filter(|r| r.status == "pending") else { continue };
            match self.execute_refund(row).await {
                Ok(()) => report.repaired.push(format!("refund {id}: completed")),
                Err(Failure::Refused(msg)) => {
                    report.repaired.push(format!("refund {id}: failed at the provider: {msg}"))
                }
                Err(Failure::Transient(msg)) => tracing::warn!(refund_id = %id, error = %msg, "refund still pending"),
            }
        }
        if !report.repaired.is_empty() {
            tracing::info!(checked = report.checked, repaired = report.repaired.len(), "reconciliation repaired");
        }
        Ok(report)
    }
}

/// The event types the saga's enrollment consumer reads.
pub const ENROLLMENT_OUTCOMES: [&str; 2] =
    [enrollment_subj::EVT_ENROLMENT_CREATED, enrollment_subj::EVT_ENROLMENT_REJECTED];
