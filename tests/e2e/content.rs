//! Content and media: presigned multipart uploads straight to S3 (s3s-fs, signatures checked),
//! the transcode queue group (real ffmpeg), HLS and DASH playback under signed grants, captions,
//! downloads, and the failure paths (crash mid-job, a text file named `.mp4`, aborts).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use coursebus_tests::{Builder, Infra, Platform, Service, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{call, create_course, instructor, publish_with_lessons, stream_events, user};

fn options() -> Builder {
    Platform::builder()
        .with(Service::Catalog, 1)
        .with(Service::Enrollment, 1)
        .with(Service::Content, 1)
        .with(Service::Media, 1)
}

/// A generated clip: `seconds` of 1280x720 test pattern with a tone. `mjpeg` makes it large
/// (several 5 MiB parts) and quick to produce; otherwise x264.
pub async fn clip(p: &Platform, seconds: u32, mjpeg: bool) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("clip.mp4");
    let codec: &[&str] = if mjpeg {
        &["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"]
    } else {
        &["-c:v", "libx264", "-preset", "ultrafast"]
    };
    let status = tokio::process::Command::new(&p.ffmpeg)
        .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=24"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", &seconds.to_string()])
        .args(codec)
        .args(["-c:a", "aac", "-shortest"])
        .arg(&out)
        .status()
        .await?;
    ensure!(status.success(), "ffmpeg could not make a clip");
    Ok(tokio::fs::read(&out).await?)
}

/// Upload `bytes` (at most one part) as a video of `course_id` and complete it; the asset id.
pub async fn upload_single_part(p: &Platform, teacher: &str, course_id: &str, bytes: &[u8]) -> Result<String> {
    let body = json!({"kind": "video", "filename": "clip.mp4", "content_type": "video/mp4", "size_bytes": bytes.len()});
    let created = call(p, Method::POST, &format!("/v1/courses/{course_id}/assets"), Some(teacher), Some(body)).await?;
    ensure!(created.status == StatusCode::CREATED && created.body["part_count"] == 1, "{created:?}");
    let id = created.body["asset"]["id"].as_str().context("asset id")?.to_owned();
    let parts = json!({"part_numbers": [1]});
    let urls = call(p, Method::POST, &format!("/v1/assets/{id}/upload/parts"), Some(teacher), Some(parts)).await?;
    let url = urls.body["parts"][0]["url"].as_str().context("part url")?;
    ensure!(p.http.put(url).body(bytes.to_vec()).send().await?.status().is_success(), "S3 refused the part");
    let done = call(p, Method::POST, &format!("/v1/assets/{id}/upload/complete"), Some(teacher), None).await?;
    ensure!(done.body["status"] == "processing", "{done:?}");
    Ok(id)
}

/// A platform with a published course, its instructor and an enrolled learner.
struct Class {
    p: Platform,
    teacher: String,
    learner: String,
    course_id: String,
}

async fn class(infra: &Infra, tag: &str) -> Result<Class> {
    let p = options().start(infra).await?;
    let (_, teacher) = instructor(&p, &format!("teacher-{tag}@example.com")).await?;
    let course = create_course(&p, &teacher, &format!("Filming {tag}"), json!({})).await?;
    let course = publish_with_lessons(&p, &teacher, &course, 1).await?;
    let course_id = course["id"].as_str().context("course id")?.to_owned();
    let (_, learner) = user(&p, &format!("learner-{tag}@example.com")).await?;
    let enrolled =
        call(&p, Method::POST, "/v1/enrollments", Some(&learner), Some(json!({"course_id": course_id}))).await?;
    ensure!(enrolled.status == StatusCode::CREATED, "enrolling: {enrolled:?}");
    Ok(Class { p, teacher, learner, course_id })
}

/// Start an upload of `bytes` as `kind`/`content_type`.
async fn start_upload(c: &Class, kind: &str, content_type: &str, filename: &str, size: usize) -> Result<Value> {
    let reply = call(
        &c.p,
        Method::POST,
        &format!("/v1/courses/{}/assets", c.course_id),
        Some(&c.teacher),
        Some(json!({"kind": kind, "filename": filename, "content_type": content_type, "size_bytes": size})),
    )
    .await?;
    ensure!(reply.status == StatusCode::CREATED, "starting an upload: {reply:?}");
    Ok(reply.body)
}

