//! Everything the worker asks of ffmpeg, and the pure rules around it.
//!
//! The binary is a static ffmpeg (no ffprobe), so probing is `ffmpeg -hide_banner -i SRC` with its
//! stderr parsed ([`parse_probe`]). One encode writes the whole ladder as fMP4 segments with both
//! an MPEG-DASH manifest and HLS playlists ([`package_args`]); two small runs make the poster and
//! the preview strip, whose WebVTT index is written here ([`thumbnails_vtt`]).
//!
//! Every run is a child that dies with its future (`kill_on_drop`), is killed when the job is
//! cancelled, and is killed when it stops reporting progress for [`STALL_TIMEOUT`].
//!
//! The pure rules live in private submodules and are re-exported here: `probe` reads the probe,
//! `ladder` chooses the renditions, `command` builds the argument lists (and reads their
//! progress). This module runs the processes and turns how they end into [`FfmpegError`]s.

mod command;
mod ladder;
mod probe;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use coursebus_contracts::content::outputs;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use command::args;
pub use command::{
    SEGMENT_SECONDS, THUMB_HEIGHT, THUMB_WIDTH, THUMBS_PER_ROW, media_playlist, package_args, parse_progress, percent,
    poster_args, sprite_args, thumbnail_count, thumbnail_interval, thumbnails_vtt,
};
pub use ladder::{MAX_HEIGHT, Rung, ladder, video_kbps, width_for};
pub use probe::{Probe, parse_probe};

/// A run that writes no progress line for this long is stuck: it is killed.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Reasons quote at most this many characters of ffmpeg's own words.
const REASON_CHARS: usize = 200;
/// Lines of stderr kept from a run (the last ones).
const STDERR_TAIL: usize = 20;

/// Why a run failed. [`FfmpegError::is_permanent`] tells a bad input from a bad moment.
#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    /// The input is not something ffmpeg can play (the reason is meant for the uploader).
    #[error("not a playable video: {0}")]
    NotPlayable(String),
    /// ffmpeg read the input but could not convert it.
    #[error("ffmpeg failed: {0}")]
    Failed(String),
    /// The disk, the process table, a signal: worth another try, maybe on another replica.
    #[error("ffmpeg could not run: {0}")]
    Io(#[from] std::io::Error),
    #[error("ffmpeg was killed ({0})")]
    Killed(String),
    #[error("ffmpeg stalled: no progress for {} s", STALL_TIMEOUT.as_secs())]
    Stalled,
    #[error("cancelled")]
    Cancelled,
}

impl FfmpegError {
    /// True when running again on the same input cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, FfmpegError::NotPlayable(_) | FfmpegError::Failed(_))
    }
}

/// What a finished transcode produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcoded {
    pub probe: Probe,
    /// Seconds: the probed duration, or how far the encode got when the container did not say.
    pub duration: f64,
    /// Top rung first.
    pub ladder: Vec<Rung>,
}

// ---------------------------------------------------------------------------------------------
// Reasons

/// The last line of ffmpeg's stderr that says something, without its `[mux @ 0x..]` prefix or
/// the generic "Error opening input files:" lead, on one line and at most [`REASON_CHARS`].
pub fn last_meaningful_line<'a>(lines: impl DoubleEndedIterator<Item = &'a str>) -> Option<String> {
    const NOISE: [&str; 2] = ["At least one output file must be specified", "Conversion failed!"];
    lines.rev().map(clean_line).find(|line| !line.is_empty() && !NOISE.iter().any(|n| line.starts_with(n))).map(
        |line| {
            let line = ["Error opening input files: ", "Error opening input: "]
                .iter()
                .find_map(|lead| line.strip_prefix(lead))
                .unwrap_or(line.as_str())
                .trim();
            shorten(line, REASON_CHARS)
        },
    )
}

/// A stderr line without its `[component @ 0x...]` prefixes.
fn clean_line(line: &str) -> String {
    let mut rest = line.trim();
    while rest.starts_with('[') {
        match rest.find("] ") {
            Some(end) => rest = rest[end + 2..].trim_start(),
            None => break,
        }
    }
    rest.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned()
}

