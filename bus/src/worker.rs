//! The supervisor every worker runs on. A worker's `lib.rs` declares what it is — its service
//! (name, version, endpoints), its consumers, its periodic jobs, its live settings and its
//! state — and calls [`Worker::run`]; the supervisor owns everything else:
//!
//! - the NATS connection (named after the service) and JetStream, the streams the worker owns;
//! - for a worker with PostgreSQL ([`Worker::postgres`]): the pool, the migrations, the outbox
//!   and idempotency tables, the outbox relay, and the purge of old idempotency keys;
//! - the token verifier (identity's JWKS over the bus, cached);
//! - live settings from the `cb_config` bucket ([`crate::settings`]);
//! - one task tracker: consumers ([`crate::consume`]), periodic jobs and background tasks all
//!   stop on the same shutdown and are awaited before the pool closes.
//!
//! ```text
//! let mut worker = Worker::start(SPEC, &config.common, shutdown).await?;
//! let db = worker.postgres(&MIGRATOR).await?;
//! worker.streams([...]).await?;
//! let state = Arc::new(State { pool: db.pool.clone(), outbox: db.outbox.clone(), .. });
//! coursebus_bus::endpoints!(worker, state, Enroll => enroll, GetEnrollment => get);
//! worker.consume(Consumer::events(..), move |delivery| ..);
//! worker.every("sweep", Duration::from_secs(5), move || ..);
//! worker.run().await
//! ```
//!
//! [`Worker::run`] registers the micro service and its endpoints only once everything is
//! declared, serves until shutdown, drains the requests in flight, stops the tasks, closes the
//! pool, flushes NATS, and logs the stop with the number of endpoints it served.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use coursebus_contracts::settings::Key;
use coursebus_contracts::{ErrorBody, Rpc};
use futures::future::BoxFuture;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{BusJwks, JwtVerifier};
use crate::config::{CommonConfig, ConfigError};
use crate::consume::{Consumer, Delivery, Handled};
use crate::settings::{FromSetting, Live, Settings};
use crate::{Bus, BusError, CallContext, MicroService, ServiceSpec, idempotency, outbox, streams};

/// Why a worker could not start (requests it refuses are [`ErrorBody`] replies, not this).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A failure of the worker's own start-up (a mailer, ffmpeg, a search index…).
    #[error("{what}: {reason}")]
    Worker { what: &'static str, reason: String },
}

impl StartError {
    /// A failure of the worker's own start-up: `what` failed because of `reason`.
    pub fn worker(what: &'static str, reason: impl std::fmt::Display) -> Self {
        StartError::Worker { what, reason: reason.to_string() }
    }
}

/// A connection that sat idle in the pool at least this long is pinged before it is handed out.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(30);

/// How often old idempotency answers are purged.
const IDEMPOTENCY_PURGE_EVERY: Duration = Duration::from_secs(600);

/// The pool settings of every PostgreSQL worker: up to `max_connections`, 5 s to get one, and a
/// ping round trip only for a connection idle for [`PING_AFTER_IDLE`] or longer (sqlx's default
/// pings on every acquire: one more round trip per transaction under load; a connection that
/// broke while busy is dropped by sqlx on its first error).
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// What a worker with PostgreSQL gets: its pool and the handle that wakes its outbox relay.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub pool: PgPool,
    /// Call after committing a transaction that enqueued events.
    pub outbox: outbox::Waker,
}

type Registration = Box<dyn for<'a> FnOnce(&'a mut MicroService) -> BoxFuture<'a, Result<(), BusError>> + Send + Sync>;
type Task = Box<dyn FnOnce(jetstream::Context, CancellationToken) -> BoxFuture<'static, ()> + Send + Sync>;

/// A worker being declared, then run. See the module documentation.
pub struct Worker {
    spec: ServiceSpec,
    common: CommonConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    pool: Option<PgPool>,
    relay: Option<outbox::Relay>,
    verifier: OnceLock<Arc<JwtVerifier>>,
    endpoints: Vec<(String, Registration)>,
    tasks: Vec<Task>,
    settings: Settings,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("service", &self.spec.name)
            .field("endpoints", &self.endpoints.len())
            .field("tasks", &self.tasks.len())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Connect to NATS as `spec.name` (retrying for 30 s).
    pub async fn start(
        spec: ServiceSpec,
        common: &CommonConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let client = crate::connect(common.nats_url.expose(), spec.name, Duration::from_secs(30)).await?;
        let js = jetstream::new(client.clone());
        Ok(Self {
            spec,
            common: common.clone(),
            client,
            js,
            shutdown,
            tracker: TaskTracker::new(),
            pool: None,
            relay: None,
            verifier: OnceLock::new(),
            endpoints: Vec::new(),
            tasks: Vec::new(),
            settings: Settings::default(),
        })
    }

