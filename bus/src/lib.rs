//! NATS plumbing shared by the gateway and every worker, with no domain knowledge:
//!
//! - [`connect`]: connect with retry;
//! - [`Bus`]: typed request-reply with an explicit deadline, where no responders and timeouts
//!   become `unavailable` at once;
//! - [`MicroService`]: register a worker as a NATS micro service and serve typed endpoints;
//! - [`CallContext`]: `traceparent`, request id, `Authorization` and `Idempotency-Key` propagation;
//! - [`streams`]: idempotent creation of JetStream streams;
//! - [`idempotency`]: `Idempotency-Key` replay for creating requests;
//! - [`outbox`]: the transactional outbox (PostgreSQL table → JetStream with `Nats-Msg-Id`);
//! - [`auth`]: access-token verification against the identity JWKS, cached and rotated;
//! - `s3` (feature `s3`): S3 clients for the workers that keep bytes.

pub mod auth;
pub mod cache;
pub mod client;
pub mod clock;
pub mod config;
pub mod consume;
pub mod context;
pub mod dlq;
pub mod idempotency;
pub mod ids;
pub mod outbox;
#[cfg(feature = "s3")]
pub mod s3;
pub mod service;
pub mod settings;
pub mod streams;
pub mod worker;

pub use client::{Bus, connect};
pub use context::CallContext;
pub use service::{MicroService, ServiceSpec};
pub use worker::{Postgres, StartError, Worker};

/// Every coursebus binary (gateway, workers, xtask, tests) links this crate, so this picks their
/// allocator: mimalloc, whose thread-local free lists beat glibc malloc's arena locking and
/// consolidation on the request path (measured in `cargo xtask bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run idempotent DDL (`CREATE ... IF NOT EXISTS`) for a table this crate owns in a worker's
/// database, serialised by an advisory lock so concurrent replicas do not race.
async fn install_schema(pool: &sqlx::PgPool, name: &str, ddl: &'static str) -> Result<(), BusError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(name).execute(&mut *tx).await?;
    sqlx::raw_sql(ddl).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A database failure as a reply: the cause is logged here (with the handler's span), the
/// client gets `internal` and nothing of the cause.
pub fn db(err: sqlx::Error) -> coursebus_contracts::ErrorBody {
    tracing::error!(error = %err, "database error");
    coursebus_contracts::ErrorBody::internal()
}

/// Failures of the plumbing itself (as opposed to [`coursebus_contracts::ErrorBody`] replies).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("could not connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("NATS micro service error: {0}")]
    Service(String),
    #[error("JetStream error: {0}")]
    JetStream(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("serialisation error: {0}")]
    Json(#[from] serde_json::Error),
}

pub mod runtime {
    //! What every binary does at its edge: logs, the TLS crypto provider, shutdown signals.

    use tokio_util::sync::CancellationToken;

    /// A setting from the environment; unset and empty are the same (so `VAR=` in a compose
    /// file or `.env` means "the default").
    pub fn env(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    /// Structured logs to stderr; `RUST_LOG` filters (default `info`), `CB_LOG_FORMAT=json`
    /// switches to one JSON object per line. Also installs the process-wide TLS provider (see
    /// [`install_crypto_provider`]).
    pub fn init_tracing() {
        install_crypto_provider();
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,async_nats=warn"));
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        if std::env::var("CB_LOG_FORMAT").is_ok_and(|f| f == "json") {
            builder.json().flatten_event(true).init();
        } else {
            builder.init();
        }
    }

    /// The dependency tree carries two rustls crypto providers (ring through async-nats,
    /// aws-lc-rs through reqwest), and rustls refuses to pick one itself: the first TLS
    /// connection (a `tls://` NATS URL, a MongoDB or OpenSearch over TLS) would panic. Pick ring
    /// once per process; a second call is a no-op.
    pub fn install_crypto_provider() {
        let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
    }

    /// A token cancelled on Ctrl-C or SIGTERM.
    pub fn shutdown_on_signal() -> CancellationToken {
        let token = CancellationToken::new();
        let trigger = token.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let term = std::future::pending::<()>();
            tokio::select! {
                _ = ctrl_c => {}
                _ = term => {}
            }
            tracing::info!("shutdown requested");
            trigger.cancel();
        });
        token
    }
}
