//! The rules of assets, free of I/O: what an upload may be, how it is split into parts, where
//! its bytes live, playback grants, and the playlists served under a grant.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coursebus_contracts::ErrorBody;
use coursebus_contracts::content::{AssetKind, Caption, CreateAssetRequest, MAX_CAPTION_BYTES, check_lang};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part number.
pub const MAX_PARTS: u64 = 10_000;
/// Presigned part URLs handed out per call.
pub const MAX_PARTS_PER_CALL: usize = 100;

/// A checked upload request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAsset {
    pub kind: AssetKind,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: u64,
}

/// Check kind, name, type and size against the limits of the kind.
pub fn check_new_asset(req: &CreateAssetRequest) -> Result<NewAsset, ErrorBody> {
    let filename = req.filename.trim();
    if filename.is_empty() || filename.chars().count() > 255 {
        return Err(ErrorBody::invalid_field("filename", "filename must be 1-255 characters"));
    }
    if filename.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
        return Err(ErrorBody::invalid_field("filename", "filename must not contain control characters or slashes"));
    }
    let content_type = req.content_type.trim().to_ascii_lowercase();
    if !req.kind.content_types().contains(&content_type.as_str()) {
        return Err(ErrorBody::invalid_field(
            "content_type",
            format!("a {} must be one of: {}", req.kind.as_str(), req.kind.content_types().join(", ")),
        ));
    }
    if req.size_bytes == 0 {
        return Err(ErrorBody::invalid_field("size_bytes", "size_bytes must be at least 1"));
    }
    if req.size_bytes > req.kind.max_bytes() {
        return Err(ErrorBody::new(
            coursebus_contracts::ErrorCode::PayloadTooLarge,
            format!("a {} may be at most {} bytes", req.kind.as_str(), req.kind.max_bytes()),
        )
        .with_details(serde_json::json!({"field": "size_bytes", "max": req.kind.max_bytes()})));
    }
    Ok(NewAsset { kind: req.kind, filename: filename.to_owned(), content_type, size_bytes: req.size_bytes })
}

/// `(part_size, part_count)` for `size` bytes: at least `preferred` (itself at least S3's 5 MiB)
/// and large enough to stay within 10,000 parts, in whole MiB.
pub fn parts_for(size: u64, preferred: u64) -> (u64, u32) {
    const MIB: u64 = 1024 * 1024;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    let part_size = preferred.max(MIN_PART_SIZE).max(needed);
    let count = size.div_ceil(part_size).max(1);
    (part_size, u32::try_from(count).unwrap_or(u32::MAX))
}

/// The bytes a part must hold: `part_size`, except the last.
pub fn expected_part_size(size: u64, part_size: u64, part_count: u32, part: u32) -> u64 {
    if part < part_count { part_size } else { size - part_size * u64::from(part_count - 1) }
}

/// Which parts are still missing, given those S3 holds.
pub fn missing_parts(part_count: u32, uploaded: &[u32]) -> Vec<u32> {
    (1..=part_count).filter(|n| !uploaded.contains(n)).collect()
}

/// Check the part numbers of a presign request.
pub fn check_part_numbers(numbers: &[u32], part_count: u32) -> Result<(), ErrorBody> {
    if numbers.is_empty() || numbers.len() > MAX_PARTS_PER_CALL {
        return Err(ErrorBody::invalid_field(
            "part_numbers",
            format!("ask for 1 to {MAX_PARTS_PER_CALL} parts at a time"),
        ));
    }
    if let Some(bad) = numbers.iter().find(|n| **n == 0 || **n > part_count) {
        return Err(ErrorBody::invalid_field("part_numbers", format!("part {bad} is not between 1 and {part_count}")));
    }
    let mut seen = numbers.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != numbers.len() {
        return Err(ErrorBody::invalid_field("part_numbers", "part numbers must not repeat"));
    }
    Ok(())
}

/// Where an asset's bytes live; generated from ids, never from anything the client sent.
pub fn source_key(course_id: Uuid, asset_id: Uuid) -> String {
    format!("courses/{course_id}/assets/{asset_id}/source")
}

/// The folder of a video's renditions (ends with `/`).
pub fn stream_prefix(course_id: Uuid, asset_id: Uuid) -> String {
    format!("courses/{course_id}/assets/{asset_id}/stream/")
}

