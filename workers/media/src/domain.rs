//! The rules of a transcode job, without I/O: the stable ids of its results, which failures are
//! worth another try, the reasons a failure carries, and the events it ends in (including the
//! failure of a job JetStream gave up on).

use coursebus_contracts::content::{Rendition, TranscodeCompleted, TranscodeFailed, TranscodeJob};
use coursebus_contracts::{Actor, Event, EventEnvelope};
use uuid::Uuid;

use crate::SERVICE;
use crate::ffmpeg::{self, FfmpegError};
use crate::store::StoreError;

/// A failure event quotes at most this many characters of its reason.
pub const REASON_CHARS: usize = 500;

/// How a job went wrong.
#[derive(Debug)]
pub enum JobError {
    /// Running it again cannot help; the reason is for the uploader.
    Permanent(String),
    /// Worth another try.
    Transient(String),
    /// The replica is stopping.
    Cancelled,
}

impl From<FfmpegError> for JobError {
    fn from(err: FfmpegError) -> Self {
        match err {
            FfmpegError::Cancelled => JobError::Cancelled,
            err if err.is_permanent() => JobError::Permanent(err.to_string()),
            err => JobError::Transient(err.to_string()),
        }
    }
}

impl From<StoreError> for JobError {
    fn from(err: StoreError) -> Self {
        if err.is_permanent() { JobError::Permanent(err.to_string()) } else { JobError::Transient(err.to_string()) }
    }
}

/// A stable event id: the same inputs give the same UUID (v8, from SHA-256), so a result
/// published twice is deduplicated by JetStream (`Nats-Msg-Id`) and by its consumers.
pub fn stable_id(kind: &str, asset_id: Uuid) -> Uuid {
    coursebus_bus::ids::stable_id(&[format!("{kind}:{asset_id}").as_bytes()])
}

/// Why a job that is not a transcode job is parked.
pub fn malformed_reason(err: &serde_json::Error) -> String {
    format!("malformed transcode job: {err}")
}

/// Why a job failed on its last delivery after `delivered` attempts, the last one with `error`.
pub fn gave_up_reason(delivered: i64, error: &str) -> String {
    format!("gave up after {delivered} attempts: {error}")
}

/// A failure's reason as the uploader (and the DLQ) sees it: at most [`REASON_CHARS`].
pub fn failure_reason(reason: &str) -> String {
    ffmpeg::shorten(reason, REASON_CHARS)
}

/// `event` in an envelope from the media service with the stable `id`.
fn envelope<E: Event>(event: E, id: Uuid) -> EventEnvelope<E> {
    let mut envelope = event.envelope(Actor::Service { name: SERVICE.to_owned() });
    envelope.id = id;
    envelope
}

/// The result of a finished job (one id per asset, however often it is finished).
pub fn completed_event(completed: TranscodeCompleted) -> EventEnvelope<TranscodeCompleted> {
    let id = stable_id("transcode.completed", completed.asset_id);
    envelope(completed, id)
}

/// The failure of `asset_id` with `reason` (already [`failure_reason`]d), after `delivered`
/// attempts (one id per asset, whichever way it failed).
pub fn failed_event(asset_id: Uuid, reason: String, delivered: i64) -> EventEnvelope<TranscodeFailed> {
    let event = TranscodeFailed { asset_id, reason, attempts: u64::try_from(delivered).unwrap_or(1) };
    envelope(event, stable_id("transcode.failed", asset_id))
}

/// A job JetStream gave up on without an answer from any replica (each one stopped or died
/// while transcoding it, `deliveries` times): its asset's failure, with the same stable id as
/// any other failure of the asset, so it is recorded once. `None` when the payload is not a job
/// (nothing to fail; the copy still goes to the DLQ).
pub fn given_up_event(payload: &[u8], deliveries: i64) -> Option<EventEnvelope<TranscodeFailed>> {
    let job = serde_json::from_slice::<EventEnvelope<TranscodeJob>>(payload).ok()?;
    let asset_id = job.data.asset_id;
    let event = TranscodeFailed {
        asset_id,
        reason: format!(
            "gave up after {deliveries} attempts: the media worker stopped every time while transcoding it"
        ),
        attempts: u64::try_from(deliveries).unwrap_or(0),
    };
    Some(envelope(event, stable_id("transcode.failed", asset_id)))
}

