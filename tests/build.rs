//! Discovers the end-to-end tests: every `pub async fn <name>(infra: Arc<Infra>)` at the start of
//! a line in `e2e/<module>.rs` is a test named `<module>::<name>`. The list is written to
//! `$OUT_DIR/e2e_tests.rs`, which `e2e/main.rs` includes, so a new test needs no registration.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new("e2e");
    println!("cargo:rerun-if-changed=e2e");
    let mut modules: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    modules.retain(|p| p.extension().is_some_and(|e| e == "rs"));
    modules.sort();
    let mut list = String::from("tests![\n");
    for path in modules {
        let Some(module) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        if module == "main" {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let Ok(source) = std::fs::read_to_string(&path) else { continue };
        for line in source.lines() {
            let Some(rest) = line.strip_prefix("pub async fn ") else { continue };
            let Some((name, args)) = rest.split_once('(') else { continue };
            if args.starts_with("infra: Arc<Infra>)") {
                let _ = writeln!(list, "    {module}::{name},");
            }
        }
    }
    list.push_str("]\n");
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    if let Err(err) = std::fs::write(Path::new(&out).join("e2e_tests.rs"), list) {
        panic!("cannot write the e2e test list: {err}");
    }
}
