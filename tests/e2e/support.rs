//! Small HTTP helpers for the tests.

use anyhow::{Context, Result};
use coursebus_tests::Platform;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

/// A reply: status, headers, JSON body (`null` when empty or not JSON).
#[derive(Debug)]
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
