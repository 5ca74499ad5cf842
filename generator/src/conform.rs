//! `resonate-gen conform`: builds a target, starts it on free loopback ports (a NATS target: on
//! subjects of its own on the local NATS server) with fresh stores (one instance with `--debug`,
//! one without), runs the conformance suite against them (`resonate-conform` from tests/), and
//! stops them. The suite inherits the environment, so `RESONATE_TRACES_DIR` and
//! `RESONATE_TRACES_REQUIRED` reach its traces section.

use crate::manifest::{Auth, Manifest, Metrics, Transport};
use resonate_tests::jwt::AdminKey;
use crate::Repo;
use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use resonate_tests::server::{ready, Database};
use resonate_tests::transport::{Endpoint, NatsEndpoint};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process that is killed when dropped, then the database it had to itself.
pub struct Running {
    pub child: Child,
    database: Option<Database>,
}

impl Running {
    pub fn new(child: Child, database: Option<Database>) -> Running {
        Running { child, database }
    }

    /// Kills the process and hands back its database, which then outlives it (for a restart).
    pub fn into_database(mut self) -> Option<Database> {
        self.database.take()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh store for one server of `m`: the flags that point it there, and the database (dropped
/// with it) for a target that keeps one; a SQLite target gets a file in `dir`.
pub fn fresh_store(m: &Manifest, dir: &Path) -> Result<(Vec<OsString>, Option<Database>)> {
    let database = Database::for_target(&m.name).map_err(anyhow::Error::msg)?;
    let args = match &database {
        Some(db) => vec![db.flag().into(), db.url.clone().into()],
        None => vec!["--storage-sqlite-path".into(), dir.join("resonate.db").into()],
    };
    Ok((args, database))
}

fn target_dir(repo: &Repo) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| repo.root.join(d))
        .unwrap_or_else(|| repo.root.join("target"))
}

fn cargo(repo: &Repo, args: &[&str]) -> Result<()> {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(args)
        .current_dir(&repo.root)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Gives the server in `cmd` a place of its own and says where it is: a free loopback port, or
/// (a NATS target) subjects and a queue group of its own on the local NATS server. A target
/// with metrics also gets a free metrics port, so servers started together do not all claim
/// the default 9090.
pub fn fresh_endpoint(m: &Manifest, cmd: &mut Command) -> Result<Endpoint> {
    if m.metrics == Metrics::Prometheus {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        cmd.args(["--observability-metrics-port", &port.to_string()]);
    }
    Ok(match m.transport {
        Transport::Http => {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            cmd.args(["--server-bind", "127.0.0.1", "--server-port", &port.to_string()]);
            Endpoint::Http(([127, 0, 0, 1], port).into())
        }
        Transport::Nats => {
            let at = NatsEndpoint::fresh();
            cmd.args(at.flags());
            Endpoint::Nats(at)
        }
    })
}

/// Starts one instance in `dir` with a fresh store and waits until it is ready.
fn start(bin: &Path, m: &Manifest, dir: &Path, debug: bool, key: Option<&AdminKey>) -> Result<(Running, Endpoint)> {
    let (store, database) = fresh_store(m, dir)?;
    let mut cmd = Command::new(bin);
    let endpoint = fresh_endpoint(m, &mut cmd)?;
    cmd.args(store);
    if debug {
        cmd.arg("--debug");
    }
    if let Some(key) = key {
        cmd.arg("--auth-publickey").arg(&key.public_key);
    }
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = cmd.stdout(log.try_clone()?).stderr(log).spawn().with_context(|| format!("cannot start {}", bin.display()))?;
    let mut running = Running::new(child, database);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready(&endpoint) {
        if Instant::now() > deadline || running.child.try_wait()?.is_some() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            bail!("{} did not become ready at {endpoint}:\n{log}", bin.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((running, endpoint))
}

/// Runs the suite against one target; `Ok(true)` when every case passed.
pub fn conform(repo: &Repo, m: &Manifest) -> Result<bool> {
    let manifest = repo.generated_dir(&m.name).join("Cargo.toml");
    eprintln!("conform {}: building the server and the suite", m.name);
    cargo(repo, &["build", "-q", "--manifest-path", &manifest.to_string_lossy()])?;
    cargo(repo, &["build", "-q", "-p", "resonate-tests", "--bin", "resonate-conform"])?;
    let bins = target_dir(repo).join("debug");
    let dir = std::env::temp_dir().join(format!("resonate-conform-{}-{}", m.name, std::process::id()));
    let (debug_dir, plain_dir) = (dir.join("debug"), dir.join("plain"));
    std::fs::create_dir_all(&debug_dir)?;
    std::fs::create_dir_all(&plain_dir)?;
    let server = bins.join(format!("resonate-{}", m.name));
    // A target with auth runs the suite with an admin token in every request.
    let key = match m.auth {
        Auth::Jwt => Some(AdminKey::new(&dir).map_err(anyhow::Error::msg)?),
        Auth::None => None,
    };
    let (_debug, endpoint) = start(&server, m, &debug_dir, true, key.as_ref())?;
    let (_plain, plain) = start(&server, m, &plain_dir, false, key.as_ref())?;
    eprintln!("conform {}: running against {endpoint} (and {plain} without --debug)", m.name);
    let mut suite = Command::new(bins.join("resonate-conform"));
    if let Some(key) = &key {
        suite.env("RESONATE_TOKEN", &key.token);
    }
    let status = suite.args(["--url", &endpoint.to_string(), "--plain", &plain.to_string()]).stdin(Stdio::null()).status()?;
    if status.success() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("conform {}: server logs kept in {}", m.name, dir.display());
    }
    Ok(status.success())
}
