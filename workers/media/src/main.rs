//! `coursebus-worker-media`: configuration from the environment, logs, run until a signal;
//! `coursebus-worker-media ffmpeg-commands SOURCE OUT_DIR` prints a job's ffmpeg command lines.

use anyhow::Context as _;
use coursebus_bus::runtime::env;
use coursebus_worker_media::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("ffmpeg-commands") {
        return print_commands(&argv[2..]).await;
    }
    coursebus_bus::runtime::init_tracing();
    coursebus_bus::runtime::install_crypto_provider();
    let config = Config::from_env()?;
    run(config, coursebus_bus::runtime::shutdown_on_signal()).await.context("media worker failed")
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
