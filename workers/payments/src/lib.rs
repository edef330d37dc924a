//! The payments worker: checkout with Stripe PaymentIntents, the paid-enrolment saga, refunds, a
//! double-entry ledger, gapless invoice numbers and PDF receipts, served as the NATS micro
//! service `payments` over PostgreSQL.
//!
//! - `handlers.rs`: the endpoints (checkout, orders, refunds, receipts, coupons, admin reports);
//! - `saga.rs`: the steps driven by Stripe's webhooks (stream `IN_STRIPE`, filled by the
//!   gateway after it verified the signature) and by enrollment's outcomes, and the
//!   reconciliation pass that repairs what was left waiting;
//! - `provider.rs`: the `PaymentProvider` trait and its Stripe implementation (async-stripe);
//! - `domain.rs`: prices, coupons, ledger postings, invoice numbers, the refund window, CSV;
//! - `store.rs`: SQL; `receipt.rs`: the PDF.

pub mod domain;
pub mod handlers;
pub mod provider;
pub mod receipt;
pub mod saga;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::clock::Clock;
use coursebus_bus::config::{self, CommonConfig, ConfigError, Secret};
use coursebus_bus::consume::Consumer;
use coursebus_bus::{ServiceSpec, StartError, Worker, streams};
use coursebus_contracts::payments::{
    Checkout, CreateCoupon, GetOrder, ListInvoices, ListLedger, ListMyOrders, OrderReceipt, Reconcile, RefundOrder,
    RevenueReportRpc,
};
use coursebus_contracts::settings::{REFUND_MAX_PROGRESS_PERCENT, REFUND_WINDOW_DAYS};
use coursebus_contracts::subjects::{enrollment as enrollment_subj, payments as subj};
use tokio_util::sync::CancellationToken;

use crate::domain::RefundWindow;
use crate::handlers::Payments;
use crate::provider::{PaymentProvider, Stripe};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Checkout, Stripe payments, refunds, ledger, invoices and receipts",
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `sk_...` (`CB_STRIPE_SECRET_KEY`).
    pub stripe_secret_key: Secret<String>,
    /// `https://api.stripe.com/`, or a Stripe-compatible server (`CB_STRIPE_API_BASE`).
    pub stripe_api_base: String,
    /// The refund window at start (`CB_REFUND_WINDOW_DAYS`, `CB_REFUND_MAX_PROGRESS_PERCENT`);
    /// the `cb_config` keys `payments.refund_window_days` and
    /// `payments.refund_max_progress_percent` change it while running.
    pub refund_window: RefundWindow,
    /// The seller's name on receipts (`CB_SELLER_NAME`).
    pub seller: String,
    /// How often each replica runs the reconciliation pass (`CB_PAYMENTS_RECONCILE_SECS`).
    pub reconcile_every: Duration,
    /// How long an order or refund may wait before the pass looks at it (`CB_PAYMENTS_STALE_SECS`).
    pub stale_after: Duration,
    /// How long a call to Stripe may take (`CB_STRIPE_TIMEOUT_SECS`).
    pub stripe_timeout: Duration,
    /// The time the worker decides by (tests move it forward).
    pub clock: Clock,
}

