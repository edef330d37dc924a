//! `cargo xtask <command>`: dev automation for coursebus.
//!
//! - `up`: install what is missing, start NATS, PostgreSQL, the identity worker (2 replicas) and
//!   the gateway with demo data; Ctrl-C stops everything and keeps the data in `.stack/data`.
//! - `test`: install what is missing, then run every test against real servers.
//! - `bench`: measure the platform against a monolith baseline and the raw ceilings.
//! - `stack`: only install the pinned servers (what CI caches).
//! - `config`: read and write the central configuration (`cb_config`) of a running platform.

mod config;
mod up;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use xtask::stack::{Tools, workspace_root};

const USAGE: &str = "usage: cargo xtask <up|test|bench|stack|config> [args]\n\
  up            run the platform locally with demo data (Ctrl-C stops it, data is kept)\n\
  test [args]   run the whole test suite against real servers (args go to cargo test)\n\
  bench [opts]  measure the platform against a monolith and the raw ceilings (--runs N, --seconds S, --quick, --only http|notifications|media|quiz, --learners N, --think-ms N)\n\
  stack         install the pinned servers into .stack/ and print where they are\n\
  config ...    list | get KEY | set KEY VALUE | unset KEY: the central configuration of a running platform";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up::run(),
        Some("test") => test(&args[1..]),
        Some("stack") => stack(),
        Some("config") => config::run(&args[1..]),
        Some("bench") => xtask::bench::run(&args[1..]),
        // The bench's baseline servers, started by `bench` itself.
        Some("__bench-serve") => xtask::bench::serve(&args[1..]).map(|()| ExitCode::SUCCESS),
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
    println!("ffmpeg:      {}", tools.ffmpeg.display());
    Ok(ExitCode::SUCCESS)
}

/// Every test of the workspace: unit tests of each crate and the end-to-end suite. Cargo's
/// output passes through; a closing line sums up every test binary.
fn test(extra: &[String]) -> Result<ExitCode> {
    use std::io::BufRead;
    let root = workspace_root();
    let tools = Tools::ensure(&root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .current_dir(&root)
        .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .args(extra)
        .env("COURSEBUS_ROOT", &root)
        // Unit tests that run ffmpeg for real (media) find it here.
        .env("CB_FFMPEG", &tools.ffmpeg)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some((p, f)) = parse_result(&line) {
                passed += p;
                failed += f;
            }
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed");
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `test result: ok. 11 passed; 0 failed; ...` → (11, 0).
fn parse_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';').find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(word)?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((count("passed")?, count("failed")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cargo_result_lines_are_summed() {
        assert_eq!(super::parse_result("test result: ok. 11 passed; 0 failed; 0 ignored; 0 measured"), Some((11, 0)));
        assert_eq!(super::parse_result("test result: FAILED. 3 passed; 2 failed; 0 ignored"), Some((3, 2)));
        assert_eq!(super::parse_result("running 3 tests"), None);
    }
}