/// Ask for presigned URLs of `parts` of asset `id` as the holder of `token`.
async fn part_urls(c: &Class, id: &str, token: &str, parts: Value) -> Result<crate::support::Reply> {
    let path = format!("/v1/assets/{id}/upload/parts");
    call(&c.p, Method::POST, &path, Some(token), Some(json!({"part_numbers": parts}))).await
}

/// `PUT` the given parts of `bytes` to presigned URLs, as a browser would.
async fn send_parts(c: &Class, upload: &Value, bytes: &[u8], parts: &[u32]) -> Result<()> {
    let id = upload["asset"]["id"].as_str().context("asset id")?;
    let part_size = upload["part_size"].as_u64().context("part size")? as usize;
    let urls = part_urls(c, id, &c.teacher, json!(parts)).await?;
    ensure!(urls.status == StatusCode::OK, "part URLs: {urls:?}");
    for part in urls.body["parts"].as_array().context("parts")? {
        let n = part["part_number"].as_u64().context("number")? as usize;
        let chunk = &bytes[(n - 1) * part_size..(n * part_size).min(bytes.len())];
        let url = part["url"].as_str().context("url")?;
        let put = c.p.http.put(url).body(chunk.to_vec()).send().await?;
        ensure!(put.status().is_success(), "S3 refused part {n}: {} {}", put.status(), put.text().await?);
    }
    Ok(())
}

async fn asset(c: &Class, id: &str, token: &str) -> Result<Value> {
    let reply = call(&c.p, Method::GET, &format!("/v1/assets/{id}"), Some(token), None).await?;
    ensure!(reply.status == StatusCode::OK, "asset: {reply:?}");
    Ok(reply.body)
}

/// Wait until the asset reaches `status` (or fails otherwise).
async fn wait_status(c: &Class, id: &str, status: &str) -> Result<Value> {
    eventually(Duration::from_secs(90), &format!("the asset to be {status}"), || async {
        let asset = asset(c, id, &c.teacher).await?;
        let now = asset["status"].as_str().unwrap_or_default().to_owned();
        if now != status && (now == "failed" || now == "ready") {
            anyhow::bail!("the asset ended {now}, not {status}: {asset}");
        }
        Ok((now == status).then_some(asset))
    })
    .await
}

/// Upload `bytes` as a video in full and complete it.
async fn upload_video(c: &Class, bytes: &[u8]) -> Result<String> {
    let upload = start_upload(c, "video", "video/mp4", "lesson.mp4", bytes.len()).await?;
    let count = upload["part_count"].as_u64().context("count")? as u32;
    send_parts(c, &upload, bytes, &(1..=count).collect::<Vec<_>>()).await?;
    let id = upload["asset"]["id"].as_str().context("id")?.to_owned();
    let done = call(&c.p, Method::POST, &format!("/v1/assets/{id}/upload/complete"), Some(&c.teacher), None).await?;
    ensure!(done.status == StatusCode::OK && done.body["status"] == "processing", "complete: {done:?}");
    Ok(id)
}

fn no_redirects() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()?)
}

