//! `cargo xtask <command>`: dev automation for coursebus.
//!
//! - `up`: install what is missing, start NATS, PostgreSQL, the identity worker (2 replicas) and
//!   the gateway with demo data; Ctrl-C stops everything and keeps the data in `.stack/data`.
//! - `test`: install what is missing, then run every test against real servers.
//! - `stack`: only install the pinned servers (what CI caches).

mod up;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use xtask::stack::{Tools, workspace_root};

const USAGE: &str = "usage: cargo xtask <up|test|stack> [args]\n\
  up            run the platform locally with demo data (Ctrl-C stops it, data is kept)\n\
  test [args]   run the whole test suite against real servers (args go to cargo test)\n\
  stack         install the pinned servers into .stack/ and print where they are";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up::run(),
        Some("test") => test(&args[1..]),
        Some("stack") => stack(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn stack() -> Result<ExitCode> {
    let tools = Tools::ensure(&workspace_root())?;
    println!("nats-server: {}", tools.nats_server.display());
    println!("postgresql:  {}", tools.pg_bin.display());
    Ok(ExitCode::SUCCESS)
}

/// Every test of the workspace: unit tests of each crate and the end-to-end suite.
fn test(extra: &[String]) -> Result<ExitCode> {
    let root = workspace_root();
    Tools::ensure(&root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["test", "--workspace", "--all-targets"])
        .args(extra)
        .env("COURSEBUS_ROOT", &root)
        .status()
        .context("running cargo test")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