impl Config {
    pub fn new(
        nats_url: impl Into<String>,
        database_url: impl Into<String>,
        stripe_secret_key: impl Into<String>,
    ) -> Self {
        Self {
            common: CommonConfig::new(nats_url).with_database(database_url),
            stripe_secret_key: Secret::new(stripe_secret_key.into()),
            stripe_api_base: "https://api.stripe.com/".into(),
            refund_window: RefundWindow { days: 14, max_progress_percent: 30 },
            seller: "coursebus".into(),
            reconcile_every: Duration::from_secs(60),
            stale_after: Duration::from_secs(300),
            stripe_timeout: Duration::from_secs(10),
            clock: Clock::system(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::new("", "", "");
        let window = |key: &coursebus_contracts::settings::Key, default: u32| -> Result<u32, ConfigError> {
            let name = key.env.unwrap_or_default();
            match coursebus_bus::runtime::env(name) {
                None => Ok(default),
                Some(raw) => <u32 as coursebus_bus::settings::FromSetting>::parse(key, &raw)
                    .map_err(|reason| ConfigError::Invalid { name: name.to_owned(), value: raw, reason }),
            }
        };
        Ok(Self {
            common: CommonConfig::from_env(subj::SERVICE)?,
            stripe_secret_key: Secret::new(config::required("CB_STRIPE_SECRET_KEY")?),
            stripe_api_base: config::or("CB_STRIPE_API_BASE", defaults.stripe_api_base)?,
            refund_window: RefundWindow {
                days: window(&REFUND_WINDOW_DAYS, defaults.refund_window.days)?,
                max_progress_percent: window(
                    &REFUND_MAX_PROGRESS_PERCENT,
                    defaults.refund_window.max_progress_percent,
                )?,
            },
            seller: config::or("CB_SELLER_NAME", defaults.seller)?,
            reconcile_every: config::secs("CB_PAYMENTS_RECONCILE_SECS", defaults.reconcile_every)?,
            stale_after: config::secs("CB_PAYMENTS_STALE_SECS", defaults.stale_after)?,
            stripe_timeout: config::secs("CB_STRIPE_TIMEOUT_SECS", defaults.stripe_timeout)?,
            clock: Clock::system(),
        })
    }
}

/// Serve with Stripe until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    // The Stripe client's TLS needs the process's rustls provider (idempotent).
    coursebus_bus::runtime::install_crypto_provider();
    let stripe = Stripe::new(config.stripe_secret_key.expose(), &config.stripe_api_base, config.stripe_timeout)
        .map_err(|e| StartError::worker("Stripe client", e))?;
    run_with(config, Arc::new(stripe), shutdown).await
}

/// [`run`] with another payment provider: the endpoints, the saga's two consumers (Stripe's
/// webhook events from `IN_STRIPE`, enrollment's outcomes) and the reconciliation pass.
pub async fn run_with(
    config: Config,
    provider: Arc<dyn PaymentProvider>,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let mut worker = Worker::start(SPEC, &config.common, shutdown).await?;
    let db = worker.postgres(&MIGRATOR).await?;
    worker
        .streams([
            streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, worker.replicas()),
            // Webhook events wait here for the saga even while every payments replica is down.
            streams::event_stream(subj::STRIPE_STREAM, subj::STRIPE_SUBJECTS, worker.replicas()),
            coursebus_bus::dlq::stream_config(worker.replicas()),
        ])
        .await?;

    let payments = Arc::new(Payments {
        pool: db.pool,
        verifier: worker.verifier(),
        bus: worker.bus(),
        call_deadline: config.common.call_deadline,
        outbox: db.outbox,
        provider,
        refund_days: worker.setting(&REFUND_WINDOW_DAYS, config.refund_window.days),
        refund_max_progress: worker.setting(&REFUND_MAX_PROGRESS_PERCENT, config.refund_window.max_progress_percent),
        seller: config.seller.clone(),
        stale_after: config.stale_after,
        clock: config.clock.clone(),
    });

    coursebus_bus::endpoints!(
        worker,
        payments,
        Checkout => checkout,
        GetOrder => get,
        ListMyOrders => mine,
        RefundOrder => refund,
        OrderReceipt => receipt,
        CreateCoupon => create_coupon,
        RevenueReportRpc => revenue,
        ListLedger => ledger,
        ListInvoices => invoices,
        Reconcile => reconcile_now,
    );

    let state = payments.clone();
    worker.consume(
        Consumer::events(subj::STRIPE_STREAM, subj::STRIPE_CONSUMER, &[subj::STRIPE_SUBJECTS]),
        move |delivery| {
            let payments = state.clone();
            async move { payments.on_stripe_event(delivery.payload).await }
        },
    );
    let state = payments.clone();
    worker.consume(
        Consumer::events(enrollment_subj::EVENT_STREAM, subj::ENROLLMENT_CONSUMER, &saga::ENROLLMENT_OUTCOMES),
        move |delivery| {
            let payments = state.clone();
            async move { payments.on_enrollment_event(&delivery.subject, delivery.payload).await }
        },
    );
    // Every replica runs the pass; each step is idempotent under row locks.
    worker.every("reconciliation", config.reconcile_every, move || {
        let payments = payments.clone();
        async move { payments.reconcile().await.map(|_| ()) }
    });
    worker.run().await
}
