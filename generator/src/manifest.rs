//! Target manifests (`targets/<name>.yaml`): which store, which transport, which options.

use crate::spec::read_yaml;
use anyhow::{bail, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One target: a store and a transport, rendered into `generated/<name>/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(skip)]
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub store: Store,
    pub transport: Transport,
    /// Which push addresses the server can deliver to besides poll:// streams.
    #[serde(default)]
    pub push: Push,
    /// Free text shown by `resonate-gen list` and in the generated README.
    pub description: String,
    /// Limits `resonate-gen bench` holds the release build to; absent means no limits.
    #[serde(default)]
    pub budget: Option<Budget>,
}

/// `budget: { binary_bytes: N, crates: N }`: the most the target may cost. Either key may be left out.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Size of the stripped release binary, in bytes.
    pub binary_bytes: Option<u64>,
    /// Distinct crates (name and version) in its normal and build dependency graph, itself excluded.
    pub crates: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Http,
}

/// Outbound HTTP push: `none` refuses nothing at the door but cannot deliver to http(s)://
/// addresses; `http` carries a plain HTTP client; `https` would add a TLS stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Push {
    None,
    #[default]
    Http,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres => "postgres",
        }
    }
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Http => "http",
        }
    }
}

impl Manifest {
    /// Reads and validates one manifest; its name is the file stem and must be `<store>-<transport>`.
    pub fn load(path: &Path) -> Result<Manifest> {
        let mut m: Manifest = read_yaml(path)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let expected = format!("{}-{}", m.store.name(), m.transport.name());
        if stem != expected {
            bail!(
                "{}: a manifest with store {} and transport {} must be named {expected}.yaml",
                path.display(),
                m.store.name(),
                m.transport.name()
            );
        }
        m.name = expected;
        m.path = path.to_path_buf();
        Ok(m)
    }

    /// Every manifest in `targets/`, sorted by name.
    pub fn load_all(dir: &Path) -> Result<Vec<Manifest>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!("{}: no target manifests (*.yaml)", dir.display());
        }
        paths.iter().map(|p| Manifest::load(p)).collect()
    }

    /// The manifest in `targets/` for a store and transport.
    pub fn find(dir: &Path, store: Store, transport: Transport) -> Result<Manifest> {
        let name = format!("{}-{}", store.name(), transport.name());
        let path = dir.join(format!("{name}.yaml"));
        if !path.exists() {
            let known: Vec<String> = Manifest::load_all(dir)?.into_iter().map(|m| m.name).collect();
            bail!(
                "no target {name}: targets/ has {}; add targets/{name}.yaml to create it",
                known.join(", ")
            );
        }
        Manifest::load(&path)
    }
}