/// The contract's view of a ladder, top rung first.
pub fn renditions(ladder: &[ffmpeg::Rung]) -> Vec<Rendition> {
    ladder
        .iter()
        .enumerate()
        .map(|(i, rung)| Rendition {
            width: rung.width,
            height: rung.height,
            bandwidth: rung.bandwidth(),
            playlist: ffmpeg::media_playlist(i),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_ids_depend_on_kind_and_asset_only() {
        let asset = Uuid::now_v7();
        let completed = stable_id("transcode.completed", asset);
        assert_eq!(completed, stable_id("transcode.completed", asset));
        assert_ne!(completed, stable_id("transcode.failed", asset));
        assert_ne!(completed, stable_id("transcode.completed", Uuid::now_v7()));
        assert_eq!(completed.get_version_num(), 8);
        // SHA-256 of "transcode.completed:<asset>", first 16 bytes, as a UUID v8.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("transcode.completed:{asset}").as_bytes());
        assert_eq!(completed.as_bytes()[..6], digest[..6]);
    }

    #[test]
    fn renditions_follow_the_ladder() {
        let list = renditions(&ffmpeg::ladder(1920, 1080));
        let shown: Vec<(u32, u32, u64, &str)> =
            list.iter().map(|r| (r.width, r.height, r.bandwidth, r.playlist.as_str())).collect();
        assert_eq!(
            shown,
            [
                (1920, 1080, 5_500_000, "media_0.m3u8"),
                (1280, 720, 3_080_000, "media_1.m3u8"),
                (640, 360, 880_000, "media_2.m3u8")
            ]
        );
    }

    #[test]
    fn failures_are_sorted() {
        assert!(matches!(JobError::from(FfmpegError::NotPlayable("x".into())), JobError::Permanent(_)));
        assert!(matches!(JobError::from(FfmpegError::Stalled), JobError::Transient(_)));
        assert!(matches!(JobError::from(FfmpegError::Cancelled), JobError::Cancelled));
        assert!(matches!(JobError::from(StoreError::Missing("k".into())), JobError::Permanent(_)));
        assert!(matches!(JobError::from(StoreError::S3("503".into())), JobError::Transient(_)));
    }

    #[test]
    fn results_carry_the_stable_ids_and_short_reasons() {
        let asset = Uuid::now_v7();
        let failed = failed_event(asset, failure_reason(&"x".repeat(2000)), 3);
        assert_eq!(failed.id, stable_id("transcode.failed", asset));
        assert_eq!(failed.kind, "media.transcode.failed");
        assert_eq!(failed.actor, Actor::Service { name: "media".into() });
        assert_eq!((failed.data.attempts, failed.data.reason.chars().count()), (3, REASON_CHARS));
        assert_eq!(gave_up_reason(4, "storage: 503"), "gave up after 4 attempts: storage: 503");
    }

    #[test]
    fn a_given_up_job_fails_its_asset_once() {
        let asset = Uuid::now_v7();
        let job = TranscodeJob {
            asset_id: asset,
            course_id: Uuid::now_v7(),
            source_key: "uploads/x".into(),
            output_prefix: format!("assets/{asset}/stream/"),
        };
        let payload = serde_json::to_vec(&job.envelope(Actor::Service { name: "content".into() })).unwrap();
        let failed = given_up_event(&payload, 2).unwrap();
        assert_eq!(failed.id, stable_id("transcode.failed", asset));
        assert_eq!(failed.data.attempts, 2);
        assert!(failed.data.reason.starts_with("gave up after 2 attempts"), "{}", failed.data.reason);
        assert!(given_up_event(b"{\"not\": \"a job\"}", 2).is_none());
    }
}
