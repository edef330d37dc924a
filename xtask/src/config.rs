//! `cargo xtask config`: read and write the central configuration (the `cb_config` NATS KV
//! bucket) of a running platform. Values are checked with the same parsers the workers use
//! (`coursebus_contracts::settings`) before anything is written, so a typo never reaches a
//! replica. NATS from `CB_NATS_URL` (default `nats://127.0.0.1:4222`, where `cargo xtask up`
//! listens).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use coursebus_contracts::settings::{self, Key};
use coursebus_contracts::subjects::config::BUCKET;

const USAGE: &str = "usage: cargo xtask config <list|get KEY|set KEY VALUE|unset KEY>";

pub fn run(args: &[String]) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["list"] | [] => list().await,
            ["get", key] => get(known(key)?).await,
            ["set", key, value] => set(known(key)?, value).await,
            ["unset", key] => unset(known(key)?).await,
            _ => {
                eprintln!("{USAGE}");
                Ok(ExitCode::from(2))
            }
        }
    })
}

fn known(name: &str) -> Result<&'static Key> {
    settings::find(name).with_context(|| {
        let names: Vec<&str> = settings::ALL.iter().map(|k| k.name).collect();
        format!("unknown key {name:?}; the keys are: {}", names.join(", "))
    })
}

async fn bucket() -> Result<async_nats::jetstream::kv::Store> {
    let url = coursebus_bus::runtime::env("CB_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let client = coursebus_bus::connect(&url, "xtask-config", Duration::from_secs(5))
        .await
        .with_context(|| format!("connecting to NATS (CB_NATS_URL={url:?}); is the platform up?"))?;
    let js = async_nats::jetstream::new(client);
    match js.get_key_value(BUCKET).await {
        Ok(store) => Ok(store),
        Err(err) => bail!("bucket {BUCKET} not found ({err}): it is created by the first worker that reads it"),
    }
}

async fn current(store: &async_nats::jetstream::kv::Store, key: &Key) -> Result<Option<String>> {
    let value = store.get(key.name).await.with_context(|| format!("reading {}", key.name))?;
    Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

async fn list() -> Result<ExitCode> {
    let store = bucket().await?;
    for key in settings::ALL {
        let value = current(&store, key).await?.unwrap_or_else(|| "(unset)".into());
        let env = key.env.map(|e| format!(" [env {e}]")).unwrap_or_default();
        println!("{:<42} {:<10} {}{env}", key.name, value, key.doc);
    }
    Ok(ExitCode::SUCCESS)
}

async fn get(key: &Key) -> Result<ExitCode> {
    match current(&bucket().await?, key).await? {
        Some(value) => {
            println!("{value}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("{} is not set", key.name);
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn set(key: &Key, value: &str) -> Result<ExitCode> {
    if let Err(reason) = key.validate(value) {
        eprintln!("refused: {reason}");
        return Ok(ExitCode::from(2));
    }
    let store = bucket().await?;
    store.put(key.name, value.trim().to_owned().into()).await.with_context(|| format!("writing {}", key.name))?;
    println!("{} = {}", key.name, value.trim());
    Ok(ExitCode::SUCCESS)
}

async fn unset(key: &Key) -> Result<ExitCode> {
    bucket().await?.delete(key.name).await.with_context(|| format!("deleting {}", key.name))?;
    println!("{} unset: replicas go back to their configured value", key.name);
    Ok(ExitCode::SUCCESS)
}