pub async fn a_clip_uploaded_in_parts_resumes_transcodes_and_plays(infra: Arc<Infra>) -> Result<()> {
    let c = class(&infra, "play").await?;
    let bytes = clip(&c.p, 4, true).await?;
    let upload = start_upload(&c, "video", "video/mp4", "Lesson 1.mp4", bytes.len()).await?;
    let id = upload["asset"]["id"].as_str().context("id")?.to_owned();
    assert_eq!(upload["part_count"], 2, "{upload}");
    assert_eq!(upload["asset"]["status"], "uploading");

    // The first part, then the connection "drops": the upload says what is missing.
    send_parts(&c, &upload, &bytes, &[1]).await?;
    let status = call(&c.p, Method::GET, &format!("/v1/assets/{id}/upload"), Some(&c.teacher), None).await?;
    assert_eq!(status.body["uploaded"][0]["part_number"], 1, "{status:?}");
    assert_eq!(status.body["uploaded"][0]["size_bytes"], 5 * 1024 * 1024);
    assert_eq!(status.body["missing"], json!([2]));
    let early = call(&c.p, Method::POST, &format!("/v1/assets/{id}/upload/complete"), Some(&c.teacher), None).await?;
    assert_eq!(early.status, StatusCode::CONFLICT, "{early:?}");
    assert_eq!(early.body["details"]["missing"], json!([2]));

    // Resume with the missing part only.
    send_parts(&c, &upload, &bytes, &[2]).await?;
    let done = call(&c.p, Method::POST, &format!("/v1/assets/{id}/upload/complete"), Some(&c.teacher), None).await?;
    assert_eq!(done.body["status"], "processing", "{done:?}");
    let ready = wait_status(&c, &id, "ready").await?;
    assert_eq!(ready["progress_percent"], 100);
    assert_eq!(ready["sha256"], hex::encode(Sha256::digest(&bytes)), "media hashed exactly what was uploaded");
    let heights: Vec<u64> =
        ready["renditions"].as_array().unwrap().iter().map(|r| r["height"].as_u64().unwrap()).collect();
    assert_eq!(heights, vec![720, 360], "{ready}");
    assert!((ready["duration_seconds"].as_f64().unwrap() - 4.0).abs() < 0.2, "{ready}");

    // The learner plays it: the master playlist lists both rungs, a variant its segments, and
    // a segment redirects to a presigned S3 URL that serves the bytes.
    let grant = call(&c.p, Method::POST, &format!("/v1/assets/{id}/playback"), Some(&c.learner), None).await?;
    assert_eq!(grant.status, StatusCode::OK, "{grant:?}");
    let hls = grant.body["hls_url"].as_str().unwrap().to_owned();
    let master = c.p.http.get(c.p.url(&hls)).send().await?;
    assert_eq!(master.headers()["content-type"], "application/vnd.apple.mpegurl");
    let master = master.text().await?;
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2, "{master}");
    let variant_name = master.lines().find(|l| l.ends_with(".m3u8") && !l.starts_with('#')).unwrap();
    let base = hls.rsplit_once('/').unwrap().0.to_owned();
    let variant = c.p.http.get(c.p.url(&format!("{base}/{variant_name}"))).send().await?.text().await?;
    let segment = variant.lines().find(|l| l.ends_with(".m4s") && !l.starts_with('#')).context("a segment")?;
    let direct = no_redirects()?;
    let redirect = direct.get(c.p.url(&format!("{base}/{segment}"))).send().await?;
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()["location"].to_str()?.to_owned();
    assert!(location.starts_with(&infra.s3.endpoint) && location.contains("X-Amz-Signature="), "{location}");
    let media = direct.get(&location).send().await?;
    assert_eq!(media.status(), StatusCode::OK);
    let media = media.bytes().await?;
    assert!(media.len() > 1000 && media.windows(4).any(|w| w == b"moof"), "an fMP4 segment");
    // S3 checks the signature: one changed character and the URL is refused.
    let tampered = tamper(&location);
    assert_eq!(direct.get(&tampered).send().await?.status(), StatusCode::FORBIDDEN);
    let dash = c.p.http.get(c.p.url(grant.body["dash_url"].as_str().unwrap())).send().await?.text().await?;
    assert!(dash.contains("<MPD") && dash.contains("height=\"360\""), "{dash}");
    for (key, magic) in [("poster_url", &b"\xff\xd8"[..]), ("thumbnails_url", &b"WEBVTT"[..])] {
        let body = c.p.http.get(c.p.url(grant.body[key].as_str().unwrap())).send().await?.bytes().await?;
        assert!(body.starts_with(magic), "{key}");
    }

    // Captions appear in the master playlist and the manifest.
    let vtt = "WEBVTT\n\n00:00.000 --> 00:02.000\nHello\n";
    let put =
        c.p.http
            .put(c.p.url(&format!("/v1/assets/{id}/captions/en?label=English")))
            .bearer_auth(&c.teacher)
            .header("content-type", "text/vtt")
            .body(vtt)
            .send()
            .await?;
    assert_eq!(put.status(), StatusCode::OK);
    let master = c.p.http.get(c.p.url(&hls)).send().await?.text().await?;
    assert!(master.contains("TYPE=SUBTITLES") && master.contains("URI=\"captions/en.m3u8\""), "{master}");
    assert_eq!(master.matches("SUBTITLES=\"subs\"").count(), 2);
    let playlist = c.p.http.get(c.p.url(&format!("{base}/captions/en.m3u8"))).send().await?.text().await?;
    assert!(playlist.contains("en.vtt"), "{playlist}");
    let served = c.p.http.get(c.p.url(&format!("{base}/captions/en.vtt"))).send().await?.text().await?;
    assert_eq!(served, vtt);
    let dash = c.p.http.get(c.p.url(grant.body["dash_url"].as_str().unwrap())).send().await?.text().await?;
    assert!(dash.contains("<BaseURL>captions/en.vtt</BaseURL>"));

    // Nobody else plays it: another user is refused, no token is 401, a forged grant 403, and
    // paths outside the stream folder do not exist.
    let (_, stranger) = user(&c.p, "stranger-play@example.com").await?;
    let refused = call(&c.p, Method::POST, &format!("/v1/assets/{id}/playback"), Some(&stranger), None).await?;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let anonymous = call(&c.p, Method::POST, &format!("/v1/assets/{id}/playback"), None, None).await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let forged = c.p.http.get(c.p.url(&tamper(&hls))).send().await?;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let outside = c.p.http.get(c.p.url(&format!("{base}/..%2Fsource"))).send().await?;
    assert_eq!(outside.status(), StatusCode::NOT_FOUND);
    let source = direct.get(c.p.url(&format!("{base}/source"))).send().await?;
    assert_eq!(source.status(), StatusCode::NOT_FOUND, "the original is not under the grant");
    let download = call(&c.p, Method::GET, &format!("/v1/assets/{id}/download"), Some(&c.learner), None).await?;
    assert_eq!(download.status, StatusCode::FORBIDDEN, "learners stream videos, never download them");
    c.p.shutdown().await;
    Ok(())
}

