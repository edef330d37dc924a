//! Replicas, the micro-service protocol, failure behaviour, the outbox, and the ops endpoints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use coursebus_contracts::subjects::{identity, srv};
use coursebus_tests::{Infra, Platform, Service, collect_replies, eventually};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{PASSWORD, call, login, user};

pub async fn replicas_share_requests_and_answer_the_micro_protocol(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder().start(&infra).await?;
    for _ in 0..40 {
        let reply = call(&p, Method::GET, "/.well-known/jwks.json", None, None).await?;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let nats = p.nats_client().await?;

    let infos = collect_replies(&nats, &srv::info(identity::SERVICE), 2, Duration::from_secs(2)).await?;
    assert_eq!(infos.len(), 2, "both replicas answer $SRV.INFO");
    for info in &infos {
        assert_eq!(info["name"], "identity");
        assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
        let subjects: Vec<&str> =
            info["endpoints"].as_array().unwrap().iter().filter_map(|e| e["subject"].as_str()).collect();
        for expected in ["cb.identity.user.register", "cb.identity.auth.login", "cb.identity.jwks.get"] {
            assert!(subjects.contains(&expected), "{expected} in {subjects:?}");
        }
        assert!(info["endpoints"].as_array().unwrap().iter().all(|e| e["queue_group"] == "q"));
    }
    assert_ne!(infos[0]["id"], infos[1]["id"]);

    let stats = collect_replies(&nats, &srv::stats(identity::SERVICE), 2, Duration::from_secs(2)).await?;
    assert_eq!(stats.len(), 2);
    let served: Vec<u64> = stats
        .iter()
        .map(|s| {
            s["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["subject"] == "cb.identity.jwks.get")
                .and_then(|e| e["num_requests"].as_u64())
                .unwrap_or(0)
        })
        .collect();
    assert!(served.iter().all(|n| *n > 0), "both replicas served JWKS requests: {served:?}");
    assert!(served.iter().sum::<u64>() >= 40, "{served:?}");

    // Errors count in the stats (with the last error visible to operators).
    login(&p, "ghost@example.com", PASSWORD).await?;
    let stats = collect_replies(&nats, &srv::stats(identity::SERVICE), 2, Duration::from_secs(2)).await?;
    let login_errors: u64 = stats
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["subject"] == "cb.identity.auth.login")
        .filter_map(|e| e["num_errors"].as_u64())
        .sum();
    assert_eq!(login_errors, 1);
    p.shutdown().await;
    Ok(())
}

pub async fn no_identity_replica_means_503_within_a_second(infra: Arc<Infra>) -> Result<()> {
    let mut p = Platform::builder().start(&infra).await?;
    let (_, token) = user(&p, "patient@example.com").await?;
    p.stop_replicas("identity").await;

    for (method, path, body) in [
        (Method::POST, "/v1/auth/login", Some(json!({"email": "patient@example.com", "password": PASSWORD}))),
        (Method::GET, "/v1/me", None),
        (Method::GET, "/.well-known/jwks.json", None),
    ] {
        let started = Instant::now();
        let reply = call(&p, method, path, Some(&token), body).await?;
        let elapsed = started.elapsed();
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {reply:?}");
        assert_eq!(reply.code(), "unavailable");
        assert!(reply.headers.contains_key("retry-after"));
        assert!(elapsed < Duration::from_secs(1), "{path} took {elapsed:?}");
    }
    let ready = call(&p, Method::GET, "/readyz", None, None).await?;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["checks"]["identity"], "unavailable");
    assert_eq!(ready.body["checks"]["nats"], "ok");

    // A replica coming back is served again.
    p.start_identity_replica();
    p.wait_identity_replicas(1).await?;
    assert_eq!(login(&p, "patient@example.com", PASSWORD).await?.status, StatusCode::OK);
    p.shutdown().await;
    Ok(())
}

