//! Everything the worker asks of ffmpeg, and the pure rules around it.
//!
//! The binary is a static ffmpeg (no ffprobe), so probing is `ffmpeg -hide_banner -i SRC` with its
//! stderr parsed ([`parse_probe`]). One encode writes the whole ladder as fMP4 segments with both
//! an MPEG-DASH manifest and HLS playlists ([`package_args`]); two small runs make the poster and
//! the preview strip, whose WebVTT index is written here ([`thumbnails_vtt`]).
//!
//! Every run is a child that dies with its future (`kill_on_drop`), is killed when the job is
//! cancelled, and is killed when it stops reporting progress for [`STALL_TIMEOUT`].

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use coursebus_contracts::content::outputs;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Target segment length, seconds (DASH and HLS share the segments).
pub const SEGMENT_SECONDS: u32 = 4;
/// A key frame every this many seconds, so every segment starts with one.
const KEYFRAME_SECONDS: u32 = 2;
/// The tallest rung of a ladder.
pub const MAX_HEIGHT: u32 = 1080;
/// The poster is at most this tall.
const POSTER_MAX_HEIGHT: u32 = 720;
/// One preview thumbnail.
pub const THUMB_WIDTH: u32 = 160;
pub const THUMB_HEIGHT: u32 = 90;
/// Thumbnails per row of the preview strip.
pub const THUMBS_PER_ROW: u32 = 10;
/// At most about this many thumbnails per video (the interval grows with the duration).
const MAX_THUMBS: f64 = 100.0;
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

/// What the probe learnt about a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Seconds; `None` when the container does not say (ffmpeg prints `N/A`).
    pub duration: Option<f64>,
    /// The frame as displayed: sample aspect ratio applied, rotation applied.
    pub width: u32,
    pub height: u32,
    /// Which video stream (`0:v:<n>`) is the picture (attached cover art is skipped).
    pub video_index: usize,
    pub audio: bool,
}

/// One rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    pub width: u32,
    pub height: u32,
    /// Target video bitrate, kbit/s.
    pub video_kbps: u32,
}

impl Rung {
    /// The peak rate the encoder may reach (`-maxrate`), kbit/s.
    pub fn maxrate_kbps(&self) -> u32 {
        self.video_kbps.saturating_mul(11).div_ceil(10)
    }

    /// The rate-control buffer (`-bufsize`), kbit.
    pub fn bufsize_kbps(&self) -> u32 {
        self.video_kbps.saturating_mul(2)
    }

    /// Peak video bitrate, bits per second (`Rendition::bandwidth`).
    pub fn bandwidth(&self) -> u64 {
        u64::from(self.maxrate_kbps()) * 1000
    }
}

/// The HLS media playlist of rung `index` (ffmpeg's dash muxer names them so).
pub fn media_playlist(index: usize) -> String {
    format!("media_{index}.m3u8")
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
// Pure rules

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

/// `hh:mm:ss.ff` as seconds.
fn parse_clock(raw: &str) -> Option<f64> {
    let mut parts = raw.trim().split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let seconds = h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds)
}

/// `1280x720` (decimal, no leading zero, so codec tags such as `0x31637661` never match).
fn parse_dimensions(token: &str) -> Option<(u32, u32)> {
    let (w, h) = token.split_once('x')?;
    let decimal = |s: &str| !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit());
    if !decimal(w) || !decimal(h) {
        return None;
    }
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// `SAR 16:15` anywhere in a stream line (bracketed or not).
fn parse_sar(line: &str) -> Option<(u32, u32)> {
    let rest = &line[line.find("SAR ")? + 4..];
    let token = rest.split(|c: char| c.is_whitespace() || c == ']' || c == ',').next()?;
    let (n, d) = token.split_once(':')?;
    let (n, d) = (n.parse::<u32>().ok()?, d.parse::<u32>().ok()?);
    (n > 0 && d > 0).then_some((n, d))
}