/// Change the last character of the path part or of a query value (an S3 signature or a grant).
fn tamper(url: &str) -> String {
    let mut chars: Vec<char> = url.chars().collect();
    let at = match url.find("X-Amz-Signature=") {
        Some(i) => i + "X-Amz-Signature=".len() + 3,
        None => url.rfind('/').unwrap() - 5,
    };
    chars[at] = if chars[at] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

pub async fn a_killed_media_replica_leaves_exactly_one_ready_asset(infra: Arc<Infra>) -> Result<()> {
    let mut c = class(&infra, "kill").await?;
    let bytes = clip(&c.p, 30, false).await?;
    let id = upload_video(&c, &bytes).await?;
    // Kill the replica once the transcode is under way (it reported progress).
    eventually(Duration::from_secs(60), "the transcode to make progress", || async {
        let asset = asset(&c, &id, &c.teacher).await?;
        ensure!(asset["status"] == "processing", "the transcode ended before the kill: {asset}");
        Ok((asset["progress_percent"].as_u64().unwrap_or(0) > 0).then_some(()))
    })
    .await?;
    c.p.kill_replicas("media");
    c.p.start_media_replica();
    let ready = wait_status(&c, &id, "ready").await?;
    assert_eq!(ready["renditions"].as_array().map(Vec::len), Some(2));
    let nats = c.p.nats_client().await?;
    let ready_events: Vec<_> = stream_events(&nats, "EVT_CONTENT", "cb.evt.content.asset.ready")
        .await?
        .into_iter()
        .filter(|(e, _)| e["data"]["asset_id"] == id.as_str())
        .collect();
    assert_eq!(ready_events.len(), 1, "one asset.ready event");
    let completed: Vec<_> = stream_events(&nats, "EVT_MEDIA", "cb.evt.media.transcode.completed")
        .await?
        .into_iter()
        .filter(|(e, _)| e["data"]["asset_id"] == id.as_str())
        .collect();
    assert_eq!(completed.len(), 1, "one transcode result");
    let js = async_nats::jetstream::new(nats.clone());
    assert_eq!(js.get_stream("JOB_MEDIA").await?.get_info().await?.state.messages, 0, "the job is done");
    c.p.shutdown().await;
    Ok(())
}

/// A job that takes its replica down every time: after `max_deliver` deliveries JetStream gives
/// up, and the asset fails with that reason instead of staying `processing` for ever.
pub async fn a_job_that_kills_every_replica_fails_its_asset(infra: Arc<Infra>) -> Result<()> {
    let mut c = class(&infra, "crash").await?;
    c.p.kill_replicas("media");
    let mut config = c.p.media_config();
    config.max_deliver = 2;
    let start = |p: &mut Platform| p.start_media_replica_with(config.clone());
    start(&mut c.p);
    let bytes = clip(&c.p, 30, false).await?;
    let id = upload_video(&c, &bytes).await?;
    let nats = c.p.nats_client().await?;
    let js = async_nats::jetstream::new(nats.clone());
    for delivery in 1..=2u64 {
        // Each replica dies once the job is in its hands (delivered `delivery` times).
        eventually(Duration::from_secs(60), "the job to be delivered", || async {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
                .get_stream("JOB_MEDIA")
                .await?
                .get_consumer("media_transcode")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let info = consumer.info().await?;
            Ok((info.delivered.stream_sequence >= 1
                && info.num_ack_pending == 1
                && info.num_redelivered as u64 + 1 >= delivery)
                .then_some(()))
        })
        .await?;
        c.p.kill_replicas("media");
        start(&mut c.p);
    }
    let failed = wait_status(&c, &id, "failed").await?;
    let reason = failed["failure_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("gave up after 2 attempts"), "{reason}");
    let parked = stream_events(&nats, "DLQ", "cb.dlq.JOB_MEDIA.media_transcode").await?;
    assert_eq!(parked.len(), 1, "the job's copy is in the DLQ");
    assert_eq!(js.get_stream("JOB_MEDIA").await?.get_info().await?.state.messages, 0, "and not in the queue");
    c.p.shutdown().await;
    Ok(())
}

pub async fn a_text_file_named_mp4_fails_with_a_reason_and_lands_in_the_dlq(infra: Arc<Infra>) -> Result<()> {
    let c = class(&infra, "text").await?;
    let bytes = b"These are my lecture notes, not a video.\n".repeat(100);
    let id = upload_video(&c, &bytes).await?;
    let failed = wait_status(&c, &id, "failed").await?;
    let reason = failed["failure_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not a playable video"), "{reason}");
    let nats = c.p.nats_client().await?;
    let js = async_nats::jetstream::new(nats.clone());
    let parked = eventually(Duration::from_secs(10), "the job's copy in the DLQ", || async {
        let copies = stream_events(&nats, "DLQ", "cb.dlq.JOB_MEDIA.media_transcode").await?;
        Ok(copies.into_iter().find(|(e, _)| e["data"]["asset_id"] == id.as_str()))
    })
    .await?;
    assert_eq!(parked.0["type"], "media.transcode.requested");
    assert_eq!(js.get_stream("JOB_MEDIA").await?.get_info().await?.state.messages, 0, "never looping");
    let failed_events = stream_events(&nats, "EVT_CONTENT", "cb.evt.content.asset.failed").await?;
    assert_eq!(failed_events.len(), 1);
    let play = call(&c.p, Method::POST, &format!("/v1/assets/{id}/playback"), Some(&c.learner), None).await?;
    assert_eq!(play.status, StatusCode::CONFLICT);
    c.p.shutdown().await;
    Ok(())
}

pub async fn abort_leaves_no_parts_and_documents_download_for_learners_only(infra: Arc<Infra>) -> Result<()> {
    let c = class(&infra, "abort").await?;
    let bytes = vec![7u8; 6 * 1024 * 1024];
    let upload = start_upload(&c, "file", "application/zip", "data.zip", bytes.len()).await?;
    let id = upload["asset"]["id"].as_str().context("id")?.to_owned();
    send_parts(&c, &upload, &bytes, &[1]).await?;
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&c.p.content_database_url).await?;
    let upload_id: String =
        sqlx::query_scalar("SELECT upload_id FROM assets WHERE id = $1::uuid").bind(&id).fetch_one(&db).await?;
    let mine = |parts: Vec<String>| parts.into_iter().filter(|p| p.contains(&upload_id)).count();
    assert_eq!(mine(infra.s3.pending_parts()?), 1, "S3 holds the part");
    let aborted = call(&c.p, Method::DELETE, &format!("/v1/assets/{id}/upload"), Some(&c.teacher), None).await?;
    assert_eq!(aborted.body["status"], "aborted", "{aborted:?}");
    assert_eq!(mine(infra.s3.pending_parts()?), 0, "no orphaned parts");
    let again = part_urls(&c, &id, &c.teacher, json!([2])).await?;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // A PDF is ready as soon as it is complete; learners download it, strangers cannot.
    let pdf = b"%PDF-1.4\n% lecture notes\n".repeat(10);
    let upload = start_upload(&c, "document", "application/pdf", "Notes 1.pdf", pdf.len()).await?;
    assert_eq!(upload["part_count"], 1);
    send_parts(&c, &upload, &pdf, &[1]).await?;
    let id = upload["asset"]["id"].as_str().context("id")?.to_owned();
    let done = call(&c.p, Method::POST, &format!("/v1/assets/{id}/upload/complete"), Some(&c.teacher), None).await?;
    assert_eq!(done.body["status"], "ready", "{done:?}");
    let link = call(&c.p, Method::GET, &format!("/v1/assets/{id}/download"), Some(&c.learner), None).await?;
    assert_eq!(link.status, StatusCode::OK, "{link:?}");
    let got = c.p.http.get(link.body["url"].as_str().unwrap()).send().await?;
    assert_eq!(got.status(), StatusCode::OK);
    let disposition = got.headers()["content-disposition"].to_str()?.to_owned();
    assert!(disposition.starts_with("attachment;") && disposition.contains("Notes 1.pdf"), "{disposition}");
    assert_eq!(got.bytes().await?.as_ref(), pdf.as_slice());
    let (_, stranger) = user(&c.p, "stranger-abort@example.com").await?;
    let refused = call(&c.p, Method::GET, &format!("/v1/assets/{id}/download"), Some(&stranger), None).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let listed =
        call(&c.p, Method::GET, &format!("/v1/courses/{}/assets", c.course_id), Some(&c.teacher), None).await?;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(2), "{listed:?}");
    c.p.shutdown().await;
    Ok(())
}