/// The `registered` events in `EVT_IDENTITY` for `user_id`.
pub(crate) async fn registered_events(nats: &async_nats::Client, user_id: &str) -> Result<Vec<serde_json::Value>> {
    let js = async_nats::jetstream::new(nats.clone());
    let stream = js.get_stream(identity::EVENT_STREAM).await?;
    let state = stream.get_info().await?.state;
    let mut found = Vec::new();
    if state.messages == 0 {
        return Ok(found);
    }
    for seq in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(seq).await?;
        if message.subject.as_str() != identity::EVT_USER_REGISTERED {
            continue;
        }
        let mut event: serde_json::Value = serde_json::from_slice(&message.payload)?;
        if event["data"]["user_id"] == user_id {
            // Keep the message headers beside the envelope, for propagation checks.
            let headers: serde_json::Map<String, serde_json::Value> = message
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), serde_json::Value::from(v.first()?.as_str()))))
                .collect();
            event["_headers"] = serde_json::Value::Object(headers);
            found.push(event);
        }
    }
    Ok(found)
}

pub async fn registration_event_reaches_the_stream_once_across_a_relay_restart(infra: Arc<Infra>) -> Result<()> {
    let mut p = Platform::builder().start(&infra).await?;
    let nats = p.nats_client().await?;
    // The client's request id and trace travel gateway → identity → outbox → the event.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reg = p
        .http
        .post(p.url("/v1/auth/register"))
        .header("x-request-id", "signup-eve-1")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"email": "eve@example.com", "password": PASSWORD, "display_name": "Eve"}))
        .send()
        .await?;
    assert_eq!(reg.status(), StatusCode::CREATED);
    let user_id = reg.json::<serde_json::Value>().await?["id"].as_str().unwrap().to_owned();

    let events = eventually(Duration::from_secs(10), "the registered event in EVT_IDENTITY", || async {
        let events = registered_events(&nats, &user_id).await?;
        Ok((!events.is_empty()).then_some(events))
    })
    .await?;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["type"], "identity.user.registered");
    assert_eq!(event["data"]["email"], "eve@example.com");
    assert_eq!(event["actor"]["kind"], "anonymous");
    assert_eq!(event["_headers"]["cb-request-id"], "signup-eve-1");
    assert_eq!(event["_headers"]["Nats-Msg-Id"], event["id"]);
    let traceparent = event["_headers"]["traceparent"].as_str().unwrap_or_default();
    assert!(traceparent.starts_with(&format!("00-{trace_id}-")), "trace continues: {traceparent}");
    let event_id = event["id"].as_str().context("event id")?.to_owned();

    // Simulate a relay that died after JetStream stored the event but before it deleted its row:
    // stop every replica, put the row back as pending, start a fresh replica (whose relay
    // re-publishes it and then deletes it).
    p.stop_replicas("identity").await;
    let db = p.db().await?;
    let event_json = serde_json::to_vec(&{
        let mut e = event.clone();
        e.as_object_mut().context("envelope")?.remove("_headers");
        e
    })?;
    let restored = sqlx::query(
        "INSERT INTO cb_outbox (id, subject, payload, headers) VALUES ($1::uuid, $2, $3, jsonb_build_object('cb-request-id', 'signup-eve-1'))",
    )
    .bind(&event_id)
    .bind(identity::EVT_USER_REGISTERED)
    .bind(event_json)
    .execute(&db)
    .await?
    .rows_affected();
    assert_eq!(restored, 1);
    p.start_identity_replica();
    p.wait_identity_replicas(1).await?;
    eventually(Duration::from_secs(15), "the relay to re-publish the event and delete its row", || async {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM cb_outbox WHERE id = $1::uuid")
            .bind(&event_id)
            .fetch_one(&db)
            .await?;
        Ok((pending == 0).then_some(()))
    })
    .await?;
    let events = registered_events(&nats, &user_id).await?;
    assert_eq!(events.len(), 1, "JetStream dropped the re-published duplicate (Nats-Msg-Id)");
    assert_eq!(events[0]["id"], event_id.as_str());
    p.shutdown().await;
    Ok(())
}

