//! The suite catches a broken server: each mutant is generated/sqlite-http with one line changed
//! (renamed so it shares the build cache), and the conformance checklist must fail against it.

use resonate_tests::checklist;
use resonate_tests::conform::{report, run_cases};
use resonate_tests::server::{repo_root, Server};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One deliberate bug: in `file`, `from` becomes `to`.
struct Mutant {
    name: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
}

const MUTANTS: [Mutant; 2] = [
    Mutant {
        name: "version-not-bumped-on-acquire",
        file: "src/machine.rs",
        from: "t.version += 1;",
        to: "t.version += 0;",
    },
    Mutant {
        name: "settled-promise-overwritten",
        file: "src/machine.rs",
        from: "let p = if p.state == PromiseState::Pending {",
        to: "let p = if p.state != PromiseState::Rejected {",
    },
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

fn replace_once(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{}: `{from}` must occur exactly once", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Builds the mutant crate and returns its binary.
fn build(m: &Mutant) -> PathBuf {
    let root = repo_root();
    let dir = std::env::temp_dir().join(format!("resonate-mutant-{}-{}", m.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root.join("generated/sqlite-http"), &dir);
    replace_once(&dir.join(m.file), m.from, m.to);
    let package = format!("resonate-mutant-{}", m.name);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap().replace("resonate-sqlite-http", &package);
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(|d| root.join(d)).unwrap_or_else(|| root.join("target"));
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "-q", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "mutant {} does not build:\n{}", m.name, String::from_utf8_lossy(&out.stderr));
    target.join("debug").join(package)
}

#[test]
fn every_mutant_is_caught_by_the_checklist() {
    for m in &MUTANTS {
        let bin = build(m);
        let server = Server::start(&bin, &["--debug"]);
        let plain = Server::start(&bin, &[]);
        let outcomes = run_cases("checklist", &server.endpoint(), Some(&plain.endpoint()), &checklist::cases());
        let caught: Vec<&str> =
            outcomes.iter().filter(|o| o.failure.is_some()).map(|o| o.case.as_str()).collect();
        println!("mutant {}: caught by {caught:?}\n{}", m.name, report(&outcomes));
        assert!(!caught.is_empty(), "mutant {} passed the whole checklist", m.name);
    }
}
