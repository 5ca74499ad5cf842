//! resonate-gen: renders single-purpose Resonate servers from `spec/` (the protocol as data) and
//! `targets/` (which store and transport), through the askama templates in `templates/`.
//!
//! Generation is pure: [`render::render`] maps a spec and a manifest to files in memory. Reading
//! inputs, writing `generated/` and comparing it ([`check`]) are the only I/O.

pub mod auth;
pub mod conform;
pub mod ctl;
mod macros;
pub mod manifest;
pub mod render;
pub mod spec;

use anyhow::{Context, Result};
use render::File;
use std::path::{Path, PathBuf};

/// Files in a generated crate that are not rendered but belong there.
const UNRENDERED: &[&str] = &["Cargo.lock"];

/// The repository layout the generator works in.
pub struct Repo {
    pub root: PathBuf,
}

impl Repo {
    /// Finds the repository root: the nearest ancestor of `start` that has `spec/` and `targets/`.
    pub fn find(start: &Path) -> Result<Repo> {
        let mut dir = start.canonicalize()?;
        loop {
            if dir.join("spec").is_dir() && dir.join("targets").is_dir() {
                return Ok(Repo { root: dir });
            }
            if !dir.pop() {
                anyhow::bail!(
                    "no resonate-gen repository here: no ancestor of {} has spec/ and targets/",
                    start.display()
                );
            }
        }
    }

    pub fn spec(&self) -> Result<spec::Spec> {
        spec::Spec::load(&self.root.join("spec"))
    }

    pub fn targets_dir(&self) -> PathBuf {
        self.root.join("targets")
    }

    pub fn generated_dir(&self, target: &str) -> PathBuf {
        self.root.join("generated").join(target)
    }
}

/// Writes rendered files under `out`, creating directories; leaves other files alone.
pub fn write(out: &Path, files: &[File]) -> Result<()> {
    for f in files {
        let path = out.join(&f.path);
        let dir = path.parent().expect("files live in a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the directory {}", dir.display()))?;
        std::fs::write(&path, &f.contents).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// One difference between a fresh render and what is on disk.
#[derive(Debug)]
pub enum Drift {
    /// The file differs; the unified diff goes from disk to render.
    Changed { path: PathBuf, diff: String },
    Missing { path: PathBuf },
    /// A file on disk that no template renders.
    Extra { path: PathBuf },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Changed { path, diff } => write!(f, "{} differs from a fresh render:\n{diff}", path.display()),
            Drift::Missing { path } => write!(f, "{} is missing", path.display()),
            Drift::Extra { path } => write!(f, "{} is not rendered by any template (remove it)", path.display()),
        }
    }
}

/// Compares rendered files with the directory `out`.
pub fn check(out: &Path, files: &[File]) -> Result<Vec<Drift>> {
    let mut drift = Vec::new();
    for f in files {
        let path = out.join(&f.path);
        match std::fs::read_to_string(&path) {
            Ok(disk) if disk == f.contents => {}
            Ok(disk) => {
                let diff = similar::TextDiff::from_lines(&disk, &f.contents)
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("a/{}", f.path), &format!("b/{}", f.path))
                    .to_string();
                drift.push(Drift::Changed { path, diff });
            }
            Err(_) => drift.push(Drift::Missing { path }),
        }
    }
    let mut on_disk = Vec::new();
    list_files(out, out, &mut on_disk)?;
    for rel in on_disk {
        if !files.iter().any(|f| f.path == rel) && !UNRENDERED.contains(&rel.as_str()) {
            drift.push(Drift::Extra { path: out.join(rel) });
        }
    }
    Ok(drift)
}

fn list_files(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries {
        let p = e?.path();
        if p.is_dir() {
            list_files(base, &p, out)?;
        } else {
            out.push(p.strip_prefix(base)?.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}