pub async fn health_metrics_openapi_jwks_and_errors(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder().start(&infra).await?;
    let health = call(&p, Method::GET, "/healthz", None, None).await?;
    assert_eq!((health.status, &health.body["status"]), (StatusCode::OK, &json!("ok")));
    let ready = call(&p, Method::GET, "/readyz", None, None).await?;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    assert_eq!(ready.body["checks"], json!({"nats": "ok", "identity": "ok"}));

    let jwks = call(&p, Method::GET, "/.well-known/jwks.json", None, None).await?;
    let key = &jwks.body["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert!(key.get("d").is_none(), "no private key material");

    // Request ids: ours are echoed, otherwise one is made.
    let echoed = p.http.get(p.url("/healthz")).header("x-request-id", "trace-me-42").send().await?;
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
    let made = p.http.get(p.url("/healthz")).send().await?;
    assert!(uuid::Uuid::parse_str(made.headers()["x-request-id"].to_str()?).is_ok());

    let unknown = call(&p, Method::GET, "/v1/nope", None, None).await?;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "not_found"));

    login(&p, "nobody@example.com", PASSWORD).await?;
    let metrics = p.http.get(p.url("/metrics")).send().await?.text().await?;
    assert!(
        metrics.lines().any(|l| l.starts_with("http_requests_total{")
            && l.contains(r#"route="/v1/auth/login""#)
            && l.contains(r#"status="401""#)
            && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"http_request_duration_seconds_bucket{method="POST",route="/v1/auth/login",status="401",le="0.5"}"#
        ),
        "{metrics}"
    );

    let openapi = call(&p, Method::GET, "/openapi.json", None, None).await?;
    assert_eq!(openapi.status, StatusCode::OK);
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/me",
        "/v1/users/{user_id}/roles/{role}",
        "/.well-known/jwks.json",
    ] {
        assert!(openapi.body["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(openapi.body["components"]["schemas"].get("ErrorBody").is_some());
    let docs = p.http.get(p.url("/docs")).send().await?;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await?.contains("openapi"), "the docs page embeds the spec");
    p.shutdown().await;
    Ok(())
}

pub async fn nats_configurations_are_valid(infra: Arc<Infra>) -> Result<()> {
    let root = xtask::stack::workspace_root();
    for config in ["nats/dev.conf", "nats/cluster.conf"] {
        let mut cmd = std::process::Command::new(&infra.tools.nats_server);
        cmd.current_dir(root.join("nats"))
            .args(["-t", "-c"])
            .arg(root.join(config))
            .env("NATS_SERVER_NAME", "nats-1")
            .env("NATS_CLUSTER_PASSWORD", "cluster-secret");
        for user in xtask::stack::NATS_USERS {
            cmd.env(format!("NATS_{}_PASSWORD", user.to_uppercase()), format!("{user}-secret"));
        }
        let out = cmd.output()?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("is valid"), "{config}: {text}");
    }
    Ok(())
}

/// With the production NATS users and permissions (`nats/secure.conf`), every service does its
/// work through the gateway's front door: a newcomer's email and verification, a course from
/// draft to search, an enrolment and its notification, an announcement's fan-out, a video
/// uploaded, transcoded and played, a broken one parked in the DLQ. The gateway's user cannot
/// reach internal endpoints.
pub async fn every_service_works_within_its_nats_permissions(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder()
        .with(Service::Identity, 1)
        .with(Service::Catalog, 1)
        .with(Service::Search, 1)
        .with(Service::Enrollment, 1)
        .with(Service::Notifications, 1)
        .with(Service::Content, 1)
        .with(Service::Media, 1)
        .with(Service::Payments, 1)
        .with(Service::Assessment, 1)
        .secured()
        .start(&infra)
        .await?;
    let outcome = secured_journey(&infra, &p).await;
    // What the server refused, to name a missing permission when the journey fails.
    let log = std::fs::read_to_string(&p.nats.server.log).unwrap_or_default();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("Violation") && !l.contains("gateway-probe")).collect();
    p.shutdown().await;
    outcome.with_context(|| format!("permission violations: {refused:#?}"))?;
    assert!(refused.is_empty(), "permission violations: {refused:#?}");
    Ok(())
}