/// `Content-Disposition` for downloads: always an attachment, the name in RFC 5987 form.
pub fn attachment(filename: &str) -> String {
    let ascii: String =
        filename.chars().map(|c| if c.is_ascii_alphanumeric() || "._- ".contains(c) { c } else { '_' }).collect();
    let mut encoded = String::new();
    for byte in filename.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"._-".contains(byte) {
            encoded.push(char::from(*byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Check a WebVTT file and its label; returns the label to store.
pub fn check_caption(lang: &str, label: Option<&str>, vtt: &str) -> Result<Caption, ErrorBody> {
    check_lang(lang)?;
    let label = label.map(str::trim).filter(|l| !l.is_empty()).unwrap_or(lang);
    if label.chars().count() > 80 || label.chars().any(|c| c.is_control() || c == '"') {
        return Err(ErrorBody::invalid_field("label", "label must be at most 80 characters, without quotes"));
    }
    if vtt.len() > MAX_CAPTION_BYTES {
        return Err(ErrorBody::new(
            coursebus_contracts::ErrorCode::PayloadTooLarge,
            format!("captions may be at most {MAX_CAPTION_BYTES} bytes"),
        ));
    }
    let body = vtt.strip_prefix('\u{feff}').unwrap_or(vtt);
    let first = body.lines().next().unwrap_or("");
    if first != "WEBVTT" && !first.starts_with("WEBVTT ") && !first.starts_with("WEBVTT\t") {
        return Err(ErrorBody::invalid_field("vtt", "captions must be a WebVTT file (first line `WEBVTT`)"));
    }
    Ok(Caption { lang: lang.to_owned(), label: label.to_owned() })
}

/// A playback grant: who may play which asset until when, signed by this service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub asset_id: Uuid,
    pub user_id: Uuid,
    /// Unix seconds.
    pub expires: i64,
}

type HmacSha256 = Hmac<Sha256>;

impl Grant {
    /// `base64url(asset ‖ user ‖ expires ‖ HMAC-SHA256(key, asset ‖ user ‖ expires))`.
    pub fn sign(&self, key: &[u8]) -> String {
        let mut bytes = self.message().to_vec();
        bytes.extend_from_slice(&mac(key, &bytes));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The grant in `token`, if its signature holds and it has not expired at `now`.
    pub fn verify(token: &str, key: &[u8], now: i64) -> Option<Grant> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != 72 {
            return None;
        }
        let (message, tag) = bytes.split_at(40);
        let mut check = HmacSha256::new_from_slice(key).ok()?;
        check.update(message);
        check.verify_slice(tag).ok()?;
        let asset_id = Uuid::from_slice(&message[..16]).ok()?;
        let user_id = Uuid::from_slice(&message[16..32]).ok()?;
        let expires = i64::from_be_bytes(message[32..40].try_into().ok()?);
        (now < expires).then_some(Grant { asset_id, user_id, expires })
    }

    fn message(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[..16].copy_from_slice(self.asset_id.as_bytes());
        out[16..32].copy_from_slice(self.user_id.as_bytes());
        out[32..].copy_from_slice(&self.expires.to_be_bytes());
        out
    }
}

fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// What a path under a playback grant names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaybackPath {
    /// A stored text file served through the bus (playlists, manifests, WebVTT).
    Text { key: String, content_type: &'static str },
    /// The captions playlist of a language, made on the fly.
    CaptionPlaylist { lang: String },
    /// A stored binary file (segments, images): redirect to a presigned URL.
    Binary { key: String },
}

/// Parse `path` (relative to the stream folder): plain names in at most two levels, no `..`.
pub fn playback_path(path: &str) -> Option<PlaybackPath> {
    let segments: Vec<&str> = path.split('/').collect();
    if path.len() > 200 || segments.is_empty() || segments.len() > 2 {
        return None;
    }
    let plain = |s: &str| {
        !s.is_empty() && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !segments.iter().all(|s| plain(s)) {
        return None;
    }
    if segments.len() == 2 {
        // Only captions live in a sub-folder.
        if segments[0] != coursebus_contracts::content::outputs::CAPTIONS_DIR {
            return None;
        }
        let (lang, ext) = segments[1].rsplit_once('.')?;
        check_lang(lang).ok()?;
        return match ext {
            "m3u8" => Some(PlaybackPath::CaptionPlaylist { lang: lang.to_owned() }),
            "vtt" => Some(PlaybackPath::Text { key: path.to_owned(), content_type: "text/vtt; charset=utf-8" }),
            _ => None,
        };
    }
    let (_, ext) = path.rsplit_once('.')?;
    let content_type = match ext {
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "vtt" => "text/vtt; charset=utf-8",
        "m4s" | "mp4" | "jpg" => return Some(PlaybackPath::Binary { key: path.to_owned() }),
        _ => return None,
    };
    Some(PlaybackPath::Text { key: path.to_owned(), content_type })
}

/// The HLS master playlist with a subtitles group for `captions` (added at serve time, so
/// captions uploaded after the transcode need no re-run).
pub fn master_with_captions(master: &str, captions: &[Caption]) -> String {
    if captions.is_empty() {
        return master.to_owned();
    }
    let media: Vec<String> = captions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"{}\",LANGUAGE=\"{}\",DEFAULT={},AUTOSELECT=YES,URI=\"captions/{}.m3u8\"",
                c.label,
                c.lang,
                if i == 0 { "YES" } else { "NO" },
                c.lang
            )
        })
        .collect();
    let mut out = Vec::new();
    let mut inserted = false;
    for line in master.lines() {
        if line.starts_with("#EXT-X-STREAM-INF:") {
            if !inserted {
                out.extend(media.iter().cloned());
                inserted = true;
            }
            out.push(format!("{line},SUBTITLES=\"subs\""));
        } else {
            out.push(line.to_owned());
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// The one-segment HLS playlist of a captions file.
pub fn caption_playlist(lang: &str, duration_seconds: f64) -> String {
    let duration = duration_seconds.max(1.0);
    format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:{duration:.3},\n{lang}.vtt\n#EXT-X-ENDLIST\n",
        duration.ceil() as u64
    )
}

/// The DASH manifest with a text adaptation set per captions language.
pub fn manifest_with_captions(mpd: &str, captions: &[Caption]) -> String {
    if captions.is_empty() {
        return mpd.to_owned();
    }
    let Some(at) = mpd.rfind("</Period>") else {
        return mpd.to_owned();
    };
    let mut sets = String::new();
    for c in captions {
        sets.push_str(&format!(
            "\t\t<AdaptationSet contentType=\"text\" mimeType=\"text/vtt\" lang=\"{lang}\">\n\t\t\t<Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"subtitle\"/>\n\t\t\t<Label>{label}</Label>\n\t\t\t<Representation id=\"captions-{lang}\" bandwidth=\"256\">\n\t\t\t\t<BaseURL>captions/{lang}.vtt</BaseURL>\n\t\t\t</Representation>\n\t\t</AdaptationSet>\n",
            lang = c.lang,
            label = xml_escape(&c.label),
        ));
    }
    format!("{}{}{}", &mpd[..at], sets, &mpd[at..])
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: AssetKind, content_type: &str, size: u64) -> CreateAssetRequest {
        CreateAssetRequest {
            course_id: Uuid::nil(),
            kind,
            filename: "lesson 1.mp4".into(),
            content_type: content_type.into(),
            size_bytes: size,
        }
    }

    #[test]
    fn uploads_are_checked_against_their_kind() {
        assert!(check_new_asset(&req(AssetKind::Video, "video/mp4", 1000)).is_ok());
        assert_eq!(
            check_new_asset(&req(AssetKind::Video, "text/html", 10)).unwrap_err().code.as_str(),
            "invalid_input"
        );
        assert_eq!(
            check_new_asset(&req(AssetKind::Image, "image/svg+xml", 10)).unwrap_err().code.as_str(),
            "invalid_input"
        );
        assert_eq!(check_new_asset(&req(AssetKind::Video, "video/mp4", 0)).unwrap_err().code.as_str(), "invalid_input");
        let too_big =
            check_new_asset(&req(AssetKind::Image, "image/png", AssetKind::Image.max_bytes() + 1)).unwrap_err();
        assert_eq!(too_big.code.as_str(), "payload_too_large");
        let mut traversal = req(AssetKind::File, "text/plain", 10);
        traversal.filename = "../../etc/passwd".into();
        assert!(check_new_asset(&traversal).is_err());
    }

    #[test]
    fn parts_respect_s3_limits() {
        let mib = 1024 * 1024;
        assert_eq!(parts_for(1, 8 * mib), (8 * mib, 1));
        assert_eq!(parts_for(7 * mib, 5 * mib), (5 * mib, 2));
        assert_eq!(parts_for(7 * mib, mib), (5 * mib, 2), "never below 5 MiB");
        // 100 GiB needs parts of 11 MiB to stay within 10,000.
        let (size, count) = parts_for(100 * 1024 * mib, 8 * mib);
        assert_eq!(size, 11 * mib);
        assert!(count <= 10_000);
        assert_eq!(expected_part_size(7 * mib, 5 * mib, 2, 1), 5 * mib);
        assert_eq!(expected_part_size(7 * mib, 5 * mib, 2, 2), 2 * mib);
        assert_eq!(missing_parts(4, &[1, 3]), vec![2, 4]);
        assert!(check_part_numbers(&[1, 2], 2).is_ok());
        assert!(check_part_numbers(&[0], 2).is_err());
        assert!(check_part_numbers(&[3], 2).is_err());
        assert!(check_part_numbers(&[1, 1], 2).is_err());
        assert!(check_part_numbers(&[], 2).is_err());
    }

    #[test]
    fn grants_verify_only_untampered_and_unexpired() {
        let key = b"0123456789abcdef0123456789abcdef";
        let grant = Grant { asset_id: Uuid::now_v7(), user_id: Uuid::now_v7(), expires: 1_000 };
        let token = grant.sign(key);
        assert_eq!(Grant::verify(&token, key, 999), Some(grant));
        assert_eq!(Grant::verify(&token, key, 1_000), None, "expired");
        assert_eq!(Grant::verify(&token, b"another key", 999), None);
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[20] ^= 1;
        assert_eq!(Grant::verify(&URL_SAFE_NO_PAD.encode(bytes), key, 999), None, "tampered user");
        assert_eq!(Grant::verify("not-a-token", key, 0), None);
    }

    #[test]
    fn playback_paths_stay_inside_the_stream_folder() {
        assert_eq!(
            playback_path("master.m3u8"),
            Some(PlaybackPath::Text { key: "master.m3u8".into(), content_type: "application/vnd.apple.mpegurl" })
        );
        assert_eq!(
            playback_path("chunk-stream0-00001.m4s"),
            Some(PlaybackPath::Binary { key: "chunk-stream0-00001.m4s".into() })
        );
        assert_eq!(playback_path("captions/pt-BR.m3u8"), Some(PlaybackPath::CaptionPlaylist { lang: "pt-BR".into() }));
        assert!(matches!(playback_path("captions/en.vtt"), Some(PlaybackPath::Text { .. })));
        for bad in [
            "../source",
            "..",
            "a/../b",
            "/etc/passwd",
            "captions/../../x.vtt",
            "source",
            "x/y/z.m4s",
            ".hidden.m3u8",
            "a b.m3u8",
            "other/en.vtt",
        ] {
            assert_eq!(playback_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn captions_join_the_master_playlist_and_the_manifest() {
        let master = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=1280x720\nmedia_0.m3u8\n\n#EXT-X-STREAM-INF:BANDWIDTH=2,RESOLUTION=640x360\nmedia_1.m3u8\n";
        let captions = vec![Caption { lang: "en".into(), label: "English".into() }];
        let out = master_with_captions(master, &captions);
        assert!(out.contains("#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,URI=\"captions/en.m3u8\""));
        assert_eq!(out.matches(",SUBTITLES=\"subs\"").count(), 2);
        assert!(out.find("#EXT-X-MEDIA").unwrap() < out.find("#EXT-X-STREAM-INF").unwrap());
        assert_eq!(master_with_captions(master, &[]), master);
        let mpd = "<MPD><Period id=\"0\"><AdaptationSet/></Period></MPD>";
        let out = manifest_with_captions(mpd, &captions);
        assert!(out.contains("<BaseURL>captions/en.vtt</BaseURL>") && out.ends_with("</Period></MPD>"));
        let playlist = caption_playlist("en", 4.0);
        assert!(playlist.contains("#EXTINF:4.000,\nen.vtt\n#EXT-X-ENDLIST"));
    }

    #[test]
    fn captions_must_be_webvtt() {
        assert_eq!(check_caption("en", None, "WEBVTT\n\n00:00.000 --> 00:01.000\nHi\n").unwrap().label, "en");
        assert_eq!(check_caption("en", Some("English"), "\u{feff}WEBVTT - x\n").unwrap().label, "English");
        assert!(check_caption("en", None, "1\n00:00:00,000 --> 00:00:01,000\nHi\n").is_err(), "SRT is not WebVTT");
        assert!(check_caption("english", None, "WEBVTT\n").is_err());
        assert!(check_caption("en", Some("a\"b"), "WEBVTT\n").is_err());
    }

    #[test]
    fn downloads_are_attachments_with_safe_names() {
        assert_eq!(attachment("notes.pdf"), "attachment; filename=\"notes.pdf\"; filename*=UTF-8''notes.pdf");
        let tricky = attachment("a\"b;ç.pdf");
        assert!(
            tricky.starts_with("attachment; filename=\"a_b__.pdf\"")
                || tricky.starts_with("attachment; filename=\"a_b_")
        );
        assert!(tricky.contains("filename*=UTF-8''a%22b%3B%C3%A7.pdf"));
    }
}
