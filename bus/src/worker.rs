//! The start-up every PostgreSQL-backed worker shares: its pool, its migrations, the outbox and
//! idempotency tables, a NATS connection named after the service, and the JetStream streams it
//! owns (created idempotently).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

use crate::{BusError, idempotency, outbox, streams};

/// What a worker starts with.
#[derive(Debug, Clone)]
pub struct Started {
    pub pool: PgPool,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// How to start.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// The service name (the NATS connection's name).
    pub service: &'a str,
    pub nats_url: &'a str,
    pub database_url: &'a str,
    pub max_connections: u32,
    /// The streams this worker owns.
    pub streams: Vec<stream::Config>,
}

/// A connection that sat idle in the pool at least this long is pinged before it is handed out.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(30);

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

/// Connect to PostgreSQL ([`pool_options`]), run `migrations`, install the outbox and
/// idempotency tables, connect to NATS (retrying for 30 s) and ensure `spec.streams`.
pub async fn start_pg(spec: Spec<'_>, migrations: &Migrator) -> Result<Started, StartError> {
    let pool = pool_options(spec.max_connections).connect(spec.database_url).await?;
    migrations.run(&pool).await?;
    outbox::install(&pool).await?;
    idempotency::install(&pool).await?;
    let client = crate::connect(spec.nats_url, spec.service, Duration::from_secs(30)).await?;
    let js = jetstream::new(client.clone());
    for config in spec.streams {
        streams::ensure_stream(&js, config).await?;
    }
    Ok(Started { pool, client, js })
}
