//! The transactional outbox: a worker writes its own rows and its events in one PostgreSQL
//! transaction ([`enqueue`]); the [`Relay`] publishes pending events to JetStream with
//! `Nats-Msg-Id` = event id; the transaction that deletes their rows commits only after
//! JetStream acknowledged them.
//!
//! After committing, the writer wakes its own replica's relay ([`Waker::wake`]); every relay
//! also sweeps once a second, which picks up what a crashed replica committed. (No
//! `NOTIFY`: PostgreSQL serialises the commits of notifying transactions on a global lock,
//! which caps write throughput.)
//!
//! A relay that dies between publishing and deleting re-publishes the same ids on restart, and
//! JetStream drops them as duplicates (within [`crate::streams::DUPLICATE_WINDOW`]): an event
//! reaches its stream exactly once. For the same reason the relay's own transaction commits
//! without waiting for its WAL flush (`synchronous_commit = off`): a deletion lost to a crash
//! only means a duplicate JetStream drops. Several replicas relay concurrently (`FOR UPDATE SKIP
//! LOCKED`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use coursebus_contracts::{Event, EventEnvelope, headers};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{BusError, CallContext};

/// The outbox table, owned by this module and created in each worker's own database.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS cb_outbox (
    seq          BIGSERIAL PRIMARY KEY,
    id           UUID NOT NULL UNIQUE,
    subject      TEXT NOT NULL,
    payload      BYTEA NOT NULL,
    headers      JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Always NULL: a published row is deleted (earlier versions marked it here).
    published_at TIMESTAMPTZ
);
-- Earlier versions kept published rows and found pending ones through this index; the primary
-- key serves the relay now, and every enqueued event paid for a second index entry.
DROP INDEX IF EXISTS cb_outbox_pending;
"#;

/// Create the outbox table if it does not exist (idempotent; safe with concurrent replicas).
pub async fn install(pool: &PgPool) -> Result<(), BusError> {
    crate::install_schema(pool, "cb_outbox_schema", SCHEMA).await
}

/// Record `event` in the caller's transaction; it is published after commit.
pub async fn enqueue<E: Event>(
    tx: &mut PgConnection,
    event: &EventEnvelope<E>,
    ctx: Option<&CallContext>,
) -> Result<(), BusError> {
    let payload = serde_json::to_vec(event)?;
    let mut hdrs = serde_json::Map::new();
    if let Some(ctx) = ctx {
        hdrs.insert(headers::REQUEST_ID.into(), ctx.request_id.clone().into());
        if let Some(tp) = &ctx.traceparent {
            hdrs.insert(headers::TRACEPARENT.into(), tp.clone().into());
        }
    }
    sqlx::query("INSERT INTO cb_outbox (id, subject, payload, headers) VALUES ($1, $2, $3, $4)")
        .bind(event.id)
        .bind(E::SUBJECT)
        .bind(payload)
        .bind(serde_json::Value::Object(hdrs))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Wakes a relay after a commit that enqueued events.
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Publishes pending outbox rows to JetStream.
#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    batch: i64,
    wake: Waker,
    /// The sweep for events nobody woke this relay for (another replica's, after a crash).
    sweep: Duration,
}

#[derive(sqlx::FromRow)]
struct Pending {
    seq: i64,
    id: Uuid,
    subject: String,
    payload: Vec<u8>,
    headers: serde_json::Value,
}

impl Relay {
    /// How long a woken relay waits for more commits before it reads its batch.
    pub const COALESCE: Duration = Duration::from_millis(3);

    pub fn new(pool: PgPool, js: jetstream::Context) -> Self {
        Self { pool, js, batch: 256, wake: Waker::default(), sweep: Duration::from_secs(1) }
    }

    /// What the worker's handlers call after a commit that enqueued events.
    pub fn waker(&self) -> Waker {
        self.wake.clone()
    }

    /// Relay until shutdown. Errors (NATS or PostgreSQL down) are logged and retried.
    pub async fn run(self, shutdown: CancellationToken) {
        // Rows an earlier version kept after publishing (it marked them instead of deleting).
        if let Err(err) = sqlx::query("DELETE FROM cb_outbox WHERE published_at IS NOT NULL").execute(&self.pool).await
        {
            tracing::warn!(error = %err, "outbox cleanup failed");
        }
        loop {
            // Drain everything pending, batch by batch.
            let mut failed = false;
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                match self.publish_batch().await {
                    Ok(n) if (n as i64) < self.batch => break,
                    Ok(_) => continue,
                    Err(err) => {
                        tracing::warn!(error = %err, "outbox relay failed; will retry");
                        failed = true;
                        break;
                    }
                }
            }
            let wait = if failed { Duration::from_secs(1) } else { self.sweep };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.0.notified() => {
                    // Let the commits of the next moment join this batch: under load one
                    // batch (four statements, one JetStream round of acks) carries many events.
                    tokio::time::sleep(Self::COALESCE).await;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Publish up to one batch; returns how many rows were published.
    pub async fn publish_batch(&self) -> Result<usize, BusError> {
        // Losing this transaction's commit in a crash only re-publishes duplicates (see above).
        // The batch is deleted as it is read (one statement); the deletion only takes effect if
        // every event was acknowledged, since a failure rolls the transaction back.
        let mut tx = self.pool.begin_with("BEGIN; SET LOCAL synchronous_commit = off").await?;
        let mut rows: Vec<Pending> = sqlx::query_as(
            "DELETE FROM cb_outbox WHERE seq IN (SELECT seq FROM cb_outbox \
             WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING seq, id, subject, payload, headers",
        )
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // RETURNING does not keep the subquery's order: publish in commit order.
        rows.sort_unstable_by_key(|r| r.seq);
        let published = rows.len();
        let mut acks: Vec<(Uuid, PublishAckFuture)> = Vec::with_capacity(published);
        for row in rows {
            let mut hdrs = HeaderMap::new();
            if let Some(map) = row.headers.as_object() {
                for (k, v) in map {
                    if let Some(v) = v.as_str() {
                        hdrs.insert(k.as_str(), v);
                    }
                }
            }
            let message =
                PublishMessage::build().payload(row.payload.into()).headers(hdrs).message_id(row.id.to_string());
            let ack =
                self.js.send_publish(row.subject, message).await.map_err(|e| BusError::JetStream(e.to_string()))?;
            acks.push((row.id, ack));
        }
        let mut duplicates = 0usize;
        for (id, ack) in acks {
            let ack = ack.await.map_err(|e| BusError::JetStream(format!("event {id}: {e}")))?;
            if ack.duplicate {
                duplicates += 1;
            }
        }
        tx.commit().await?;
        tracing::debug!(published, duplicates, "outbox batch relayed");
        Ok(published)
    }
}
