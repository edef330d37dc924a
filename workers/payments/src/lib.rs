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

use async_nats::jetstream::consumer;
use coursebus_bus::auth::{BusJwks, JwtVerifier};
use coursebus_bus::{Bus, MicroService, ServiceSpec, consume, idempotency, outbox, streams};
use coursebus_contracts::Rpc;
use coursebus_contracts::payments::{
    Checkout, CreateCoupon, GetOrder, ListInvoices, ListLedger, ListMyOrders, OrderReceipt, Reconcile, RefundOrder,
    RevenueReportRpc,
};
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

/// Failures that stop the worker (as opposed to refused requests).
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    #[error(transparent)]
    Start(#[from] coursebus_bus::worker::StartError),
    #[error(transparent)]
    Bus(#[from] coursebus_bus::BusError),
    #[error(transparent)]
    Provider(#[from] provider::ProviderError),
}

#[derive(Clone)]
pub struct Config {
    pub nats_url: String,
    pub database_url: String,
    /// `sk_...` (never logged: `Debug` hides it).
    pub stripe_secret_key: String,
    /// `https://api.stripe.com/`, or a Stripe-compatible server.
    pub stripe_api_base: String,
    pub refund_window: RefundWindow,
    /// The seller's name on receipts.
    pub seller: String,
    /// How often each replica runs the reconciliation pass.
    pub reconcile_every: Duration,
    /// How long an order or refund may wait before the pass looks at it.
    pub stale_after: Duration,
    pub stream_replicas: usize,
    pub db_max_connections: u32,
    /// Deadline of each call to another service.
    pub call_deadline: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("stripe_api_base", &self.stripe_api_base)
            .field("refund_window", &self.refund_window)
            .field("reconcile_every", &self.reconcile_every)
            .field("stale_after", &self.stale_after)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn new(
        nats_url: impl Into<String>,
        database_url: impl Into<String>,
        stripe_secret_key: impl Into<String>,
    ) -> Self {
        Self {
            nats_url: nats_url.into(),
            database_url: database_url.into(),
            stripe_secret_key: stripe_secret_key.into(),
            stripe_api_base: "https://api.stripe.com/".into(),
            refund_window: RefundWindow { days: 14, max_progress_percent: 30 },
            seller: "coursebus".into(),
            reconcile_every: Duration::from_secs(60),
            stale_after: Duration::from_secs(300),
            stream_replicas: 1,
            db_max_connections: 10,
            call_deadline: Duration::from_secs(2),
        }
    }
}

/// How often a saga event is tried before it is parked in the DLQ.
const SAGA_MAX_DELIVER: i64 = 12;

fn saga_consumer(name: &str, filters: Vec<String>) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name.into()),
        filter_subjects: filters,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: SAGA_MAX_DELIVER,
        ..Default::default()
    }
}

/// Connect, migrate, provision `EVT_PAYMENTS` and `IN_STRIPE`, serve until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), PaymentsError> {
    // The Stripe client's TLS needs the process's rustls provider (idempotent).
    coursebus_bus::runtime::install_crypto_provider();
    let provider: Arc<dyn PaymentProvider> =
        Arc::new(Stripe::new(&config.stripe_secret_key, &config.stripe_api_base, Duration::from_secs(10))?);
    run_with(config, provider, shutdown).await
}

/// [`run`] with another payment provider.
pub async fn run_with(
    config: Config,
    provider: Arc<dyn PaymentProvider>,
    shutdown: CancellationToken,
) -> Result<(), PaymentsError> {
    let spec = coursebus_bus::worker::Spec {
        service: subj::SERVICE,
        nats_url: &config.nats_url,
        database_url: &config.database_url,
        max_connections: config.db_max_connections,
        streams: vec![
            streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, config.stream_replicas),
            // Webhook events wait here for the saga even while every payments replica is down.
            streams::event_stream(subj::STRIPE_STREAM, subj::STRIPE_SUBJECTS, config.stream_replicas),
            coursebus_bus::dlq::stream_config(config.stream_replicas),
        ],
    };
    let coursebus_bus::worker::Started { pool, client, js } =
        coursebus_bus::worker::start_pg(spec, &sqlx::migrate!("./migrations")).await?;

    let bus = Bus::new(client.clone(), config.call_deadline);
    let relay = outbox::Relay::new(pool.clone(), js.clone());
    let payments = Arc::new(Payments {
        pool: pool.clone(),
        verifier: JwtVerifier::new(BusJwks(bus.clone())),
        bus,
        call_deadline: config.call_deadline,
        outbox: relay.waker(),
        provider,
        refund_window: config.refund_window,
        seller: config.seller.clone(),
        stale_after: config.stale_after,
    });

    let mut service = MicroService::start(&client, SPEC, shutdown.clone()).await?;
    coursebus_bus::serve!(
        service,
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
    tracing::info!(endpoints = 10, first = %<Checkout as Rpc>::ENDPOINT.subject(), "payments serving");

    let stripe = {
        let payments = payments.clone();
        let config = saga_consumer(subj::STRIPE_CONSUMER, vec![subj::STRIPE_SUBJECTS.into()]);
        tokio::spawn(consume::run(js.clone(), subj::STRIPE_STREAM, config, shutdown.clone(), move |_, payload| {
            let payments = payments.clone();
            async move { payments.on_stripe_event(payload).await }
        }))
    };
    let outcomes = {
        let payments = payments.clone();
        let filters = saga::ENROLLMENT_OUTCOMES.iter().map(|s| (*s).to_owned()).collect();
        let config = saga_consumer(subj::ENROLLMENT_CONSUMER, filters);
        tokio::spawn(consume::run(
            js.clone(),
            enrollment_subj::EVENT_STREAM,
            config,
            shutdown.clone(),
            move |subject, payload| {
                let payments = payments.clone();
                async move { payments.on_enrollment_event(&subject, payload).await }
            },
        ))
    };
    let reconciler = tokio::spawn(reconcile_every(payments.clone(), config.reconcile_every, shutdown.clone()));
    let relay = tokio::spawn(relay.run(shutdown.clone()));
    let housekeeping = tokio::spawn(idempotency::purge_until(pool.clone(), Duration::from_secs(600), shutdown.clone()));
    service.run().await;
    let _ = tokio::join!(relay, stripe, outcomes, reconciler, housekeeping);
    pool.close().await;
    client.flush().await.ok();
    tracing::info!("payments stopped");
    Ok(())
}

/// The reconciliation pass on a timer (every replica; each step is idempotent under row locks).
async fn reconcile_every(payments: Arc<Payments>, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(err) = payments.reconcile().await {
            tracing::warn!(error = %err, "reconciliation pass failed");
        }
    }
}