/// `text` cut to `max` characters (with an ellipsis when cut).
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

// ---------------------------------------------------------------------------------------------
// Running ffmpeg

/// How a run ended.
struct Finished {
    status: std::process::ExitStatus,
    stderr: VecDeque<String>,
}

impl Finished {
    fn reason(&self) -> String {
        last_meaningful_line(self.stderr.iter().map(String::as_str))
            .unwrap_or_else(|| format!("exit status {}", self.status.code().unwrap_or(-1)))
    }

    /// Ok on success; a failure's reason from stderr; a kill by a signal or a full disk is
    /// transient.
    fn check(self) -> Result<(), FfmpegError> {
        if self.status.success() {
            return Ok(());
        }
        let reason = self.reason();
        if self.status.code().is_none() {
            return Err(FfmpegError::Killed(self.status.to_string()));
        }
        if self.stderr.iter().any(|l| l.contains("No space left on device") || l.contains("Cannot allocate memory")) {
            return Err(FfmpegError::Io(std::io::Error::other(reason)));
        }
        Err(FfmpegError::Failed(reason))
    }
}

/// The ffmpeg binary and how it encodes.
#[derive(Debug, Clone)]
pub struct Ffmpeg {
    pub bin: PathBuf,
    /// The x264 preset (`veryfast`).
    pub preset: String,
}

impl Ffmpeg {
    pub fn new(bin: impl Into<PathBuf>, preset: impl Into<String>) -> Self {
        Self { bin: bin.into(), preset: preset.into() }
    }

    /// The first line of `ffmpeg -version`: proves the binary runs.
    pub async fn version(&self) -> Result<String, FfmpegError> {
        let output = Command::new(&self.bin)
            .arg("-version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?;
        let text = String::from_utf8_lossy(&output.stdout);
        match text.lines().next() {
            Some(line) if output.status.success() && line.starts_with("ffmpeg") => Ok(line.trim().to_owned()),
            _ => Err(FfmpegError::Io(std::io::Error::other(format!(
                "{} -version did not answer like ffmpeg ({})",
                self.bin.display(),
                output.status
            )))),
        }
    }

    /// Run ffmpeg with `args`, feeding each stdout line to `on_line`. Killed (and reaped) on
    /// cancellation or when stdout is silent for [`STALL_TIMEOUT`].
    async fn run(
        &self,
        args: Vec<OsString>,
        mut on_line: impl FnMut(&str),
        cancel: &CancellationToken,
    ) -> Result<Finished, FfmpegError> {
        let mut child = Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let read_stdout = async {
            let Some(stdout) = stdout else { return Ok(()) };
            let mut lines = BufReader::new(stdout).lines();
            loop {
                match tokio::time::timeout(STALL_TIMEOUT, lines.next_line()).await {
                    Err(_) => return Err(FfmpegError::Stalled),
                    Ok(Ok(Some(line))) => on_line(&line),
                    Ok(Ok(None)) => return Ok(()),
                    Ok(Err(err)) => return Err(FfmpegError::Io(err)),
                }
            }
        };
        let read_stderr = async {
            let mut tail = VecDeque::with_capacity(STDERR_TAIL);
            let Some(stderr) = stderr else { return tail };
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(shorten(&line, 1000));
            }
            tail
        };
        let outcome = tokio::select! {
            _ = cancel.cancelled() => Err(FfmpegError::Cancelled),
            (read, tail) = async { tokio::join!(read_stdout, read_stderr) } => read.map(|()| tail),
        };
        match outcome {
            Ok(stderr) => Ok(Finished { status: child.wait().await?, stderr }),
            Err(err) => {
                if let Err(kill) = child.kill().await {
                    tracing::warn!(error = %kill, "could not kill ffmpeg");
                }
                Err(err)
            }
        }
    }