    /// Connect to the worker's PostgreSQL ([`pool_options`]), run `migrations`, install the
    /// outbox and idempotency tables; the relay and the idempotency purge run with the worker.
    pub async fn postgres(&mut self, migrations: &'static Migrator) -> Result<Postgres, StartError> {
        let url = self.common.require_database(self.spec.name)?;
        let pool = pool_options(self.common.db_max_connections).connect(url.expose()).await?;
        migrations.run(&pool).await?;
        outbox::install(&pool).await?;
        idempotency::install(&pool).await?;
        let relay = outbox::Relay::new(pool.clone(), self.js.clone());
        let waker = relay.waker();
        self.relay = Some(relay);
        self.pool = Some(pool.clone());
        let purge = pool.clone();
        self.every("idempotency purge", IDEMPOTENCY_PURGE_EVERY, move || {
            let pool = purge.clone();
            async move { idempotency::purge(&pool).await.map(|_| ()) }
        });
        Ok(Postgres { pool, outbox: waker })
    }

    /// Create the streams this worker owns, or bring them to these configurations.
    pub async fn streams(&self, configs: impl IntoIterator<Item = stream::Config>) -> Result<(), StartError> {
        for config in configs {
            streams::ensure_stream(&self.js, config).await?;
        }
        Ok(())
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn common(&self) -> &CommonConfig {
        &self.common
    }

    /// JetStream replicas of the streams this worker owns.
    pub fn replicas(&self) -> usize {
        self.common.stream_replicas
    }

    /// Cancelled when the worker is asked to stop.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Requests to other services, with the configured call deadline.
    pub fn bus(&self) -> Bus {
        Bus::new(self.client.clone(), self.common.call_deadline)
    }

    /// The access-token verifier (identity's JWKS over the bus, cached), one per worker.
    pub fn verifier(&self) -> Arc<JwtVerifier> {
        self.verifier.get_or_init(|| JwtVerifier::new(BusJwks(self.bus()))).clone()
    }

    /// Use the central configuration's `key`, starting from `configured`.
    pub fn setting<T: FromSetting>(&mut self, key: &'static Key, configured: T) -> Live<T> {
        self.settings.live(key, configured)
    }

    /// Serve `R`'s endpoint with `handler` (see [`crate::endpoints!`] for the usual form).
    pub fn endpoint<R, H, Fut>(&mut self, handler: H)
    where
        R: Rpc + 'static,
        H: Fn(CallContext, R::Request) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<R::Reply, ErrorBody>> + Send + 'static,
    {
        let register: Registration = Box::new(move |service| Box::pin(service.serve::<R, H, Fut>(handler)));
        self.endpoints.push((R::ENDPOINT.subject(), register));
    }

    /// Run `consumer` with `handler` on every message (see [`crate::consume`]).
    pub fn consume<F, Fut>(&mut self, consumer: Consumer, handler: F)
    where
        F: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Handled> + Send + 'static,
    {
        self.tasks
            .push(Box::new(move |js, shutdown| Box::pin(crate::consume::consume(js, consumer, shutdown, handler))));
    }

    /// Run `job` every `period` until shutdown (first after one period); a failure is logged
    /// with `name` and the job runs again at its next time.
    pub fn every<F, Fut, E>(&mut self, name: &'static str, period: Duration, job: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.tasks.push(Box::new(move |_, shutdown| {
            Box::pin(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(period) => {}
                    }
                    if let Err(err) = job().await {
                        tracing::warn!(job = name, error = %err, "periodic job failed; it runs again at its next time");
                    }
                }
            })
        }));
    }

    /// Run `task` from now on, as part of the worker: it must return once `shutdown()` fires.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// Apply the live settings, register the micro service and its endpoints, start the
    /// consumers, jobs and the relay, serve until shutdown, then drain and stop.
    pub async fn run(self) -> Result<(), StartError> {
        let Worker { spec, common, client, js, shutdown, tracker, pool, relay, endpoints, tasks, settings, .. } = self;
        if !settings.is_empty() {
            let watcher = settings.start(&js, common.stream_replicas, shutdown.clone()).await?;
            tracker.spawn(async move {
                let _ = watcher.await;
            });
        }
        let mut service = MicroService::start(&client, spec, shutdown.clone()).await?;
        let count = endpoints.len();
        let first = endpoints.first().map(|(subject, _)| subject.clone()).unwrap_or_default();
        for (_, register) in endpoints {
            register(&mut service).await?;
        }
        for task in tasks {
            tracker.spawn(task(js.clone(), shutdown.clone()));
        }
        if let Some(relay) = relay {
            tracker.spawn(relay.run(shutdown.clone()));
        }
        tracing::info!(service.name = spec.name, endpoints = count, first = %first, "serving");
        service.run().await;
        tracker.close();
        tracker.wait().await;
        if let Some(pool) = pool {
            pool.close().await;
        }
        client.flush().await.ok();
        tracing::info!(service.name = spec.name, endpoints = count, "stopped");
        Ok(())
    }
}

/// Declare endpoints served by methods of a shared state:
/// `endpoints!(worker, state, Register => register, Login => login)` serves every `Register`
/// request with `state.register(ctx, request)` (`state` is an `Arc`).
#[macro_export]
macro_rules! endpoints {
    ($worker:expr, $state:expr, $($rpc:ty => $method:ident),+ $(,)?) => {{
        $({
            let state = $state.clone();
            $worker.endpoint::<$rpc, _, _>(move |ctx, req| {
                let state = state.clone();
                async move { state.$method(ctx, req).await }
            });
        })+
    }};
}
