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

/// Connect to PostgreSQL (5 s to get a connection), run `migrations`, install the outbox and
/// idempotency tables, connect to NATS (retrying for 30 s) and ensure `spec.streams`.
pub async fn start_pg(spec: Spec<'_>, migrations: &Migrator) -> Result<Started, StartError> {
    let pool = PgPoolOptions::new()
        .max_connections(spec.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(spec.database_url)
        .await?;
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