    /// Probe `source` (format, duration, first video stream, audio).
    pub async fn probe(&self, source: &Path, cancel: &CancellationToken) -> Result<Probe, FfmpegError> {
        let mut a: Vec<OsString> = args(["-hide_banner", "-nostdin", "-i"]).collect();
        a.push(source.into());
        // Exit status 1 is normal here ("At least one output file must be specified"): the
        // verdict is in stderr. The probe needs all of it (stream lines come early), so read it
        // whole rather than the tail.
        let mut child = Command::new(&self.bin)
            .args(a)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stderr = String::new();
        let read = async {
            if let Some(pipe) = child.stderr.take() {
                use tokio::io::AsyncReadExt as _;
                // A probe prints a few kB; cap it so an odd file cannot make it grow unbounded.
                pipe.take(1 << 20).read_to_string(&mut stderr).await?;
            }
            child.wait().await
        };
        let status = tokio::select! {
            _ = cancel.cancelled() => None,
            status = tokio::time::timeout(STALL_TIMEOUT, read) => Some(status),
        };
        match status {
            Some(Ok(Ok(status))) => {
                if status.code().is_none() {
                    return Err(FfmpegError::Killed(status.to_string()));
                }
                let text = stderr.replace(&source.display().to_string(), "source");
                parse_probe(&text)
            }
            Some(Ok(Err(err))) => Err(FfmpegError::Io(err)),
            Some(Err(_)) => {
                let _ = child.kill().await;
                Err(FfmpegError::Stalled)
            }
            None => {
                let _ = child.kill().await;
                Err(FfmpegError::Cancelled)
            }
        }
    }

