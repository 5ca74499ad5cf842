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
    /// Inbound authentication: `jwt` checks a signed token on every request (spec/auth.yaml).
    #[serde(default)]
    pub auth: Auth,
    /// Free text shown by `resonate-gen list` and in the generated README.
    pub description: String,
    /// Whether the server can delete settled promises older than a configured horizon (rule R8,
    /// the `retention` option).
    #[serde(default)]
    pub retention: bool,
    /// `prometheus` serves `/metrics` on its own port (`--observability-metrics-port`).
    #[serde(default)]
    pub metrics: Metrics,
    /// Whether the server serves a read-only web dashboard at `/ui`.
    #[serde(default)]
    pub dashboard: bool,
    /// A word that names a variant with optional features (`ops`): the target is then named
    /// `<store>-<transport>[-jwt]-<variant>`.
    #[serde(default)]
    pub variant: Option<String>,
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
    Mysql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Http,
    Nats,
}

/// Outbound HTTP push: `none` refuses nothing at the door but cannot deliver to http(s)://
/// addresses; `http` carries a plain HTTP client (http:// only); `https` adds rustls, so
/// https:// addresses are delivered too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Push {
    None,
    #[default]
    Http,
    Https,
}

/// Metrics: `none` carries no metrics code; `prometheus` serves the Prometheus text format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metrics {
    #[default]
    None,
    Prometheus,
}

/// Inbound authentication. `none` carries no token checks and no JWT crates at all; `jwt`
/// verifies a JWT against a configured public key and scopes each token to an id prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    #[default]
    None,
    Jwt,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres => "postgres",
            Store::Mysql => "mysql",
        }
    }
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Nats => "nats",
        }
    }
}

/// The optional features spec/ may tie an option or a rule to.
pub const FEATURES: &[&str] = &["jwt", "push", "https", "retention", "metrics", "dashboard"];

impl Manifest {
    /// Whether the manifest turns on an optional feature named in spec/ (one of `FEATURES`), or,
    /// for `!<feature>`, leaves it off.
    pub fn has_feature(&self, feature: &str) -> bool {
        if let Some(off) = feature.strip_prefix('!') {
            return !self.has_feature(off);
        }
        match feature {
            "push" => self.push != Push::None,
            "https" => self.push == Push::Https,
            "retention" => self.retention,
            "jwt" => self.auth == Auth::Jwt,
            "metrics" => self.metrics == Metrics::Prometheus,
            "dashboard" => self.dashboard,
            _ => false,
        }
    }

    /// The target name a store, transport, auth and variant must have:
    /// `<store>-<transport>[-jwt][-<variant>]`, e.g. `sqlite-http`, `sqlite-http-jwt` or `sqlite-http-ops`.
    pub fn name_for(store: Store, transport: Transport, auth: Auth, variant: Option<&str>) -> String {
        let mut name = format!("{}-{}", store.name(), transport.name());
        if auth == Auth::Jwt {
            name.push_str("-jwt");
        }
        if let Some(variant) = variant {
            name.push('-');
            name.push_str(variant);
        }
        name
    }

    /// Reads and validates one manifest; its name is the file stem and must be
    /// `<store>-<transport>[-<feature>…]` ([`Manifest::name_for`]).
    pub fn load(path: &Path) -> Result<Manifest> {
        let mut m: Manifest = read_yaml(path)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if let Some(variant) = &m.variant {
            if variant.is_empty() || !variant.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                bail!(
                    "{}: variant {variant:?} must be one word of lowercase letters and digits (e.g. ops): \
                     it becomes the end of the target's name",
                    path.display()
                );
            }
        }
        if m.metrics == Metrics::Prometheus && (m.transport != Transport::Http || m.store == Store::Mysql) {
            bail!(
                "{}: metrics: prometheus is rendered for the sqlite and postgres stores over http only (its \
                 /metrics listener reuses the HTTP transport's hyper server, and the store census is written for \
                 SQLite and PostgreSQL); use metrics: none here",
                path.display()
            );
        }
        let expected = Manifest::name_for(m.store, m.transport, m.auth, m.variant.as_deref());
        if stem != expected {
            let auth = match m.auth {
                Auth::None => "no auth".to_string(),
                Auth::Jwt => "auth: jwt".to_string(),
            };
            let variant = m.variant.as_ref().map(|v| format!(", variant: {v}")).unwrap_or_default();
            bail!(
                "{}: this manifest (store: {}, transport: {}, {auth}{variant}) must be named {expected}.yaml. A \
                 manifest's file name is its target's name, <store>-<transport>[-jwt][-<variant>]: it names the \
                 crate (resonate-{expected}) and its folder generated/{expected}/, and --store/--transport find it \
                 by that name. Rename the file, or change store, transport, auth or variant to match its name",
                path.display(),
                m.store.name(),
                m.transport.name(),
            );
        }
        if m.dashboard && (m.transport != Transport::Http || m.store == Store::Mysql) {
            bail!(
                "{}: dashboard: true is rendered for the sqlite and postgres stores over http only (the page is \
                 served at /ui by the HTTP listener, and the read of a promise's callbacks and listeners is written \
                 for SQLite and PostgreSQL); use dashboard: false here",
                path.display()
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

    /// The manifest in `targets/` for a store, transport, auth and variant.
    pub fn find(dir: &Path, store: Store, transport: Transport, auth: Auth, variant: Option<&str>) -> Result<Manifest> {
        let name = Manifest::name_for(store, transport, auth, variant);
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