/// `Display Matrix: rotation of -90.00 degrees` (older builds: `displaymatrix: rotation of ...`).
fn parse_rotation(line: &str) -> Option<f64> {
    let rest = &line[line.find("rotation of ")? + "rotation of ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Read what `ffmpeg -hide_banner -i SRC` printed on stderr.
pub fn parse_probe(stderr: &str) -> Result<Probe, FfmpegError> {
    let not_playable = || {
        let reason = last_meaningful_line(stderr.lines()).unwrap_or_else(|| "ffmpeg could not read it".to_owned());
        FfmpegError::NotPlayable(reason)
    };
    if !stderr.lines().any(|l| l.trim_start().starts_with("Input #")) {
        return Err(not_playable());
    }
    let mut duration = None;
    let mut audio = false;
    /// The chosen stream: its ordinal among video streams, coded size, sample aspect ratio.
    struct Picture {
        index: usize,
        width: u32,
        height: u32,
        sar: Option<(u32, u32)>,
    }
    let mut video: Option<Picture> = None;
    let mut rotation = None;
    let mut videos_seen = 0usize;
    // Side data lines follow their stream line; track whose they are.
    let mut in_chosen_video = false;
    for line in stderr.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("Duration:") {
            duration = parse_clock(rest.split(',').next().unwrap_or_default());
            continue;
        }
        if trimmed.starts_with("Stream #") {
            in_chosen_video = false;
            if trimmed.contains(": Audio:") {
                audio = true;
            } else if let Some(at) = trimmed.find(": Video:") {
                let index = videos_seen;
                videos_seen += 1;
                if video.is_some() || trimmed.contains("(attached pic)") {
                    continue;
                }
                let description = &trimmed[at + ": Video:".len()..];
                let dims = description
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .map(|t| t.trim_matches(|c: char| matches!(c, '(' | ')' | '[' | ']')))
                    .find_map(parse_dimensions);
                if let Some((w, h)) = dims {
                    video = Some(Picture { index, width: w, height: h, sar: parse_sar(description) });
                    in_chosen_video = true;
                }
            }
            continue;
        }
        if in_chosen_video && rotation.is_none() {
            rotation = parse_rotation(trimmed);
        }
    }
    let Some(Picture { index: video_index, width, height, sar }) = video else {
        return Err(FfmpegError::NotPlayable("it has no video stream".to_owned()));
    };
    // The frame as shown: stretch by the sample aspect ratio, then turn it upright (ffmpeg
    // rotates while decoding, before the scalers see it).
    let display_width = match sar {
        Some((n, d)) if n != d => even((f64::from(width) * f64::from(n) / f64::from(d)).round() as u32),
        _ => width,
    };
    let quarter_turns = rotation.map(|r: f64| (r / 90.0).round() as i64).unwrap_or(0);
    let (width, height) =
        if quarter_turns.rem_euclid(2) == 1 { (height, display_width) } else { (display_width, height) };
    let duration = duration.filter(|d| *d > 0.0);
    Ok(Probe { duration, width, height, video_index, audio })
}

/// `n` rounded down to an even number, at least 2.
fn even(n: u32) -> u32 {
    (n & !1).max(2)
}

/// The even width that keeps a `source_w`×`source_h` frame's aspect ratio at `height`.
pub fn width_for(source_w: u32, source_h: u32, height: u32) -> u32 {
    if source_h == 0 {
        return even(height);
    }
    let exact = f64::from(source_w) * f64::from(height) / f64::from(source_h);
    ((exact / 2.0).round() as u32 * 2).max(2)
}

/// The target video bitrate of a `width`×`height` rung, kbit/s: the usual rates for 1080, 720
/// and 360 lines, otherwise in proportion to the pixels of 720p, never below 300.
pub fn video_kbps(width: u32, height: u32) -> u32 {
    match height {
        1080 => 5000,
        720 => 2800,
        360 => 800,
        _ => {
            let pixels = f64::from(width) * f64::from(height);
            let kbps = 2800.0 * pixels / (1280.0 * 720.0);
            ((kbps / 10.0).round() as u32 * 10).max(300)
        }
    }
}

/// The ladder for a source shown at `width`×`height`: the top rung at min(1080, height) lines,
/// then 720 and 360 lines when below it. Heights and widths are even.
pub fn ladder(width: u32, height: u32) -> Vec<Rung> {
    let top = even(height.min(MAX_HEIGHT));
    let mut heights = vec![top];
    heights.extend([720, 360].into_iter().filter(|h| *h < top));
    heights
        .into_iter()
        .map(|h| {
            let w = width_for(width, height, h);
            Rung { width: w, height: h, video_kbps: video_kbps(w, h) }
        })
        .collect()
}

/// How far a run got, from one `-progress` line (`out_time_us=` or `out_time_ms=`, both in
/// microseconds); `None` for other lines, `N/A` and the negative values of the first report.
pub fn parse_progress(line: &str) -> Option<Duration> {
    let (key, value) = line.trim().split_once('=')?;
    if key != "out_time_us" && key != "out_time_ms" {
        return None;
    }
    let micros = value.trim().parse::<i64>().ok()?;
    u64::try_from(micros).ok().map(Duration::from_micros)
}

/// `done` of `total` as a percentage for the asset's progress bar; 99 at most (100 is "ready").
pub fn percent(done: Duration, total: f64) -> u8 {
    if total <= 0.0 {
        return 0;
    }
    (done.as_secs_f64() / total * 100.0).floor().clamp(0.0, 99.0) as u8
}

/// Seconds between preview thumbnails: one per second for short clips, about 100 in all.
pub fn thumbnail_interval(duration: f64) -> u32 {
    ((duration / MAX_THUMBS).ceil() as u32).max(1)
}

/// How many thumbnails a clip of `duration` seconds gets at `interval`.
pub fn thumbnail_count(duration: f64, interval: u32) -> u32 {
    ((duration / f64::from(interval)).ceil() as u32).max(1)
}

/// `hh:mm:ss.mmm`.
fn vtt_time(seconds: f64) -> String {
    let millis = (seconds.max(0.0) * 1000.0).round() as u64;
    format!("{:02}:{:02}:{:02}.{:03}", millis / 3_600_000, millis / 60_000 % 60, millis / 1000 % 60, millis % 1000)
}

/// The WebVTT track of preview thumbnails: one cue per `interval` seconds, pointing at its tile
/// of the sprite (`sprite.jpg#xywh=x,y,160,90`, [`THUMBS_PER_ROW`] tiles per row).
pub fn thumbnails_vtt(duration: f64, interval: u32) -> String {
    let mut vtt = String::from("WEBVTT\n");
    for i in 0..thumbnail_count(duration, interval) {
        let start = f64::from(i * interval);
        let end = f64::from((i + 1) * interval).min(duration.max(start));
        let (x, y) = ((i % THUMBS_PER_ROW) * THUMB_WIDTH, (i / THUMBS_PER_ROW) * THUMB_HEIGHT);
        vtt.push_str(&format!(
            "\n{} --> {}\n{}#xywh={x},{y},{THUMB_WIDTH},{THUMB_HEIGHT}\n",
            vtt_time(start),
            vtt_time(end),
            outputs::SPRITE
        ));
    }
    vtt
}

fn args<const N: usize>(list: [&str; N]) -> impl Iterator<Item = OsString> {
    list.into_iter().map(OsString::from)
}

/// The arguments of the one encode that writes the whole ladder as DASH and HLS into `out_dir`.
pub fn package_args(source: &Path, out_dir: &Path, probe: &Probe, ladder: &[Rung], preset: &str) -> Vec<OsString> {
    let mut a: Vec<OsString> = args(["-hide_banner", "-nostats", "-v", "error", "-y", "-i"]).collect();
    a.push(source.into());
    let labels: String = (0..ladder.len()).map(|i| format!("[s{i}]")).collect();
    let mut graph = format!("[0:v:{}]split={}{labels}", probe.video_index, ladder.len());
    for (i, rung) in ladder.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]scale={}:{},setsar=1[v{i}]", rung.width, rung.height));
    }
    a.extend(args(["-filter_complex"]));
    a.push(graph.into());
    for i in 0..ladder.len() {
        a.extend(args(["-map"]));
        a.push(format!("[v{i}]").into());
    }
    if probe.audio {
        a.extend(args(["-map", "0:a:0?"]));
    }
    a.extend(args(["-c:v", "libx264", "-preset", preset, "-profile:v", "main", "-pix_fmt", "yuv420p"]));
    a.extend(args(["-force_key_frames"]));
    a.push(format!("expr:gte(t,n_forced*{KEYFRAME_SECONDS})").into());
    a.extend(args(["-sc_threshold", "0"]));
    for (i, rung) in ladder.iter().enumerate() {
        for (flag, kbps) in [("b", rung.video_kbps), ("maxrate", rung.maxrate_kbps()), ("bufsize", rung.bufsize_kbps())]
        {
            a.push(format!("-{flag}:v:{i}").into());
            a.push(format!("{kbps}k").into());
        }
    }
    if probe.audio {
        a.extend(args(["-c:a", "aac", "-b:a", "128k", "-ac", "2"]));
    }
    let sets = if probe.audio { "id=0,streams=v id=1,streams=a" } else { "id=0,streams=v" };
    a.extend(args(["-f", "dash", "-seg_duration"]));
    a.push(SEGMENT_SECONDS.to_string().into());
    a.extend(args(["-use_template", "1", "-use_timeline", "0", "-hls_playlist", "1", "-adaptation_sets", sets]));
    a.extend(args(["-progress", "pipe:1"]));
    a.push(out_dir.join(outputs::DASH_MANIFEST).into());
    a
}

