//! End-to-end tests: the real stack (nats-server with JetStream, PostgreSQL) started by the
//! harness, the platform driven over HTTP through the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod assessment;
mod assignments;
mod auth;
mod catalog;
mod completion;
mod content;
mod enrollment;
mod journey;
mod notifications;
mod operations;
mod payments;
mod search;
mod support;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use coursebus_tests::Infra;
use libtest_mimic::{Arguments, Failed, Trial};

const TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The shared servers, or why they did not start.
type InfraSlot = Result<Arc<Infra>, String>;

type TestFn = fn(Arc<Infra>) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

macro_rules! tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        vec![$((concat!(stringify!($module), "::", stringify!($name)), (|infra| Box::pin($module::$name(infra))) as TestFn)),*]
    };
}

/// Every test: each `pub async fn <name>(infra: Arc<Infra>)` of a module here, found by
/// `tests/build.rs`.
fn all() -> Vec<(&'static str, TestFn)> {
    include!(concat!(env!("OUT_DIR"), "/e2e_tests.rs"))
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::{EnvFilter, Layer as _};
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(filter))
            .with(coursebus_tests::spans::layer())
            .try_init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot build a runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The servers start on first use, so `--list` starts nothing.
    let infra: Arc<Mutex<Option<InfraSlot>>> = Arc::new(Mutex::new(None));
    let trials = all()
        .into_iter()
        .map(|(name, test)| {
            let handle = runtime.handle().clone();
            let infra = infra.clone();
            Trial::test(name, move || {
                let infra = {
                    let mut slot = infra.lock().map_err(|_| Failed::from("infra lock poisoned"))?;
                    slot.get_or_insert_with(|| Infra::start().map(Arc::new).map_err(|e| format!("{e:#}"))).clone()
                };
                let infra = infra.map_err(|e| Failed::from(format!("the test stack did not start: {e}")))?;
                // A hung test fails instead of hanging the run.
                match handle.block_on(async { tokio::time::timeout(TEST_TIMEOUT, test(infra)).await }) {
                    Ok(result) => result.map_err(|e| Failed::from(format!("{e:#}"))),
                    Err(_) => Err(Failed::from(format!("timed out after {TEST_TIMEOUT:?}"))),
                }
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop PostgreSQL (and with it everything) before reporting.
    if let Ok(mut slot) = infra.lock() {
        slot.take();
    }
    drop(runtime);
    conclusion.exit_code()
}
