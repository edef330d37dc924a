//! `cargo xtask up`: the whole platform on this machine, with demo data.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use xtask::process::{Server, die_with_parent, spawn};
use xtask::stack::{Durability, Nats, Postgres, Tools, workspace_root};

const NATS_PORT: u16 = 4222;
const NATS_MONITOR_PORT: u16 = 8222;
const PG_PORT: u16 = 54329;
const GATEWAY: &str = "127.0.0.1:8080";
const ADMIN_EMAIL: &str = "admin@coursebus.local";
const DEMO_PASSWORD: &str = "coursebus-demo-2026";

fn port(var: &str, default: u16) -> Result<u16> {
    match std::env::var(var) {
        Ok(v) => v.parse().with_context(|| format!("{var} must be a port number")),
        Err(_) => Ok(default),
    }
}

pub fn run() -> Result<ExitCode> {
    let root = workspace_root();
    let tools = Tools::ensure(&root)?;
    eprintln!("xtask: building the gateway and the identity worker");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-p", "coursebus-gateway", "-p", "coursebus-worker-identity"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let bin =
        std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target")).join("debug");

    let data = root.join(".stack/data");
    let logs = root.join(".stack/logs");
    std::fs::create_dir_all(&logs)?;
    let nats = Nats::start(
        &tools,
        &data.join("nats"),
        port("CB_UP_NATS_PORT", NATS_PORT)?,
        port("CB_UP_NATS_MONITOR_PORT", NATS_MONITOR_PORT)?,
        &logs.join("nats.log"),
    )
    .context("starting nats-server (is another one using the port? set CB_UP_NATS_PORT)")?;
    let pg = Postgres::start(
        &tools,
        &data.join("pg"),
        port("CB_UP_PG_PORT", PG_PORT)?,
        Durability::Durable,
        &logs.join("postgres.log"),
    )
    .context("starting PostgreSQL (set CB_UP_PG_PORT to use another port)")?;
    pg.create_database("identity")?;
    let gateway_addr = std::env::var("CB_UP_GATEWAY").unwrap_or_else(|_| GATEWAY.into());

    let mut workers = Vec::new();
    for replica in 1..=2 {
        let mut cmd = Command::new(bin.join("coursebus-worker-identity"));
        cmd.env("CB_NATS_URL", nats.url())
            .env("CB_IDENTITY_DATABASE_URL", pg.url("identity"))
            .env("CB_IDENTITY_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("CB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD", DEMO_PASSWORD);
        workers.push(start(cmd, &format!("identity-{replica}"), &logs)?);
    }
    let mut cmd = Command::new(bin.join("coursebus-gateway"));
    cmd.env("CB_NATS_URL", nats.url()).env("CB_GATEWAY_LISTEN", &gateway_addr);
    workers.push(start(cmd, "gateway", &logs)?);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let base = format!("http://{gateway_addr}");
    runtime.block_on(async {
        wait_ready(&base, &mut workers).await?;
        seed(&base).await
    })?;

    println!(
        "\ncoursebus is up.\n\
         \n  REST API      {base}/v1\
         \n  API docs      {base}/docs   (OpenAPI: {base}/openapi.json)\
         \n  Metrics       {base}/metrics\
         \n  Health        {base}/healthz  {base}/readyz\
         \n  NATS          {}   (monitoring: http://127.0.0.1:{}/)\
         \n  PostgreSQL    {}\
         \n  Logs          {}\
         \n\n  Demo users (password {DEMO_PASSWORD}):\
         \n    {ADMIN_EMAIL}  admin\
         \n    ada@coursebus.local    instructor\
         \n    sam@coursebus.local    student\
         \n\nCtrl-C stops everything; data stays in {}.",
        nats.url(),
        nats.monitor_port,
        pg.url("identity"),
        logs.display(),
        data.display(),
    );

    let outcome = runtime.block_on(async {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            for w in &mut workers {
                if let Some(status) = w.exited() {
                    bail!("{} exited ({status}); last lines of {}:\n{}", w.name, w.log.display(), w.log_tail(20));
                }
            }
        }
    });
    eprintln!("\nxtask: stopping");
    for mut w in workers.into_iter().rev() {
        w.stop(Duration::from_secs(10));
    }
    drop(nats);
    drop(pg);
    outcome?;
    Ok(ExitCode::SUCCESS)
}

fn start(mut cmd: Command, name: &str, logs: &Path) -> Result<Server> {
    let log = logs.join(format!("{name}.log"));
    let file = std::fs::File::create(&log)?;
    cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
    die_with_parent(&mut cmd);
    let child = spawn(cmd).with_context(|| format!("starting {name}"))?;
    Ok(Server::new(name, child, log, libc::SIGTERM))
}

async fn wait_ready(base: &str, workers: &mut [Server]) -> Result<()> {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        for w in workers.iter_mut() {
            if let Some(status) = w.exited() {
                bail!("{} exited ({status}):\n{}", w.name, w.log_tail(20));
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the gateway did not become ready within 60 s; see .stack/logs");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Demo users; a second `up` finds them already there.
async fn seed(base: &str) -> Result<()> {
    let http = reqwest::Client::new();
    for (email, name) in [("ada@coursebus.local", "Ada Lovelace"), ("sam@coursebus.local", "Sam Student")] {
        let resp = http
            .post(format!("{base}/v1/auth/register"))
            .json(&json!({ "email": email, "password": DEMO_PASSWORD, "display_name": name }))
            .send()
            .await?;
        if !(resp.status().is_success() || resp.status() == reqwest::StatusCode::CONFLICT) {
            bail!("seeding {email}: {} {}", resp.status(), resp.text().await.unwrap_or_default());
        }
    }
    let token = |email: &'static str| {
        let http = http.clone();
        async move {
            let resp = http
                .post(format!("{base}/v1/auth/login"))
                .json(&json!({ "email": email, "password": DEMO_PASSWORD }))
                .send()
                .await?;
            let body: serde_json::Value = resp.json().await?;
            body["access_token"].as_str().map(str::to_owned).with_context(|| format!("login of {email}: {body}"))
        }
    };
    let admin = token(ADMIN_EMAIL).await?;
    let ada = token("ada@coursebus.local").await?;
    let me: serde_json::Value = http.get(format!("{base}/v1/me")).bearer_auth(&ada).send().await?.json().await?;
    let ada_id = me["id"].as_str().context("ada's id")?;
    let resp = http.put(format!("{base}/v1/users/{ada_id}/roles/instructor")).bearer_auth(&admin).send().await?;
    if !resp.status().is_success() {
        bail!("granting instructor to ada: {}", resp.status());
    }
    Ok(())
}
