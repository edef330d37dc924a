//! `Idempotency-Key` support for requests that create something: the first response is stored in
//! the same transaction as the write, and a retry with the same key and the same request gets it
//! back instead of creating a second thing (or a 409 it did not cause).

use coursebus_contracts::{ErrorBody, headers};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::BusError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS cb_idempotency (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  BYTEA NOT NULL,
    response     JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS cb_idempotency_created ON cb_idempotency (created_at);
"#;

/// How long a key is remembered.
pub const RETENTION_HOURS: i32 = 24;

/// Create the table if it does not exist (idempotent; safe with concurrent replicas).
pub async fn install(pool: &PgPool) -> Result<(), BusError> {
    crate::install_schema(pool, "cb_idempotency_schema", SCHEMA).await
}

/// Forget keys older than [`RETENTION_HOURS`].
pub async fn purge(pool: &PgPool) -> Result<u64, BusError> {
    let done = sqlx::query("DELETE FROM cb_idempotency WHERE created_at < now() - make_interval(hours => $1)")
        .bind(RETENTION_HOURS)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Purge old keys every `every` until `shutdown` (a worker's housekeeping task).
pub async fn purge_until(pool: PgPool, every: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(err) = purge(&pool).await {
            tracing::warn!(error = %err, "old idempotency keys could not be purged");
        }
    }
}

/// One request's idempotency key, scoped to an endpoint (and caller, when there is one).
#[derive(Debug, Clone)]
pub struct Idempotency {
    scope: String,
    key: String,
    fingerprint: Vec<u8>,
}

use crate::db;

impl Idempotency {
    /// `fingerprint` identifies the request's meaning; leave secrets (passwords) out of it.
    pub fn new(scope: impl Into<String>, key: &str, fingerprint: &impl Serialize) -> Result<Self, ErrorBody> {
        let bytes = serde_json::to_vec(fingerprint).map_err(|_| ErrorBody::internal())?;
        Ok(Self { scope: scope.into(), key: key.to_owned(), fingerprint: Sha256::digest(bytes).to_vec() })
    }

    /// The stored response of an earlier request with this key, if any. The same key with a
    /// different request is a `conflict`. `executor` is the pool, or the write's own transaction
    /// when it looks again after taking a lock (a second connection from the pool there could
    /// wait for a pool its own request already drained).
    pub async fn replay<'e, T: DeserializeOwned>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
    ) -> Result<Option<T>, ErrorBody> {
        let row: Option<(Vec<u8>, serde_json::Value)> = sqlx::query_as(
            "SELECT fingerprint, response FROM cb_idempotency \
             WHERE scope = $1 AND key = $2 AND created_at > now() - make_interval(hours => $3)",
        )
        .bind(&self.scope)
        .bind(&self.key)
        .bind(RETENTION_HOURS)
        .fetch_optional(executor)
        .await
        .map_err(db)?;
        match row {
            None => Ok(None),
            Some((fingerprint, _)) if fingerprint != self.fingerprint => {
                Err(ErrorBody::conflict("this Idempotency-Key was already used with a different request")
                    .with_details(serde_json::json!({ "field": headers::IDEMPOTENCY_KEY })))
            }
            Some((_, response)) => serde_json::from_value(response).map(Some).map_err(|err| {
                tracing::error!(error = %err, "stored idempotent response does not decode");
                ErrorBody::internal()
            }),
        }
    }

    /// Store `response` in the caller's transaction (so it exists exactly when the write does).
    pub async fn record(&self, tx: &mut PgConnection, response: &impl Serialize) -> Result<(), ErrorBody> {
        let response = serde_json::to_value(response).map_err(|_| ErrorBody::internal())?;
        sqlx::query(
            "INSERT INTO cb_idempotency (scope, key, fingerprint, response) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, response = EXCLUDED.response, created_at = now()",
        )
        .bind(&self.scope)
        .bind(&self.key)
        .bind(&self.fingerprint)
        .bind(response)
        .execute(tx)
        .await
        .map_err(db)?;
        Ok(())
    }
}
