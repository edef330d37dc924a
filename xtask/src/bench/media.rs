//! The media part of `cargo xtask bench` (`--only media` runs it alone), on a stack of its own
//! (nats-server, PostgreSQL, the MongoDB-wire server, the in-process S3, release binaries):
//!
//! 1. A generated [`CLIP_SECONDS`] s 1280x720 clip transcoded `--runs` times by the raw ffmpeg
//!    command lines (exactly the ones a media job runs, printed by
//!    `coursebus-worker-media ffmpeg-commands`, then run by hand on a local file), and as often
//!    through the platform: create the asset, `PUT` its parts to presigned URLs, complete, until
//!    content publishes `asset.ready` (one media replica). The ratio of the medians is the
//!    pipeline's overhead. The media replicas log each job's phases (download, encode, upload)
//!    at `info` in `media-media-*.log`.
//! 2. Throughput: [`QUEUED`] clips uploaded and completed at once, until all are `ready`, with
//!    one and then two media replicas.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use coursebus_contracts::subjects::content;
use futures::StreamExt;

use super::{publish_course, send, start, wait_replicas};
use crate::process::{Server, start_logged, wait_http_ok};
use crate::s3::S3Server;
use crate::stack::{Durability, Mongo, Nats, Postgres, Tools, free_port};

/// Length of the benchmark clip.
pub const CLIP_SECONDS: u32 = 20;
/// Clips queued at once for the throughput runs.
pub const QUEUED: usize = 8;
/// Target: the pipeline costs at most this much more than raw ffmpeg.
const TARGET_RATIO: f64 = 1.05;

/// Run the measurements; returns the report section.
pub fn run(tools: &Tools, release: &Path, logs: &Path, runs: usize) -> Result<String> {
    let dir = tempfile::Builder::new().prefix("coursebus-bench-media-").tempdir()?;
    let nats = Nats::start(tools, &dir.path().join("nats"), 0, 0, &logs.join("media-nats.log"))?;
    let pg = Postgres::start(tools, &dir.path().join("pg"), 0, Durability::Durable, &logs.join("media-pg.log"))?;
    let mongo = Mongo::start(tools, &dir.path().join("mongo"), 0, &logs.join("media-mongo.log"))?;
    for db in ["identity", "enrollment", "content"] {
        pg.create_database(db)?;
    }
    let s3 = S3Server::start(&dir.path().join("s3"), 0, "bench", "bench-secret-2026")?;
    let s3_env = [
        ("CB_S3_ENDPOINT", s3.endpoint.as_str()),
        ("CB_S3_ACCESS_KEY", "bench"),
        ("CB_S3_SECRET_KEY", "bench-secret-2026"),
    ];
    let gateway = format!("127.0.0.1:{}", free_port()?);
    let bin = |name: &str| release.join(name);
    let mut procs: Vec<Server> = super::start_core(release, &nats, &pg, &mongo, "media", logs)?;
    let mut cmd = Command::new(bin("coursebus-worker-content"));
    cmd.env("CB_NATS_URL", nats.url()).env("CB_CONTENT_DATABASE_URL", pg.url("content")).envs(s3_env);
    procs.push(start(cmd, "media-content", logs)?);
    let media = |replica: usize| -> Result<Server> {
        let mut cmd = Command::new(bin("coursebus-worker-media"));
        cmd.env("CB_NATS_URL", nats.url()).env("CB_FFMPEG", &tools.ffmpeg).envs(s3_env);
        // A few lines per job: where its time goes.
        cmd.env("RUST_LOG", "warn,coursebus_worker_media=info");
        start_logged(cmd, &format!("media-media-{replica}"), logs)
    };
    procs.push(media(1)?);
    let mut cmd = Command::new(bin("coursebus-gateway"));
    cmd.env("CB_NATS_URL", nats.url()).env("CB_GATEWAY_LISTEN", &gateway).env("CB_GATEWAY_TRUST_FORWARDED_FOR", "true");
    procs.push(start(cmd, "media-gateway", logs)?);

    let clip = dir.path().join("clip.mp4");
    make_clip(&tools.ffmpeg, &clip)?;
    let bytes = std::fs::read(&clip)?;
    let raw = raw_ffmpeg(tools, release, &clip, dir.path(), runs)?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let base = format!("http://{gateway}");
        wait_http_ok(&format!("{base}/readyz"), &mut procs).await?;
        let nats = async_nats::connect(nats.url()).await?;
        wait_replicas(&nats, "media", 1).await?;
        let platform = Platform::setup(&base, nats.clone()).await?;
        let mut pipeline = Vec::new();
        for run in 1..=runs {
            let started = Instant::now();
            platform.transcode(&bytes, 1).await?;
            pipeline.push(started.elapsed());
            eprintln!("bench: media pipeline run {run}: {:.2} s", started.elapsed().as_secs_f64());
        }
        let one = platform.timed(&bytes, QUEUED).await?;
        procs.push(media(2)?);
        wait_replicas(&nats, "media", 2).await?;
        let two = platform.timed(&bytes, QUEUED).await?;
        Ok::<_, anyhow::Error>(report(bytes.len(), runs, &raw, &pipeline, one, two))
    });
    for mut p in procs.into_iter().rev() {
        p.stop(Duration::from_secs(5));
    }
    outcome
}

