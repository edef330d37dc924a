//! The envelope every domain event travels in.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// An authenticated user.
    User { id: Uuid },
    /// Someone not yet authenticated (registration).
    Anonymous,
    /// A service acting on its own (bootstrap, batch jobs).
    Service { name: String },
}

/// `{id, type, occurred_at, actor, data}`; `id` (UUID v7) is also the `Nats-Msg-Id`, so a
/// re-published event is deduplicated by JetStream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope<T> {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub actor: Actor,
    pub data: T,
}

/// An event payload type knows its subject and type name.
pub trait Event: Serialize {
    /// The subject it is published on (`cb.evt.<domain>.<entity>.<event>`).
    const SUBJECT: &'static str;
    /// The type name in the envelope (`identity.user.registered`).
    const TYPE: &'static str;

    /// Wrap in a fresh envelope with a UUID v7 id.
    fn envelope(self, actor: Actor) -> EventEnvelope<Self>
    where
        Self: Sized,
    {
        EventEnvelope {
            id: Uuid::now_v7(),
            kind: Self::TYPE.to_owned(),
            occurred_at: OffsetDateTime::now_utc(),
            actor,
            data: self,
        }
    }
}
