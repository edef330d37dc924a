//! The media worker against real servers: nats-server with JetStream, an in-process S3
//! (s3s-fs, signatures checked) and ffmpeg.
//!
//! The servers are the ones `cargo xtask` installs (pinned) and starts: nats-server 2.15,
//! imageio-ffmpeg's ffmpeg, and xtask's in-process S3.

// Test code: a failed set-up step should stop the test where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use aws_sdk_s3::primitives::ByteStream;
use coursebus_bus::s3::S3Config;
use coursebus_contracts::content::{TranscodeCompleted, TranscodeFailed, TranscodeJob};
use coursebus_contracts::subjects::{content, dlq, media, srv};
use coursebus_contracts::{Actor, Event, EventEnvelope};
use coursebus_worker_media::{Config, run, stable_id};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BUCKET: &str = "coursebus-content";

/// The pinned servers `cargo xtask` installs into `.stack/` (installed on first use).
fn tools() -> xtask::stack::Tools {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    xtask::stack::Tools::ensure(&root).expect("the local stack installs")
}

/// A `seconds` long 1280x720 clip with sound.
async fn make_clip(ffmpeg: &Path, path: &Path, seconds: u32) {
    let status = tokio::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25"])
        .args(["-f", "lavfi", "-i", "sine", "-t", &seconds.to_string(), "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-c:a", "aac", "-f", "mp4"])
        .arg(path)
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

fn job(asset_id: Uuid, source_key: &str) -> Vec<u8> {
    let job = TranscodeJob {
        asset_id,
        course_id: Uuid::now_v7(),
        source_key: source_key.to_owned(),
        output_prefix: format!("assets/{asset_id}/stream/"),
    };
    serde_json::to_vec(&job.envelope(Actor::Service { name: "content".into() })).unwrap()
}

struct Stack {
    _dir: tempfile::TempDir,
    _nats: xtask::stack::Nats,
    _s3: xtask::s3::S3Server,
    url: String,
    s3: S3Config,
    js: jetstream::Context,
    client: async_nats::Client,
    ffmpeg: PathBuf,
    work: PathBuf,
}

impl Stack {
    async fn start(tools: xtask::stack::Tools) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn")),
            )
            .with_test_writer()
            .with_ansi(false)
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let nats =
            xtask::stack::Nats::start(&tools, &dir.path().join("js"), 0, 0, &dir.path().join("nats.log")).unwrap();
        let url = nats.url();
        let server = xtask::s3::S3Server::start(&dir.path().join("s3"), 0, "media-test", "media-test-secret").unwrap();
        let s3 = S3Config {
            endpoint: server.endpoint.clone(),
            public_endpoint: None,
            region: "us-east-1".into(),
            bucket: BUCKET.into(),
            access_key: "media-test".into(),
            secret_key: "media-test-secret".into(),
        };
        s3.ensure_bucket().await.unwrap();
        let client = async_nats::connect(&url).await.unwrap();
        let js = jetstream::new(client.clone());
        let work = dir.path().join("work");
        Self { _nats: nats, _s3: server, url, s3, js, client, ffmpeg: tools.ffmpeg, work, _dir: dir }
    }

    fn config(&self) -> Config {
        let mut config = Config::new(&self.url, self.s3.clone(), &self.ffmpeg);
        config.work_dir = Some(self.work.clone());
        config.preset = "ultrafast".into();
        config
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.s3.client().put_object().bucket(BUCKET).key(key).body(ByteStream::from(bytes)).send().await.unwrap();
    }

    /// Publish a job once the worker created its stream.
    async fn queue(&self, payload: Vec<u8>) {
        for _ in 0..200 {
            if self.js.get_stream(media::JOB_STREAM).await.is_ok() {
                self.js.publish(media::JOB_TRANSCODE, payload.into()).await.unwrap().await.unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the worker never created {}", media::JOB_STREAM);
    }

    /// Stored messages of `stream`.
    async fn count(&self, stream: &str) -> u64 {
        self.js.get_stream(stream).await.unwrap().info().await.unwrap().state.messages
    }

    /// Work folders left behind.
    fn leftovers(&self) -> usize {
        std::fs::read_dir(&self.work).map(|d| d.count()).unwrap_or(0)
    }
}

/// Answer content's progress endpoint, recording each report's percentage.
async fn fake_content_progress(client: &async_nats::Client) -> tokio::sync::mpsc::UnboundedReceiver<u8> {
    let subject = content::INTERNAL_PROGRESS.subject();
    let mut sub = client.subscribe(subject).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let replier = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let body: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
            let _ = tx.send(body["percent"].as_u64().unwrap() as u8);
            if let Some(reply) = msg.reply {
                replier.publish(reply, "{}".into()).await.unwrap();
            }
        }
    });
    client.flush().await.unwrap();
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcodes_fails_bad_inputs_and_parks_them() {
    let tools = tools();
    let stack = Stack::start(tools).await;
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&stack.ffmpeg, &clip, 3).await;
    let clip_bytes = std::fs::read(&clip).unwrap();
    let clip_sha = hex::encode(Sha256::digest(&clip_bytes));
    stack.put("uploads/good", clip_bytes).await;
    stack.put("uploads/text", b"just some notes, not a video\n".to_vec()).await;

    let mut events = stack.client.subscribe(media::EVENT_SUBJECTS).await.unwrap();
    let mut progress = fake_content_progress(&stack.client).await;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(run(stack.config(), shutdown.clone()));

    let (good, text, missing) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    stack.queue(job(good, "uploads/good")).await;
    stack.queue(job(text, "uploads/text")).await;
    stack.queue(job(missing, "uploads/nothing-here")).await;
    stack.queue(b"{\"not\": \"a job\"}".to_vec()).await;

    let mut completed = None;
    let mut failed = Vec::new();
    while completed.is_none() || failed.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(60), events.next()).await.unwrap().unwrap();
        let id = msg.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.to_string());
        if msg.subject.as_str() == TranscodeCompleted::SUBJECT {
            let event: EventEnvelope<TranscodeCompleted> = serde_json::from_slice(&msg.payload).unwrap();
            assert_eq!(id, Some(event.id.to_string()));
            completed = Some(event);
        } else {
            assert_eq!(msg.subject.as_str(), TranscodeFailed::SUBJECT);
            let event: EventEnvelope<TranscodeFailed> = serde_json::from_slice(&msg.payload).unwrap();
            assert_eq!(id, Some(event.id.to_string()));
            failed.push(event);
        }
    }

    let completed = completed.unwrap();
    assert_eq!(completed.id, stable_id("transcode.completed", good));
    assert_eq!(completed.kind, "media.transcode.completed");
    assert_eq!(completed.actor, Actor::Service { name: "media".into() });
    let done = completed.data;
    assert_eq!((done.asset_id, done.width, done.height, done.segment_seconds), (good, 1280, 720, 4));
    assert!((done.duration_seconds - 3.0).abs() < 0.1, "{}", done.duration_seconds);
    assert_eq!(done.source_sha256, clip_sha);
    let rungs: Vec<_> = done.renditions.iter().map(|r| (r.width, r.height, r.playlist.as_str())).collect();
    assert_eq!(rungs, [(1280, 720, "media_0.m3u8"), (640, 360, "media_1.m3u8")]);

    // Outputs under the prefix, with the types players expect.
    let s3 = stack.s3.client();
    let prefix = format!("assets/{good}/stream/");
    for (name, content_type) in [
        ("master.m3u8", "application/vnd.apple.mpegurl"),
        ("media_1.m3u8", "application/vnd.apple.mpegurl"),
        ("manifest.mpd", "application/dash+xml"),
        ("init-stream0.m4s", "video/iso.segment"),
        ("poster.jpg", "image/jpeg"),
        ("sprite.jpg", "image/jpeg"),
        ("thumbnails.vtt", "text/vtt"),
    ] {
        let head = s3.head_object().bucket(BUCKET).key(format!("{prefix}{name}")).send().await;
        let head = head.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(head.content_type(), Some(content_type), "{name}");
    }
    let master = s3.get_object().bucket(BUCKET).key(format!("{prefix}master.m3u8")).send().await.unwrap();
    let master = String::from_utf8(master.body.collect().await.unwrap().to_vec()).unwrap();
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2, "{master}");

    failed.sort_by_key(|f| f.data.asset_id == missing);
    assert_eq!(failed[0].id, stable_id("transcode.failed", text));
    assert_eq!(failed[0].data.asset_id, text);
    assert_eq!(failed[0].data.attempts, 1);
    assert!(failed[0].data.reason.starts_with("not a playable video: Invalid data found"), "{}", failed[0].data.reason);
    assert_eq!(failed[1].data.asset_id, missing);
    assert!(failed[1].data.reason.contains("missing from storage"), "{}", failed[1].data.reason);

    // Progress reached content; the worker answers pings; the queue is empty; the three
    // jobs given up on (text, missing, malformed) are in the DLQ; no work folder is left.
    let mut percents = Vec::new();
    while let Ok(p) = progress.try_recv() {
        percents.push(p);
    }
    assert!(!percents.is_empty() && percents.iter().all(|p| *p <= 99), "{percents:?}");
    let pong = stack.client.request(srv::ping("media"), "".into()).await.unwrap();
    assert!(String::from_utf8_lossy(&pong.payload).contains("\"name\":\"media\""));
    for _ in 0..100 {
        if stack.count(media::JOB_STREAM).await == 0 && stack.count(dlq::STREAM).await == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stack.count(media::JOB_STREAM).await, 0);
    assert_eq!(stack.count(dlq::STREAM).await, 3);
    assert_eq!(stack.leftovers(), 0);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), worker).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_replica_hands_its_job_back_at_once() {
    let tools = tools();
    let stack = Stack::start(tools).await;
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&stack.ffmpeg, &clip, 30).await;
    stack.put("uploads/long", std::fs::read(&clip).unwrap()).await;
    let mut events = stack.client.subscribe(media::EVENT_SUBJECTS).await.unwrap();
    let mut progress = fake_content_progress(&stack.client).await;

    let first = CancellationToken::new();
    let worker = tokio::spawn(run(stack.config(), first.clone()));
    let asset = Uuid::now_v7();
    stack.queue(job(asset, "uploads/long")).await;
    // Stop the replica as soon as the encode is under way.
    tokio::time::timeout(Duration::from_secs(60), progress.recv()).await.unwrap().unwrap();
    first.cancel();
    tokio::time::timeout(Duration::from_secs(10), worker).await.unwrap().unwrap().unwrap();
    assert_eq!(stack.leftovers(), 0, "the work folder is removed");
    // The job is back in the queue now, not after `ack_wait` (30 s).
    let consumer: jetstream::consumer::PullConsumer =
        stack.js.get_stream(media::JOB_STREAM).await.unwrap().get_consumer(media::TRANSCODE_CONSUMER).await.unwrap();
    let mut batch = consumer.batch().max_messages(1).expires(Duration::from_secs(3)).messages().await.unwrap();
    let again = batch.next().await.expect("the job was handed back").unwrap();
    assert_eq!(again.info().unwrap().delivered, 2);
    again.ack_with(jetstream::AckKind::Nak(None)).await.unwrap();
    drop(batch);

    // Another replica takes it at once and finishes it.
    let second = CancellationToken::new();
    let worker = tokio::spawn(run(stack.config(), second.clone()));
    let msg = tokio::time::timeout(Duration::from_secs(120), events.next()).await.unwrap().unwrap();
    assert_eq!(msg.subject.as_str(), TranscodeCompleted::SUBJECT);
    let event: EventEnvelope<TranscodeCompleted> = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(event.data.asset_id, asset);
    assert!((event.data.duration_seconds - 30.0).abs() < 0.1);
    assert_eq!(event.data.renditions.len(), 2);
    second.cancel();
    tokio::time::timeout(Duration::from_secs(10), worker).await.unwrap().unwrap().unwrap();
}