/// A 20 s 1280x720 30 fps test pattern with a tone, H.264/AAC, as a camera or screen recorder
/// would hand it over.
fn make_clip(ffmpeg: &Path, out: &Path) -> Result<()> {
    let status = Command::new(ffmpeg)
        .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &CLIP_SECONDS.to_string(), "-c:v", "libx264", "-preset", "fast", "-crf", "20"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(out)
        .status()?;
    ensure!(status.success(), "ffmpeg could not make the benchmark clip");
    Ok(())
}

/// Run the job's ffmpeg command lines by hand `runs` times; the wall time of each run.
fn raw_ffmpeg(tools: &Tools, release: &Path, clip: &Path, dir: &Path, runs: usize) -> Result<Vec<Duration>> {
    let out = dir.join("raw");
    let printed = Command::new(release.join("coursebus-worker-media"))
        .arg("ffmpeg-commands")
        .arg(clip)
        .arg(&out)
        .env("CB_FFMPEG", &tools.ffmpeg)
        .output()?;
    ensure!(printed.status.success(), "ffmpeg-commands failed: {}", String::from_utf8_lossy(&printed.stderr));
    let commands: Vec<Vec<String>> =
        String::from_utf8(printed.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    ensure!(commands.len() == 3, "expected the encode, poster and strip commands");
    let mut times = Vec::new();
    for run in 1..=runs {
        if out.exists() {
            std::fs::remove_dir_all(&out)?;
        }
        std::fs::create_dir_all(&out)?;
        let started = Instant::now();
        for command in &commands {
            let status = Command::new(&tools.ffmpeg).args(command).stdout(std::process::Stdio::null()).status()?;
            ensure!(status.success(), "raw ffmpeg failed: {command:?}");
        }
        times.push(started.elapsed());
        eprintln!("bench: raw ffmpeg run {run}: {:.2} s", started.elapsed().as_secs_f64());
    }
    Ok(times)
}

/// A teacher with a published course, talking to the gateway.
struct Platform {
    http: reqwest::Client,
    nats: async_nats::Client,
    base: String,
    teacher: String,
    course: String,
}

impl Platform {
    async fn setup(base: &str, nats: async_nats::Client) -> Result<Self> {
        let http = reqwest::Client::new();
        let teacher =
            super::instructor(&http, base, "media-teacher@coursebus.test", "Filming Teacher", "10.3.0").await?;
        let (course, _) = publish_course(&http, base, &teacher, 0).await?;
        Ok(Self { http, nats, base: base.to_owned(), teacher, course })
    }

    /// Upload `n` copies of the clip at once and wait until content announced every one
    /// `ready` (its `asset.ready` event); a `failed` one ends the run.
    async fn transcode(&self, bytes: &[u8], n: usize) -> Result<()> {
        let mut events = self.nats.subscribe(content::EVENT_SUBJECTS).await?;
        self.nats.flush().await?;
        let uploads = (0..n).map(|_| self.upload(bytes));
        let mut waiting: std::collections::HashSet<String> =
            futures::future::try_join_all(uploads).await?.into_iter().collect();
        while !waiting.is_empty() {
            let event = tokio::time::timeout(Duration::from_secs(600), events.next())
                .await
                .context("no asset became ready for 10 minutes")?
                .context("the event subscription ended")?;
            let event: Value = serde_json::from_slice(&event.payload)?;
            let id = event["data"]["asset_id"].as_str().unwrap_or_default().to_owned();
            ensure!(event["type"] != "content.asset.failed" || !waiting.contains(&id), "asset {id} failed: {event}");
            if event["type"] == "content.asset.ready" {
                waiting.remove(&id);
            }
        }
        Ok(())
    }

    async fn timed(&self, bytes: &[u8], n: usize) -> Result<Duration> {
        let started = Instant::now();
        self.transcode(bytes, n).await?;
        Ok(started.elapsed())
    }

    /// Create, send every part through its presigned URL, complete; the asset id.
    async fn upload(&self, bytes: &[u8]) -> Result<String> {
        let created = send(
            self.http
                .post(format!("{}/v1/courses/{}/assets", self.base, self.course))
                .bearer_auth(&self.teacher)
                .json(&json!({"kind": "video", "filename": "bench.mp4", "content_type": "video/mp4", "size_bytes": bytes.len()})),
            201,
        )
        .await?;
        let id = created["asset"]["id"].as_str().context("asset id")?.to_owned();
        let part_size = created["part_size"].as_u64().context("part size")? as usize;
        let count = created["part_count"].as_u64().context("part count")? as u32;
        let urls = send(
            self.http
                .post(format!("{}/v1/assets/{id}/upload/parts", self.base))
                .bearer_auth(&self.teacher)
                .json(&json!({"part_numbers": (1..=count).collect::<Vec<_>>()})),
            200,
        )
        .await?;
        for part in urls["parts"].as_array().context("parts")? {
            let n = part["part_number"].as_u64().context("part number")? as usize;
            let chunk = bytes[(n - 1) * part_size..(n * part_size).min(bytes.len())].to_vec();
            let put = self.http.put(part["url"].as_str().context("url")?).body(chunk).send().await?;
            ensure!(put.status().is_success(), "S3 refused part {n}: {}", put.status());
        }
        let done: Value = send(
            self.http.post(format!("{}/v1/assets/{id}/upload/complete", self.base)).bearer_auth(&self.teacher),
            200,
        )
        .await?;
        ensure!(done["status"] == "processing", "completed as {}", done["status"]);
        Ok(id)
    }
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn report(size: usize, runs: usize, raw: &[Duration], pipeline: &[Duration], one: Duration, two: Duration) -> String {
    let (raw, pipeline) = (median(raw), median(pipeline));
    let ratio = pipeline.as_secs_f64() / raw.as_secs_f64();
    let per_min = |d: Duration| QUEUED as f64 / d.as_secs_f64() * 60.0;
    let verdict = if ratio <= TARGET_RATIO { "met" } else { "NOT met" };
    format!(
        "\n#### Media (same run): a {CLIP_SECONDS} s 1280x720 H.264 clip ({:.1} MB) → HLS + DASH (720p, 360p), poster, preview strip\n\n\
         | measurement | result |\n|---|---|\n\
         | raw ffmpeg: the job's three command lines run by hand (median of {runs}) | {:.2} s |\n\
         | platform: create → parts to presigned URLs → complete → `ready`, 1 media replica (median of {runs}) | {:.2} s |\n\
         | overhead ratio (target ≤ {TARGET_RATIO}) | **{ratio:.3}** ({verdict}) |\n\
         | {QUEUED} clips queued at once, 1 media replica | {:.1} s ({:.1} clips/min) |\n\
         | {QUEUED} clips queued at once, 2 media replicas | {:.1} s ({:.1} clips/min, {:.2}×) |\n",
        size as f64 / 1e6,
        raw.as_secs_f64(),
        pipeline.as_secs_f64(),
        one.as_secs_f64(),
        per_min(one),
        two.as_secs_f64(),
        per_min(two),
        one.as_secs_f64() / two.as_secs_f64(),
    )
}