/// The arguments of the poster: one frame at `at` seconds, at most 720 lines high.
pub fn poster_args(source: &Path, out_dir: &Path, probe: &Probe, at: f64) -> Vec<OsString> {
    let height = even(probe.height.min(POSTER_MAX_HEIGHT));
    let width = width_for(probe.width, probe.height, height);
    let mut a: Vec<OsString> = args(["-hide_banner", "-nostats", "-v", "error", "-y"]).collect();
    if at > 0.0 {
        a.extend(args(["-ss"]));
        a.push(format!("{at:.3}").into());
    }
    a.extend(args(["-i"]));
    a.push(source.into());
    a.extend(args(["-map"]));
    a.push(format!("0:v:{}", probe.video_index).into());
    a.extend(args(["-an", "-sn", "-vf"]));
    a.push(format!("scale={width}:{height},setsar=1").into());
    a.extend(args(["-frames:v", "1", "-q:v", "3", "-update", "1", "-progress", "pipe:1"]));
    a.push(out_dir.join(outputs::POSTER).into());
    a
}

/// The arguments of the preview strip: a frame every `interval` seconds, 160x90 each
/// (letter-boxed), [`THUMBS_PER_ROW`] per row, one image.
pub fn sprite_args(source: &Path, out_dir: &Path, probe: &Probe, duration: f64, interval: u32) -> Vec<OsString> {
    let rows = thumbnail_count(duration, interval).div_ceil(THUMBS_PER_ROW).max(1);
    let mut a: Vec<OsString> = args(["-hide_banner", "-nostats", "-v", "error", "-y", "-i"]).collect();
    a.push(source.into());
    a.extend(args(["-map"]));
    a.push(format!("0:v:{}", probe.video_index).into());
    a.extend(args(["-an", "-sn", "-vf"]));
    a.push(
        format!(
            "fps=1/{interval},scale={THUMB_WIDTH}:{THUMB_HEIGHT}:force_original_aspect_ratio=decrease,\
             pad={THUMB_WIDTH}:{THUMB_HEIGHT}:(ow-iw)/2:(oh-ih)/2,setsar=1,tile={THUMBS_PER_ROW}x{rows}"
        )
        .into(),
    );
    a.extend(args(["-frames:v", "1", "-q:v", "5", "-update", "1", "-progress", "pipe:1"]));
    a.push(out_dir.join(outputs::SPRITE).into());
    a
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

    const WITH_AUDIO: &str = "\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from '/tmp/x/source':
  Metadata:
    major_brand     : isom
    minor_version   : 512
    compatible_brands: isomiso2avc1mp41
    encoder         : Lavf63.1.102
  Duration: 00:00:04.00, start: 0.000000, bitrate: 6578 kb/s
  Stream #0:0[0x1](und): Video: h264 (Constrained Baseline) (avc1 / 0x31637661), yuv420p(progressive), 1280x720 [SAR 1:1 DAR 16:9], 6501 kb/s, 25 fps, 25 tbr, 12800 tbn (default)
    Metadata:
      handler_name    : VideoHandler
      encoder         : Lavc63.1.102 libx264
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 69 kb/s (default)
    Metadata:
      handler_name    : SoundHandler
At least one output file must be specified
";

    const WITHOUT_AUDIO: &str = "\
Input #0, matroska,webm, from 'source':
  Metadata:
    ENCODER         : Lavf60.3.100
  Duration: 01:02:03.50, start: 0.000000, bitrate: 1744 kb/s
  Stream #0:0: Video: vp9 (Profile 0), yuv420p(tv, progressive), 640x360, SAR 1:1 DAR 16:9, 25 fps, 25 tbr, 1k tbn (default)
At least one output file must be specified
";

    const NOT_A_VIDEO: &str = "\
[in#0 @ 0x5584c86b9cc0] Error opening input: Invalid data found when processing input
Error opening input file /tmp/.tmpAbc/source.
Error opening input files: Invalid data found when processing input
";

    const ROTATED_ANAMORPHIC_COVER: &str = "\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'source':
  Duration: 00:00:10.00, start: 0.000000, bitrate: 6578 kb/s
  Stream #0:0[0x1](und): Video: mjpeg (Baseline), yuvj420p(pc), 600x600 [SAR 1:1 DAR 1:1], 90k tbr (attached pic)
  Stream #0:1[0x2](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 1920x1080 [SAR 1:1 DAR 16:9], 30 fps
    Side data:
      Display Matrix: rotation of -90.00 degrees
  Stream #0:2[0x3](und): Video: mpeg2video (Main), yuv420p(tv), 720x576 [SAR 16:15 DAR 4:3], 25 fps
";

    #[test]
    fn probe_with_audio() {
        let probe = parse_probe(WITH_AUDIO).unwrap();
        assert_eq!(probe, Probe { duration: Some(4.0), width: 1280, height: 720, video_index: 0, audio: true });
    }

    #[test]
    fn probe_without_audio() {
        let probe = parse_probe(WITHOUT_AUDIO).unwrap();
        assert_eq!(probe.duration, Some(3723.5));
        assert_eq!((probe.width, probe.height, probe.audio), (640, 360, false));
    }

    #[test]
    fn probe_of_a_text_file_says_why() {
        let err = parse_probe(NOT_A_VIDEO).unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.to_string(), "not a playable video: Invalid data found when processing input");
    }

    #[test]
    fn probe_without_video_stream() {
        let audio_only = "Input #0, mp3, from 'source':\n  Duration: 00:03:00.00, start: 0.0, bitrate: 128 kb/s\n  \
                          Stream #0:0: Audio: mp3 (mp3float), 44100 Hz, stereo, fltp, 128 kb/s\n";
        let err = parse_probe(audio_only).unwrap_err();
        assert_eq!(err.to_string(), "not a playable video: it has no video stream");
    }

    #[test]
    fn probe_skips_cover_art_and_turns_rotated_video_upright() {
        let probe = parse_probe(ROTATED_ANAMORPHIC_COVER).unwrap();
        assert_eq!((probe.video_index, probe.width, probe.height, probe.audio), (1, 1080, 1920, false));
        let anamorphic = ROTATED_ANAMORPHIC_COVER.replace("(attached pic)", "").replace("1920x1080", "x");
        // With the first two streams unusable as dimensions, the PAL one is shown at 768x576.
        let probe = parse_probe(&anamorphic.replace("600x600", "bad")).unwrap();
        assert_eq!((probe.video_index, probe.width, probe.height), (2, 768, 576));
    }

    #[test]
    fn duration_not_available() {
        let probe = parse_probe(&WITH_AUDIO.replace("00:00:04.00", "N/A")).unwrap();
        assert_eq!(probe.duration, None);
    }

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

    #[test]
    fn ladders_of_common_sources() {
        assert_eq!(dims(&ladder(1920, 1080)), [(1920, 1080), (1280, 720), (640, 360)]);
        assert_eq!(dims(&ladder(3840, 2160)), [(1920, 1080), (1280, 720), (640, 360)]);
        assert_eq!(dims(&ladder(1280, 720)), [(1280, 720), (640, 360)]);
        assert_eq!(dims(&ladder(854, 480)), [(854, 480), (640, 360)]);
        assert_eq!(dims(&ladder(426, 240)), [(426, 240)]);
        assert_eq!(dims(&ladder(640, 360)), [(640, 360)]);
        let kbps: Vec<u32> = ladder(1920, 1080).iter().map(|r| r.video_kbps).collect();
        assert_eq!(kbps, [5000, 2800, 800]);
        let top = ladder(1920, 1080)[0];
        assert_eq!((top.maxrate_kbps(), top.bufsize_kbps(), top.bandwidth()), (5500, 10000, 5_500_000));
        // Other heights: in proportion to 720p's pixels, never below 300k.
        assert_eq!(ladder(854, 480)[0].video_kbps, 1250);
        assert_eq!(ladder(426, 240)[0].video_kbps, 310);
        assert_eq!(ladder(320, 180)[0].video_kbps, 300);
    }

    #[test]
    fn ladders_of_odd_shapes() {
        // 4:3, portrait, odd sizes, cinema scope, a tiny clip.
        assert_eq!(dims(&ladder(640, 480)), [(640, 480), (480, 360)]);
        assert_eq!(dims(&ladder(1080, 1920)), [(608, 1080), (406, 720), (202, 360)]);
        assert_eq!(dims(&ladder(1279, 721)), [(1278, 720), (638, 360)]);
        assert_eq!(dims(&ladder(1998, 1080)), [(1998, 1080), (1332, 720), (666, 360)]);
        assert_eq!(dims(&ladder(2048, 858)), [(2048, 858), (1718, 720), (860, 360)]);
        assert_eq!(dims(&ladder(175, 143)), [(174, 142)]);
        for rung in [ladder(1279, 721), ladder(333, 999), ladder(3, 3)].concat() {
            assert!(rung.width % 2 == 0 && rung.height % 2 == 0 && rung.width >= 2 && rung.height >= 2, "{rung:?}");
        }
    }

    #[test]
    fn progress_lines() {
        assert_eq!(parse_progress("out_time_us=4000000"), Some(Duration::from_secs(4)));
        assert_eq!(parse_progress("out_time_ms=1500000"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_progress("out_time_us=N/A"), None);
        assert_eq!(parse_progress("out_time_us=-9223372036854775807"), None);
        assert_eq!(parse_progress("out_time=00:00:04.000000"), None);
        assert_eq!(parse_progress("progress=continue"), None);
        assert_eq!(percent(Duration::from_secs(1), 4.0), 25);
        assert_eq!(percent(Duration::from_secs(5), 4.0), 99);
        assert_eq!(percent(Duration::from_secs(5), 0.0), 0);
    }

    #[test]
    fn thumbnails_of_a_seven_second_clip() {
        assert_eq!(thumbnail_interval(7.0), 1);
        assert_eq!(thumbnail_interval(1000.0), 10);
        assert_eq!(thumbnail_interval(1001.0), 11);
        let vtt = thumbnails_vtt(7.0, 1);
        let mut expected = String::from("WEBVTT\n");
        for i in 0..7 {
            expected.push_str(&format!(
                "\n00:00:0{i}.000 --> 00:00:0{}.000\nsprite.jpg#xywh={},0,160,90\n",
                i + 1,
                i * 160
            ));
        }
        assert_eq!(vtt, expected);
        // A second row starts after ten tiles; the last cue ends with the clip.
        let vtt = thumbnails_vtt(10.5, 1);
        assert!(vtt.contains("00:00:10.000 --> 00:00:10.500\nsprite.jpg#xywh=0,90,160,90\n"), "{vtt}");
        assert_eq!(vtt_time(3725.25), "01:02:05.250");
    }

    #[test]
    fn package_command_maps_every_rung() {
        let probe = Probe { duration: Some(4.0), width: 1280, height: 720, video_index: 0, audio: false };
        let args: Vec<String> = package_args(Path::new("/s"), Path::new("/o"), &probe, &ladder(1280, 720), "veryfast")
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        assert!(line.contains("[0:v:0]split=2[s0][s1];[s0]scale=1280:720,setsar=1[v0];[s1]scale=640:360,setsar=1[v1]"));
        assert!(line.contains("-map [v0] -map [v1] -c:v libx264 -preset veryfast"));
        assert!(line.contains("-b:v:1 800k -maxrate:v:1 880k -bufsize:v:1 1600k"));
        assert!(line.contains("-adaptation_sets id=0,streams=v -progress pipe:1 /o/manifest.mpd"));
        assert!(!line.contains("0:a"));
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
