//! Probing a source from ffmpeg's own words: the static build has no ffprobe, so
//! `ffmpeg -hide_banner -i SRC` is run and its stderr read for the duration, the streams, the
//! picture's dimensions, sample aspect ratio and rotation ([`parse_probe`]).

use super::ladder::even;
use super::{FfmpegError, last_meaningful_line};

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
}
