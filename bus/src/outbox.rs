//! The transactional outbox: a worker writes its own rows and its events in one PostgreSQL
//! transaction ([`enqueue`]); the [`Relay`] publishes pending events to JetStream with
//! `Nats-Msg-Id` = event id; the transaction that deletes their rows commits only after
//! JetStream acknowledged them.
//!
//! After committing, the writer wakes its own replica's relay ([`Waker::wake`]), which reads
//! above the rows it published a second ago (`Floor`); every relay also sweeps the whole table
//! once a second, which picks up what a crashed replica committed. (No
//! `NOTIFY`: PostgreSQL serialises the commits of notifying transactions on a global lock,
//! which caps write throughput.)
//!
//! A relay that dies between publishing and deleting re-publishes the same ids on restart, and
//! JetStream drops them as duplicates (within [`crate::streams::DUPLICATE_WINDOW`]): an event
//! reaches its stream exactly once. For the same reason the relay's own transaction commits
//! without waiting for its WAL flush (`synchronous_commit = off`): a deletion lost to a crash
//! only means a duplicate JetStream drops. Several replicas relay concurrently (`FOR UPDATE SKIP
//! LOCKED`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use coursebus_contracts::{Event, EventEnvelope, headers};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio::time::Instant;
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
    ///
    /// A woken relay reads only above its [`Floor`]; once per `sweep` (and after a failure) it
    /// reads the whole table, which also finds rows another replica left behind.
    pub async fn run(self, shutdown: CancellationToken) {
        // Rows an earlier version kept after publishing (it marked them instead of deleting).
        if let Err(err) = sqlx::query("DELETE FROM cb_outbox WHERE published_at IS NOT NULL").execute(&self.pool).await
        {
            tracing::warn!(error = %err, "outbox cleanup failed");
        }
        let mut floor = Floor::default();
        let mut next_sweep = Instant::now();
        loop {
            let sweeping = Instant::now() >= next_sweep;
            let after = if sweeping { 0 } else { floor.get(Instant::now()) };
            // Drain everything pending above `after`, batch by batch.
            let mut failed = false;
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                match self.publish_batch(after).await {
                    Ok((n, highest)) => {
                        if let Some(seq) = highest {
                            floor.record(Instant::now(), seq);
                        }
                        if (n as i64) < self.batch {
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "outbox relay failed; will retry");
                        failed = true;
                        break;
                    }
                }
            }
            if sweeping || failed {
                next_sweep = Instant::now() + if failed { Duration::from_secs(1) } else { self.sweep };
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.0.notified() => {
                    // Let the commits of the next moment join this batch: under load one
                    // batch (three statements, one JetStream round of acks) carries many events.
                    tokio::time::sleep(Self::COALESCE).await;
                }
                _ = tokio::time::sleep_until(next_sweep) => {}
            }
        }
    }

    /// Publish up to one batch of the rows above `after`; how many it published and the highest
    /// `seq` among them.
    async fn publish_batch(&self, after: i64) -> Result<(usize, Option<i64>), BusError> {
        // Losing this transaction's commit in a crash only re-publishes duplicates (see above).
        // The batch is deleted as it is read (one statement); the deletion only takes effect if
        // every event was acknowledged, since a failure rolls the transaction back.
        let mut tx = self.pool.begin_with("BEGIN; SET LOCAL synchronous_commit = off").await?;
        let mut rows: Vec<Pending> = sqlx::query_as(
            "DELETE FROM cb_outbox WHERE seq IN (SELECT seq FROM cb_outbox \
             WHERE seq > $2 AND published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING seq, id, subject, payload, headers",
        )
        .bind(self.batch)
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok((0, None));
        }
        // RETURNING does not keep the subquery's order: publish in `seq` order.
        rows.sort_unstable_by_key(|r| r.seq);
        let published = rows.len();
        let highest = rows.last().map(|r| r.seq);
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
        Ok((published, highest))
    }
}

/// Where a woken relay starts reading: the highest `seq` it published at least [`Floor::LAG`]
/// ago. Published rows are deleted, but their index entries stay until the table is vacuumed
/// (autovacuum visits a database about once a minute), and a scan from the lowest `seq` walks
/// them all: under load, a hundred thousand dead entries per batch. Sequence numbers are taken
/// at insert, so a transaction can commit its row after rows with higher numbers were published;
/// it is found by the next scan as long as it committed within `LAG` of their publication, and
/// otherwise by the next full sweep.
#[derive(Debug, Default)]
struct Floor {
    /// (when, highest seq published then), oldest first; none older than `LAG` but the last.
    marks: VecDeque<(Instant, i64)>,
    floor: i64,
}

impl Floor {
    const LAG: Duration = Duration::from_secs(1);

    fn record(&mut self, at: Instant, seq: i64) {
        self.marks.push_back((at, seq));
    }

    fn get(&mut self, now: Instant) -> i64 {
        while let Some(&(at, seq)) = self.marks.front() {
            if now.duration_since(at) < Self::LAG {
                break;
            }
            self.floor = self.floor.max(seq);
            self.marks.pop_front();
        }
        self.floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_trails_publication_by_the_lag() {
        let start = Instant::now();
        let mut floor = Floor::default();
        assert_eq!(floor.get(start), 0, "nothing published: read everything");
        floor.record(start, 10);
        floor.record(start + Duration::from_millis(400), 25);
        assert_eq!(floor.get(start + Duration::from_millis(999)), 0, "seq 10 was published under a second ago");
        assert_eq!(floor.get(start + Floor::LAG), 10);
        assert_eq!(floor.get(start + Duration::from_millis(1399)), 10);
        assert_eq!(floor.get(start + Duration::from_millis(1400)), 25);
        // A batch of lower numbers (another replica's rows, a late commit) never lowers it.
        floor.record(start + Duration::from_millis(1500), 20);
        assert_eq!(floor.get(start + Duration::from_secs(3)), 25);
    }
}
