//! Ids derived from content: the same parts always give the same UUID, so a message produced
//! twice (a retried job, a redelivered event) carries one id and JetStream (`Nats-Msg-Id`) and
//! consumers see one message.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A UUID (version 8) from the SHA-256 of `parts`, in order.
pub fn stable_id(parts: &[&[u8]]) -> Uuid {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}