pub async fn bad_asset_input_gets_clear_errors(infra: Arc<Infra>) -> Result<()> {
    let c = class(&infra, "bad").await?;
    let path = format!("/v1/courses/{}/assets", c.course_id);
    let good = json!({"kind": "video", "filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 100});
    let body = |kind: &str, filename: &str, content_type: &str, size: Value| json!({"kind": kind, "filename": filename, "content_type": content_type, "size_bytes": size});
    let mut unknown_field = good.clone();
    unknown_field["key"] = json!("../x");
    let (bad, too_large) =
        ((StatusCode::BAD_REQUEST, "invalid_input"), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    let cases = [
        (unknown_field, bad),
        (body("video", "a.html", "text/html", json!(100)), bad),
        (body("image", "a.svg", "image/svg+xml", json!(100)), bad),
        (body("video", "a.mp4", "video/mp4", json!(0)), bad),
        (body("video", "a.mp4", "video/mp4", json!(-5)), bad),
        (body("image", "a.png", "image/png", json!(21_000_000_000u64)), too_large),
        (body("video", "a/../../b.mp4", "video/mp4", json!(100)), bad),
        (body("hologram", "a.mp4", "video/mp4", json!(100)), bad),
    ];
    for (body, (status, code)) in cases {
        let reply = call(&c.p, Method::POST, &path, Some(&c.teacher), Some(body.clone())).await?;
        assert_eq!((reply.status, reply.code()), (status, code), "{body}: {reply:?}");
    }
    let student = call(&c.p, Method::POST, &path, Some(&c.learner), Some(good.clone())).await?;
    assert_eq!(student.status, StatusCode::FORBIDDEN, "a learner cannot upload to the course: {student:?}");
    let nowhere = call(
        &c.p,
        Method::POST,
        &format!("/v1/courses/{}/assets", uuid::Uuid::now_v7()),
        Some(&c.teacher),
        Some(good.clone()),
    )
    .await?;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    let unknown =
        call(&c.p, Method::GET, &format!("/v1/assets/{}", uuid::Uuid::now_v7()), Some(&c.teacher), None).await?;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "not_found"));

    let upload = start_upload(&c, "video", "video/mp4", "a.mp4", 100).await?;
    let id = upload["asset"]["id"].as_str().unwrap();
    for parts in [json!([0]), json!([2]), json!([1, 1]), json!([])] {
        let reply = part_urls(&c, id, &c.teacher, json!(parts)).await?;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{parts}: {reply:?}");
    }
    let theirs = part_urls(&c, id, &c.learner, json!([1])).await?;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    let not_ready = call(&c.p, Method::POST, &format!("/v1/assets/{id}/playback"), Some(&c.teacher), None).await?;
    assert_eq!(not_ready.status, StatusCode::CONFLICT);
    for (lang, body, status) in [
        ("en", "1\n00:00:00,000 --> 00:00:01,000\nSRT, not WebVTT\n", StatusCode::BAD_REQUEST),
        ("english", "WEBVTT\n", StatusCode::BAD_REQUEST),
    ] {
        let put =
            c.p.http
                .put(c.p.url(&format!("/v1/assets/{id}/captions/{lang}")))
                .bearer_auth(&c.teacher)
                .body(body)
                .send()
                .await?;
        assert_eq!(put.status(), status, "{lang}");
    }
    let garbage = c.p.http.get(c.p.url("/v1/playback/not-a-grant/master.m3u8")).send().await?;
    assert_eq!(garbage.status(), StatusCode::FORBIDDEN);
    c.p.shutdown().await;
    Ok(())
}
