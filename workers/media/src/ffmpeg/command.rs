//! Building ffmpeg's argument lists: the one encode that packages the whole ladder as DASH and
//! HLS ([`package_args`]), the poster ([`poster_args`]) and the preview strip ([`sprite_args`])
//! with its WebVTT index ([`thumbnails_vtt`]), and reading the `-progress pipe:1` lines those
//! runs write ([`parse_progress`]).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use coursebus_contracts::content::outputs;

use super::ladder::even;
use super::{Probe, Rung, width_for};

/// Target segment length, seconds (DASH and HLS share the segments).
pub const SEGMENT_SECONDS: u32 = 4;
/// A key frame every this many seconds, so every segment starts with one.
const KEYFRAME_SECONDS: u32 = 2;
/// The poster is at most this tall.
const POSTER_MAX_HEIGHT: u32 = 720;
/// One preview thumbnail.
pub const THUMB_WIDTH: u32 = 160;
pub const THUMB_HEIGHT: u32 = 90;
/// Thumbnails per row of the preview strip.
pub const THUMBS_PER_ROW: u32 = 10;
/// At most about this many thumbnails per video (the interval grows with the duration).
const MAX_THUMBS: f64 = 100.0;

/// The HLS media playlist of rung `index` (ffmpeg's dash muxer names them so).
pub fn media_playlist(index: usize) -> String {
    format!("media_{index}.m3u8")
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

/// `list` as process arguments.
pub(super) fn args<const N: usize>(list: [&str; N]) -> impl Iterator<Item = OsString> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffmpeg::ladder;

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
}
