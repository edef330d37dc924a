//! The payment provider behind a trait (Stripe now; PayPal's Orders API could follow), and its
//! Stripe implementation with async-stripe.
//!
//! Every call that moves money carries an idempotency key derived from our own ids (`order:<id>`,
//! `refund:<id>`), so a retry after a crash or a timeout never creates a second PaymentIntent or
//! a second refund.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_core::PaymentIntentStatus;
use stripe_core::balance_transaction::ListBalanceTransaction;
use stripe_core::payment_intent::{CancelPaymentIntent, CreatePaymentIntent, RetrievePaymentIntent};
use stripe_core::refund::CreateRefund;
use uuid::Uuid;

/// Where a payment stands at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentStatus {
    /// Waiting for the buyer (no payment method yet, or one that was declined).
    AwaitingPayment,
    /// Being processed or authenticated; an outcome will follow.
    Processing,
    Succeeded,
    Canceled,
}

/// A payment (Stripe: a PaymentIntent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: String,
    pub client_secret: Option<String>,
    pub status: IntentStatus,
    pub amount_minor: i64,
    /// Lower case, as Stripe spells it.
    pub currency: String,
    /// The last attempt's decline message, if it failed.
    pub last_error: Option<String>,
    /// The charge of the latest attempt (Stripe: `latest_charge`).
    pub charge: Option<String>,
}

/// A refund at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    pub id: String,
    pub succeeded: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused (invalid request, declined, wrong state): retrying will not help.
    #[error("refused by the payment provider: {0}")]
    Rejected(String),
    /// Not reachable, timed out or failed on its side: retry with the same idempotency key.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    /// A payment of `amount_minor` for `order_id` (idempotent per order).
    async fn create_intent(
        &self,
        order_id: Uuid,
        amount_minor: i64,
        currency: &str,
        description: &str,
    ) -> Result<Intent, ProviderError>;

    async fn intent(&self, id: &str) -> Result<Intent, ProviderError>;

    /// Cancel a payment that has not succeeded (a replaced checkout).
    async fn cancel_intent(&self, id: &str) -> Result<Intent, ProviderError>;

    /// What the provider kept of charge `charge` as its processing fee (minor units).
    async fn fee(&self, charge: &str) -> Result<i64, ProviderError>;

    /// Refund `amount_minor` of payment `intent_id` (idempotent per `refund_id`).
    async fn refund(
        &self,
        refund_id: Uuid,
        intent_id: &str,
        amount_minor: i64,
    ) -> Result<ProviderRefund, ProviderError>;
}

/// Stripe, through async-stripe (any Stripe-compatible base URL, e.g. localstripe in tests).
pub struct Stripe {
    client: Client,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stripe { .. }") // the client holds the secret key
    }
}

impl Stripe {
    /// `api_base`: `https://api.stripe.com/` in production.
    pub fn new(secret_key: &str, api_base: &str, timeout: Duration) -> Result<Self, ProviderError> {
        let client = ClientBuilder::new(secret_key)
            .url(api_base)
            .timeout(timeout)
            .app_info("coursebus", Some(env!("CARGO_PKG_VERSION").to_owned()), None)
            .build()
            .map_err(|e| ProviderError::Rejected(format!("Stripe client configuration: {e}")))?;
        Ok(Self { client })
    }
}

fn key(kind: &str, id: Uuid) -> Result<RequestStrategy, ProviderError> {
    IdempotencyKey::new(format!("{kind}:{id}"))
        .map(RequestStrategy::Idempotent)
        .map_err(|e| ProviderError::Rejected(format!("idempotency key: {e}")))
}

fn classify(err: StripeError) -> ProviderError {
    match err {
        StripeError::Stripe(api, status) if (400..500).contains(&status) && status != 429 => {
            ProviderError::Rejected(api.message.clone().unwrap_or_else(|| format!("HTTP {status}")))
        }
        StripeError::Stripe(api, status) => {
            ProviderError::Unavailable(format!("HTTP {status}: {}", api.message.clone().unwrap_or_default()))
        }
        other => ProviderError::Unavailable(other.to_string()),
    }
}

fn intent_of(pi: stripe_core::PaymentIntent) -> Intent {
    let status = match pi.status {
        PaymentIntentStatus::Succeeded => IntentStatus::Succeeded,
        PaymentIntentStatus::Canceled => IntentStatus::Canceled,
        PaymentIntentStatus::Processing
        | PaymentIntentStatus::RequiresAction
        | PaymentIntentStatus::RequiresCapture => IntentStatus::Processing,
        _ => IntentStatus::AwaitingPayment,
    };
    Intent {
        id: pi.id.to_string(),
        client_secret: pi.client_secret,
        status,
        amount_minor: pi.amount,
        currency: pi.currency.to_string(),
        last_error: pi.last_payment_error.and_then(|e| e.message),
        charge: pi.latest_charge.map(|c| c.id().to_string()),
    }
}

#[async_trait]
impl PaymentProvider for Stripe {
    async fn create_intent(
        &self,
        order_id: Uuid,
        amount_minor: i64,
        currency: &str,
        description: &str,
    ) -> Result<Intent, ProviderError> {
        let currency = stripe_types::Currency::from_str(&currency.to_ascii_lowercase())
            .map_err(|_| ProviderError::Rejected("unknown currency".into()))?;
        let metadata = std::collections::HashMap::from([("order_id".to_owned(), order_id.to_string())]);
        let pi = CreatePaymentIntent::new(amount_minor, currency)
            .description(description)
            .metadata(metadata)
            .customize()
            .request_strategy(key("order", order_id)?)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(intent_of(pi))
    }

    async fn intent(&self, id: &str) -> Result<Intent, ProviderError> {
        let pi = RetrievePaymentIntent::new(id).send(&self.client).await.map_err(classify)?;
        Ok(intent_of(pi))
    }

    async fn cancel_intent(&self, id: &str) -> Result<Intent, ProviderError> {
        let pi = CancelPaymentIntent::new(id).send(&self.client).await.map_err(classify)?;
        Ok(intent_of(pi))
    }

    async fn fee(&self, charge: &str) -> Result<i64, ProviderError> {
        let transactions = ListBalanceTransaction::new().source(charge).send(&self.client).await.map_err(classify)?;
        Ok(transactions.data.iter().map(|t| t.fee).sum())
    }

    async fn refund(
        &self,
        refund_id: Uuid,
        intent_id: &str,
        amount_minor: i64,
    ) -> Result<ProviderRefund, ProviderError> {
        let metadata = std::collections::HashMap::from([("refund_id".to_owned(), refund_id.to_string())]);
        let refund = CreateRefund::new()
            .payment_intent(intent_id)
            .amount(amount_minor)
            .metadata(metadata)
            .customize()
            .request_strategy(key("refund", refund_id)?)
            .send(&self.client)
            .await
            .map_err(classify)?;
        let succeeded = refund.status.as_deref().is_none_or(|s| s == "succeeded" || s == "pending");
        Ok(ProviderRefund { id: refund.id.to_string(), succeeded })
    }
}
