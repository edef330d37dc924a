//! `coursebus-worker-media`: configuration from the environment, logs, run until a signal.

use std::time::Duration;

use anyhow::Context as _;
use coursebus_bus::runtime::env;
use coursebus_bus::s3::S3Config;
use coursebus_worker_media::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("ffmpeg-commands") {
        return print_commands(&argv[2..]).await;
    }
    coursebus_bus::runtime::init_tracing();
    coursebus_bus::runtime::install_crypto_provider();
    let nats_url = env("CB_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    // CB_S3_ENDPOINT, CB_S3_PUBLIC_ENDPOINT, CB_S3_REGION, CB_S3_BUCKET, CB_S3_ACCESS_KEY, CB_S3_SECRET_KEY.
    let s3 = S3Config::from_env().map_err(anyhow::Error::msg)?;
    let ffmpeg = env("CB_FFMPEG").unwrap_or_else(|| "ffmpeg".into());
    let mut config = Config::new(nats_url, s3, ffmpeg);
    config.work_dir = env("CB_MEDIA_WORK_DIR").map(Into::into);
    if let Some(secs) = env("CB_MEDIA_ACK_WAIT_SECS") {
        let secs: u64 = secs.parse().context("CB_MEDIA_ACK_WAIT_SECS must be a number of seconds")?;
        config.ack_wait = Duration::from_secs(secs.max(1));
    }
    if let Some(preset) = env("CB_MEDIA_PRESET") {
        config.preset = preset;
    }
    if let Some(replicas) = env("CB_STREAM_REPLICAS") {
        config.stream_replicas = replicas.parse().context("CB_STREAM_REPLICAS must be a number")?;
    }
    let shutdown = coursebus_bus::runtime::shutdown_on_signal();
    run(config, shutdown).await.context("media worker failed")
}

/// `coursebus-worker-media ffmpeg-commands SOURCE OUT_DIR`: print the ffmpeg argument lists a
/// job on SOURCE runs (one JSON array per line), without running them.
async fn print_commands(args: &[String]) -> anyhow::Result<()> {
    let [source, out_dir] = args else {
        anyhow::bail!("usage: coursebus-worker-media ffmpeg-commands SOURCE OUT_DIR");
    };
    let ffmpeg = coursebus_worker_media::ffmpeg::Ffmpeg::new(
        env("CB_FFMPEG").unwrap_or_else(|| "ffmpeg".into()),
        env("CB_MEDIA_PRESET").unwrap_or_else(|| "veryfast".into()),
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let commands = ffmpeg.commands(source.as_ref(), out_dir.as_ref(), &cancel).await?;
    for command in commands {
        let words: Vec<String> = command.iter().map(|w| w.to_string_lossy().into_owned()).collect();
        println!("{}", serde_json::to_string(&words)?);
    }
    Ok(())
}
