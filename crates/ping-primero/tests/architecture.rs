//! The invariants of ARCHITECTURE.md, checked on the source tree: every Rust file starts with
//! a `//!` module doc; `mapping` does no IO and reads no clock; only `ledger` knows SQL; the
//! simulators and the clients share no code (no dependency either way).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `[dependencies]` section of a crate's Cargo.toml (dev-dependencies excluded).
fn dependencies(krate: &str) -> String {
    let text =
        std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let start = text
        .find("[dependencies]")
        .map(|i| i + "[dependencies]".len())
        .unwrap_or(text.len());
    let rest = &text[start..];
    let end = rest.find("\n[").unwrap_or(rest.len());
    rest[..end].to_owned()
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    assert!(files.len() > 40, "found the sources");
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! doc: {missing:?}"
    );
}

#[test]
fn mapping_does_no_io_and_reads_no_clock() {
    let mut files = Vec::new();
    rust_files(&root().join("crates/mapping/src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for forbidden in [
            "Utc::now",
            "Local::now",
            "SystemTime",
            "Instant::now",
            "std::fs",
            "std::net",
            "tokio::",
            "reqwest",
            "sqlx",
            ".send()",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                f.display()
            );
        }
    }
    let deps = dependencies("mapping");
    for forbidden in ["tokio", "reqwest", "sqlx", "axum"] {
        assert!(!deps.contains(forbidden), "mapping depends on {forbidden}");
    }
}

#[test]
fn only_the_ledger_knows_sql() {
    for krate in [
        "config",
        "mapping",
        "ping",
        "primero",
        "flows",
        "sim-ping",
        "sim-primero",
        "web",
        "http",
        "ping-primero",
    ] {
        assert!(
            !dependencies(krate).contains("sqlx"),
            "{krate} depends on sqlx"
        );
    }
    assert!(dependencies("ledger").contains("sqlx"));
}

#[test]
fn simulators_and_clients_share_no_code() {
    for sim in ["sim-ping", "sim-primero"] {
        let deps = dependencies(sim);
        assert!(
            !deps.contains("pp-"),
            "{sim} depends on a workspace crate: {deps}"
        );
    }
    for client in ["ping", "primero", "http"] {
        let deps = dependencies(client);
        assert!(!deps.contains("pp-sim"), "{client} depends on a simulator");
    }
}