    /// The ffmpeg invocations of a job on `source`, in the order [`Ffmpeg::transcode`] runs
    /// them (encode, poster, preview strip), for running the same work by hand: the benchmark
    /// times them as its raw-ffmpeg baseline.
    pub async fn commands(
        &self,
        source: &Path,
        out_dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<Vec<Vec<OsString>>, FfmpegError> {
        let probe = self.probe(source, cancel).await?;
        let ladder = ladder(probe.width, probe.height);
        let duration = probe.duration.unwrap_or(0.0);
        let at = (duration / 3.0).min(10.0);
        Ok(vec![
            package_args(source, out_dir, &probe, &ladder, &self.preset),
            poster_args(source, out_dir, &probe, at),
            sprite_args(source, out_dir, &probe, duration, thumbnail_interval(duration)),
        ])
    }

    /// The whole job on local files: probe `source`, encode the ladder as DASH + HLS into
    /// `out_dir`, then the poster, the preview strip and its WebVTT track. `on_progress` gets
    /// the percentage of the encode (0 to 99) as it advances.
    pub async fn transcode(
        &self,
        source: &Path,
        out_dir: &Path,
        mut on_progress: impl FnMut(u8),
        cancel: &CancellationToken,
    ) -> Result<Transcoded, FfmpegError> {
        let probe = self.probe(source, cancel).await?;
        let ladder = ladder(probe.width, probe.height);
        tracing::info!(
            width = probe.width,
            height = probe.height,
            duration_s = probe.duration,
            audio = probe.audio,
            rungs = ladder.len(),
            "source probed"
        );
        tokio::fs::create_dir_all(out_dir).await?;

        let mut reached = Duration::ZERO;
        let total = probe.duration.unwrap_or(0.0);
        let package = package_args(source, out_dir, &probe, &ladder, &self.preset);
        self.run(
            package,
            |line| {
                if let Some(at) = parse_progress(line) {
                    reached = reached.max(at);
                    on_progress(percent(at, total));
                }
            },
            cancel,
        )
        .await?
        .check()?;
        let duration = probe.duration.unwrap_or(reached.as_secs_f64());
        if duration <= 0.0 {
            return Err(FfmpegError::NotPlayable("it has no frames".to_owned()));
        }

        // The poster a third in (at most 10 s); a seek past a short clip's last key frame can
        // give nothing, so fall back to the first frame.
        let at = (duration / 3.0).min(10.0);
        let poster = out_dir.join(outputs::POSTER);
        let first = self.run(poster_args(source, out_dir, &probe, at), |_| {}, cancel).await?;
        let missing = !tokio::fs::try_exists(&poster).await.unwrap_or(false);
        if at > 0.0 && (!first.status.success() || missing) {
            self.run(poster_args(source, out_dir, &probe, 0.0), |_| {}, cancel).await?.check()?;
        } else {
            first.check()?;
        }

        let interval = thumbnail_interval(duration);
        self.run(sprite_args(source, out_dir, &probe, duration, interval), |_| {}, cancel).await?.check()?;
        tokio::fs::write(out_dir.join(outputs::THUMBNAILS), thumbnails_vtt(duration, interval)).await?;

        for required in [outputs::HLS_MASTER, outputs::DASH_MANIFEST, outputs::POSTER, outputs::SPRITE] {
            if !tokio::fs::try_exists(out_dir.join(required)).await.unwrap_or(false) {
                return Err(FfmpegError::Failed(format!("ffmpeg wrote no {required}")));
            }
        }
        Ok(Transcoded { probe, duration, ladder })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_short_and_clean() {
        let long = format!("[vost#0:0 @ 0x1] {}", "x".repeat(500));
        let reason = last_meaningful_line([long.as_str(), "Conversion failed!", ""].into_iter()).unwrap();
        assert_eq!(reason.chars().count(), 200);
        assert!(reason.starts_with("xxx") && reason.ends_with('…'));
        assert_eq!(last_meaningful_line(["", "  "].into_iter()), None);
    }

    fn dims(l: &[Rung]) -> Vec<(u32, u32)> {
        l.iter().map(|r| (r.width, r.height)).collect()
    }

    /// Runs the real thing, but only where `CB_FFMPEG` names an ffmpeg binary (otherwise it
    /// returns at once and passes): a 2 s 720p clip with sound becomes a 720p + 360p ladder.
    #[tokio::test]
    async fn transcodes_a_real_clip_when_cb_ffmpeg_is_set() {
        let Some(bin) = std::env::var_os("CB_FFMPEG").filter(|v| !v.is_empty()) else {
            eprintln!("CB_FFMPEG is not set: skipping the real ffmpeg run");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        let made = Command::new(&bin)
            .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25"])
            .args(["-f", "lavfi", "-i", "sine", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-c:a", "aac", "-f", "mp4"])
            .arg(&source)
            .status()
            .await
            .unwrap();
        assert!(made.success());
        let ffmpeg = Ffmpeg::new(bin, "ultrafast");
        assert!(ffmpeg.version().await.unwrap().starts_with("ffmpeg version"));
        let out = dir.path().join("out");
        let mut seen = Vec::new();
        let done = ffmpeg.transcode(&source, &out, |p| seen.push(p), &CancellationToken::new()).await.unwrap();
        assert!((done.duration - 2.0).abs() < 0.1, "{}", done.duration);
        assert_eq!(dims(&done.ladder), [(1280, 720), (640, 360)]);
        assert!(done.probe.audio);
        assert!(seen.iter().all(|p| *p <= 99));
        let master = std::fs::read_to_string(out.join(outputs::HLS_MASTER)).unwrap();
        assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2, "{master}");
        assert!(master.contains("RESOLUTION=1280x720") && master.contains("RESOLUTION=640x360"), "{master}");
        assert!(master.contains(&media_playlist(0)) && master.contains(&media_playlist(1)));
        for name in [outputs::DASH_MANIFEST, outputs::POSTER, outputs::SPRITE, outputs::THUMBNAILS] {
            assert!(out.join(name).is_file(), "{name} missing");
        }
        let vtt = std::fs::read_to_string(out.join(outputs::THUMBNAILS)).unwrap();
        assert_eq!(vtt, thumbnails_vtt(done.duration, 1));

        // Not a video: a permanent failure with ffmpeg's words.
        let text = dir.path().join("notes");
        std::fs::write(&text, "hello, this is text\n").unwrap();
        let err =
            ffmpeg.transcode(&text, &dir.path().join("out2"), |_| {}, &CancellationToken::new()).await.unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert!(err.to_string().starts_with("not a playable video: "), "{err}");
        assert!(!err.to_string().contains(dir.path().to_str().unwrap()), "{err}");

        // Cancelled before it starts: nothing runs to the end.
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = ffmpeg.transcode(&source, &dir.path().join("out3"), |_| {}, &cancel).await.unwrap_err();
        assert!(matches!(err, FfmpegError::Cancelled), "{err}");
    }
}
