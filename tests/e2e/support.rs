//! Small HTTP helpers for the tests.

use anyhow::{Context, Result};
use coursebus_tests::Platform;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

/// A reply: status, headers, JSON body (`null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The error code of an error reply.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("<none>")
    }
}

pub async fn call(p: &Platform, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Result<Reply> {
    let mut req = p.http.request(method, p.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.with_context(|| format!("calling {path}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Reply { status, headers, body })
}

pub async fn post(p: &Platform, path: &str, body: Value) -> Result<Reply> {
    call(p, Method::POST, path, None, Some(body)).await
}

pub async fn register(p: &Platform, email: &str, password: &str, name: &str) -> Result<Reply> {
    post(p, "/v1/auth/register", json!({ "email": email, "password": password, "display_name": name })).await
}

pub async fn login(p: &Platform, email: &str, password: &str) -> Result<Reply> {
    post(p, "/v1/auth/login", json!({ "email": email, "password": password })).await
}

/// Log in and return the access token (panics on failure: a precondition of the caller).
pub async fn access_token(p: &Platform, email: &str, password: &str) -> Result<String> {
    let reply = login(p, email, password).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "login of {email} failed: {reply:?}");
    Ok(reply.body["access_token"].as_str().context("access_token")?.to_owned())
}

/// Register a user and return (user id, access token).
pub async fn user(p: &Platform, email: &str) -> Result<(String, String)> {
    let reply = register(p, email, PASSWORD, "Test User").await?;
    anyhow::ensure!(reply.status == StatusCode::CREATED, "registration of {email} failed: {reply:?}");
    let id = reply.body["id"].as_str().context("id")?.to_owned();
    Ok((id, access_token(p, email, PASSWORD).await?))
}

pub const PASSWORD: &str = "a perfectly fine passphrase";

/// `PUT` (grant) or `DELETE` (revoke) `/v1/users/{user}/roles/{role}` as the holder of `token`.
pub async fn role(p: &Platform, method: Method, user: &str, role: &str, token: &str) -> Result<Reply> {
    call(p, method, &format!("/v1/users/{user}/roles/{role}"), Some(token), None).await
}

/// Register a user, have the bootstrap admin grant `instructor`, and return (id, fresh token).
pub async fn instructor(p: &Platform, email: &str) -> Result<(String, String)> {
    let (id, _) = user(p, email).await?;
    let admin = access_token(p, coursebus_tests::ADMIN_EMAIL, coursebus_tests::ADMIN_PASSWORD).await?;
    let granted = role(p, Method::PUT, &id, "instructor", &admin).await?;
    anyhow::ensure!(granted.status.is_success(), "granting instructor to {email} failed: {granted:?}");
    Ok((id, access_token(p, email, PASSWORD).await?))
}

/// Create a course as the holder of `token` from a few fields (defaults for the rest); panics
/// unless it was created. Returns the course JSON.
pub async fn create_course(p: &Platform, token: &str, title: &str, extra: Value) -> Result<Value> {
    let mut body = json!({
        "title": title,
        "summary": format!("A summary of {title}"),
        "language": "en",
        "level": "beginner",
        "price": {"amount_minor": 0, "currency": "EUR"},
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let reply = call(p, Method::POST, "/v1/courses", Some(token), Some(body)).await?;
    anyhow::ensure!(reply.status == StatusCode::CREATED, "creating {title} failed: {reply:?}");
    Ok(reply.body)
}

/// Replace the outline of `course` (as loaded, with its `version`) and publish it; returns the
/// course as the publish answered (module and lesson ids included).
pub async fn publish_outline(p: &Platform, token: &str, course: &Value, modules: Value) -> Result<Value> {
    let id = course["id"].as_str().context("course id")?;
    let outlined = call(
        p,
        Method::PUT,
        &format!("/v1/courses/{id}/outline"),
        Some(token),
        Some(json!({"version": course["version"], "modules": modules})),
    )
    .await?;
    anyhow::ensure!(outlined.status == StatusCode::OK, "outline of {id} failed: {outlined:?}");
    let published = call(
        p,
        Method::POST,
        &format!("/v1/courses/{id}/publish"),
        Some(token),
        Some(json!({"version": outlined.body["version"]})),
    )
    .await?;
    anyhow::ensure!(published.status == StatusCode::OK, "publishing {id} failed: {published:?}");
    Ok(published.body)
}

/// Give a course a one-module outline of `lessons` required video lessons and publish it.
pub async fn publish_with_lessons(p: &Platform, token: &str, course: &Value, lessons: usize) -> Result<Value> {
    let lessons: Vec<Value> = (1..=lessons).map(|i| json!({"title": format!("Lesson {i}"), "kind": "video"})).collect();
    publish_outline(p, token, course, json!([{"title": "Module 1", "lessons": lessons}])).await
}

/// Every message of `stream` whose subject is `subject`, as (envelope JSON, `Nats-Msg-Id`).
pub async fn stream_events(nats: &async_nats::Client, stream: &str, subject: &str) -> Result<Vec<(Value, String)>> {
    let js = async_nats::jetstream::new(nats.clone());
    let stream = js.get_stream(stream).await?;
    let state = stream.get_info().await?.state;
    let mut found = Vec::new();
    if state.messages == 0 {
        return Ok(found);
    }
    for seq in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(seq).await?;
        if message.subject.as_str() != subject {
            continue;
        }
        let msg_id = message.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()).unwrap_or_default();
        found.push((serde_json::from_slice(&message.payload)?, msg_id));
    }
    Ok(found)
}

/// The bootstrap admin's credentials.
pub const ADMIN: (&str, &str) = (coursebus_tests::ADMIN_EMAIL, coursebus_tests::ADMIN_PASSWORD);