async fn secured_journey(infra: &Infra, p: &Platform) -> Result<()> {
    let wait = Duration::from_secs(30);

    let email = format!("secured-{}@example.com", uuid::Uuid::new_v4().simple());
    let (_, learner) = user(p, &email).await?;
    let welcome = eventually(wait, "the welcome email", || async {
        Ok(infra.smtp.messages()?.into_iter().find(|m| m.contains(&email)))
    })
    .await?;
    let text = welcome.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let start = text.find("verify-email?token=").context("a verification link")? + "verify-email?token=".len();
    let token: String =
        text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
    let verified = call(p, Method::GET, &format!("/v1/auth/verify-email?token={token}"), None, None).await?;
    assert_eq!(verified.status, StatusCode::OK, "{verified:?}");

    let (_, teacher) =
        crate::support::instructor(p, &format!("secured-teacher-{}@example.com", uuid::Uuid::new_v4().simple()))
            .await?;
    let course = crate::support::create_course(p, &teacher, "Least Privilege", json!({})).await?;
    let course = crate::support::publish_with_lessons(p, &teacher, &course, 1).await?;
    eventually(wait, "the course in search", || async {
        let r = call(p, Method::GET, "/v1/search/courses?q=privilege", None, None).await?;
        Ok((r.body["total"] == 1).then_some(()))
    })
    .await?;
    let enrolled =
        call(p, Method::POST, "/v1/enrollments", Some(&learner), Some(json!({"course_id": course["id"]}))).await?;
    assert_eq!(enrolled.status, StatusCode::CREATED, "{enrolled:?}");
    let path = format!("/v1/courses/{}/announcements", course["id"].as_str().context("id")?);
    let posted =
        call(p, Method::POST, &path, Some(&teacher), Some(json!({"title": "Welcome", "body": "Glad you are here."})))
            .await?;
    assert_eq!(posted.status, StatusCode::ACCEPTED, "{posted:?}");
    eventually(wait, "the enrolment and the announcement in the inbox", || async {
        let inbox = call(p, Method::GET, "/v1/notifications", Some(&learner), None).await?;
        let kinds: Vec<&str> = inbox.body["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n["kind"].as_str()).collect())
            .unwrap_or_default();
        Ok((kinds.contains(&"enrolled") && kinds.contains(&"announcement")).then_some(()))
    })
    .await?;

    // A video through content and media; a text file "video" fails into the DLQ.
    let course_id = course["id"].as_str().context("id")?;
    let clip = crate::content::clip(p, 2, false).await?;
    let mut assets = Vec::new();
    for bytes in [clip, b"not a video\n".repeat(50)] {
        assets.push(crate::content::upload_single_part(p, &teacher, course_id, &bytes).await?);
    }
    for (id, status) in assets.iter().zip(["ready", "failed"]) {
        eventually(Duration::from_secs(60), &format!("the asset to be {status}"), || async {
            let asset = call(p, Method::GET, &format!("/v1/assets/{id}"), Some(&teacher), None).await?;
            Ok((asset.body["status"] == status).then_some(()))
        })
        .await?;
    }
    let grant = call(p, Method::POST, &format!("/v1/assets/{}/playback", assets[0]), Some(&learner), None).await?;
    let master = call(p, Method::GET, grant.body["hls_url"].as_str().context("hls url")?, None, None).await?;
    assert_eq!(master.status, StatusCode::OK);

    // A quiz: authored (catalog checks the author), started by the enrolled learner (enrollment
    // checks), submitted and graded by the grading queue group.
    let (_, quiz) = crate::assessment::create_quiz(p, &teacher, course_id, json!({})).await?;
    let attempt = crate::assessment::start(p, &learner, quiz["id"].as_str().context("quiz id")?).await?;
    assert_eq!(attempt.status, StatusCode::OK, "{attempt:?}");
    let attempt_id = attempt.body["id"].as_str().context("attempt id")?;
    call(p, Method::POST, &format!("/v1/attempts/{attempt_id}/submit"), Some(&learner), None).await?;
    crate::assessment::wait_graded(p, &learner, attempt_id).await?;
    // An assignment handed in with text and a file the learner uploaded (content checks the
    // enrolment; assessment asks content about the file), checked by the similarity job.
    let task =
        crate::assignments::assignment(p, &teacher, course_id, json!({"submission_type": "text_or_file"})).await?;
    let task_id = task["id"].as_str().context("assignment id")?;
    let file = crate::assignments::upload(p, &learner, course_id, b"my notes").await?;
    let handed =
        crate::assignments::hand_in(p, &learner, task_id, json!({"text": "My answer.", "asset_id": file})).await?;
    assert_eq!(handed.status, StatusCode::OK, "{handed:?}");
    eventually(wait, "the similarity check", || async {
        let r = call(p, Method::GET, &format!("/v1/assignments/{task_id}/similarity"), Some(&teacher), None).await?;
        Ok((r.body["checked"] == 1).then_some(()))
    })
    .await?;

    // A paid course bought (Stripe webhook → gateway → IN_STRIPE → payments → enrollment →
    // notifications' receipt), then refunded (→ enrollment revokes).
    let paid = crate::payments::paid_course(p, &teacher, "Paid Privilege").await?;
    let paid_id = paid["id"].as_str().context("id")?;
    let order = crate::payments::buy(p, &learner, paid_id, "secured-buy").await?;
    let order_id = order["id"].as_str().context("order id")?;
    eventually(wait, "the receipt in the inbox", || async {
        let inbox = call(p, Method::GET, "/v1/notifications", Some(&learner), None).await?;
        let found = inbox.body["items"].as_array().is_some_and(|a| a.iter().any(|n| n["kind"] == "receipt"));
        Ok(found.then_some(()))
    })
    .await?;
    let refunded = crate::payments::refund(p, &learner, order_id, "secured-refund", json!({})).await?;
    assert_eq!(refunded.body["status"], "refunded", "{refunded:?}");
    eventually(wait, "the paid enrolment revoked", || async {
        let mine = crate::payments::my_enrollments(p, &learner).await?;
        Ok((!mine.iter().any(|e| e["course_id"] == paid_id)).then_some(()))
    })
    .await?;

    // The gateway's NATS user is refused internal endpoints (the server drops the request).
    let gateway = coursebus_bus::connect(&p.nats.url_as("gateway"), "gateway-probe", Duration::from_secs(5)).await?;
    // Anonymous clients and wrong passwords are refused.
    assert!(async_nats::connect(p.nats.url()).await.is_err(), "anonymous connection accepted");
    let wrong = p.nats.url_as("gateway").replace("gateway:", "gateway:x");
    assert!(coursebus_bus::connect(&wrong, "intruder", Duration::ZERO).await.is_err(), "wrong password accepted");
    let asked = tokio::time::timeout(
        Duration::from_secs(2),
        gateway.request(identity::INTERNAL_VERIFICATION_TOKEN.subject(), b"{}".as_slice().into()),
    )
    .await;
    assert!(!matches!(asked, Ok(Ok(_))), "the gateway reached an internal endpoint: {asked:?}");
    let asked = tokio::time::timeout(
        Duration::from_secs(2),
        gateway.request(coursebus_contracts::subjects::content::INTERNAL_PROGRESS.subject(), b"{}".as_slice().into()),
    )
    .await;
    assert!(!matches!(asked, Ok(Ok(_))), "the gateway reached content's internal endpoint: {asked:?}");
    Ok(())
}

/// A request's trace continues across its event: the registration's `traceparent` reaches the
/// outbox, the event's headers, and the span in which notifications' consumer handled the event
/// in another service.
pub async fn a_trace_continues_across_an_event(infra: Arc<Infra>) -> Result<()> {
    use coursebus_contracts::subjects::notifications as notify;

    let p = Platform::builder().with(Service::Notifications, 1).start(&infra).await?;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let email = format!("traced-{}@example.com", uuid::Uuid::new_v4().simple());
    let reply = p
        .http
        .post(p.url("/v1/auth/register"))
        .header("traceparent", &traceparent)
        .json(&serde_json::json!({"email": email, "password": crate::support::PASSWORD, "display_name": "Traced"}))
        .send()
        .await?;
    anyhow::ensure!(reply.status().is_success(), "registration failed: {}", reply.status());
    let handled = coursebus_tests::eventually(Duration::from_secs(15), "the consumer span of the event", || {
        let trace_id = trace_id.clone();
        async move {
            Ok(coursebus_tests::spans::find("consume", |f| {
                f.get("trace_id") == Some(&trace_id)
                    && f.get("consumer").map(String::as_str) == Some(notify::IDENTITY_CONSUMER)
            }))
        }
    })
    .await?;
    assert_eq!(handled.fields.get("stream").map(String::as_str), Some("EVT_IDENTITY"), "{handled:?}");
    assert!(handled.fields.get("seq").is_some_and(|s| s != "0"), "{handled:?}");
    // The identity replica that served the request logged the same trace.
    assert!(
        coursebus_tests::spans::find("rpc", |f| f.get("trace_id") == Some(&trace_id)).is_some(),
        "the request's own span carries the trace"
    );
    p.shutdown().await;
    Ok(())
}
