//! `resonate-gen conform`: builds a target, starts it on free loopback ports with fresh stores
//! (one instance with `--debug`, one without), runs the conformance suite against them
//! (`resonate-conform` from tests/), and stops them.

use crate::manifest::{Manifest, Store};
use crate::Repo;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process that is killed when dropped, with the database it had to itself (dropped too).
struct Running(Child, Option<String>);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        match &self.1 {
            Some(url) if url.starts_with("mysql://") => drop_mysql_database(url),
            Some(url) => drop_postgres_database(url),
            None => {}
        }
    }
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

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// True once `GET /health` answers 200.
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    s.write_all(request.as_bytes()).is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// Starts one instance in `dir` with a fresh store and waits until it is healthy.
fn start(bin: &Path, m: &Manifest, dir: &Path, debug: bool) -> Result<(Running, SocketAddr)> {
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new(bin);
    cmd.args(["--server-bind", "127.0.0.1", "--server-port", &port.to_string()]);
    let mut database = None;
    match m.store {
        Store::Sqlite => cmd.arg("--storage-sqlite-path").arg(dir.join("resonate.db")),
        Store::Postgres => {
            let url = fresh_postgres_database(&m.name)?;
            database = Some(url.clone());
            cmd.arg("--storage-postgres-url").arg(url)
        }
        Store::Mysql => {
            let url = fresh_mysql_database(&m.name)?;
            database = Some(url.clone());
            cmd.arg("--storage-mysql-url").arg(url)
        }
    };
    if debug {
        cmd.arg("--debug");
    }
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = cmd.stdout(log.try_clone()?).stderr(log).spawn().with_context(|| format!("cannot start {}", bin.display()))?;
    let mut running = Running(child, database);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !healthy(addr) {
        if Instant::now() > deadline || running.0.try_wait()?.is_some() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            bail!("{} did not become healthy on {addr}:\n{log}", bin.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((running, addr))
}

/// The PostgreSQL server test stores are created on: `RESONATE_POSTGRES_ADMIN_URL`, by default
/// the local server as root over 127.0.0.1 (trust auth), database `postgres`.
pub fn postgres_admin_url() -> String {
    std::env::var("RESONATE_POSTGRES_ADMIN_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/postgres".to_string())
}

/// Creates an empty database with `psql` and returns its URL: a fresh store for one server.
pub fn fresh_postgres_database(label: &str) -> Result<String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
    let label: String = label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("resonate_{label}_{}_{n}_{nanos}", std::process::id());
    let admin = postgres_admin_url();
    let output = Command::new("psql")
        .args([admin.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", &format!("CREATE DATABASE {name}")])
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql (is the PostgreSQL client installed?)")?;
    if !output.status.success() {
        bail!("psql could not create database {name}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin);
    Ok(format!("{base}/{name}"))
}

/// Drops a database [`fresh_postgres_database`] created, with any connection still open to it.
pub fn drop_postgres_database(url: &str) {
    let Some((_, name)) = url.rsplit_once('/') else { return };
    let _ = Command::new("psql")
        .args([postgres_admin_url().as_str(), "-q", "-c", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
        .stdin(Stdio::null())
        .output();
}

/// The MySQL server test stores are created on: `RESONATE_MYSQL_ADMIN_URL`, by default the local
/// server (MariaDB) as root without a password over 127.0.0.1, database `test`.
pub fn mysql_admin_url() -> String {
    std::env::var("RESONATE_MYSQL_ADMIN_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".to_string())
}

/// Runs one SQL statement with the `mysql` client as the user of a `mysql://user[:password]@host[:port]/db` URL.
pub fn mysql_cli(url: &str, sql: &str) -> Result<String> {
    let rest = url.strip_prefix("mysql://").with_context(|| format!("{url}: not a mysql:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (user, host) = authority.rsplit_once('@').unwrap_or(("root", authority));
    let (user, password) = user.split_once(':').unwrap_or((user, ""));
    let (host, port) = host.split_once(':').unwrap_or((host, "3306"));
    let mut cmd = Command::new("mysql");
    cmd.args(["-u", user, "-h", host, "-P", port, "--protocol=tcp", "-N", "-B", "-e", sql]);
    if !password.is_empty() {
        cmd.env("MYSQL_PWD", password);
    }
    let output = cmd.stdin(Stdio::null()).output().context("cannot run mysql (is the MySQL/MariaDB client installed?)")?;
    if !output.status.success() {
        bail!("mysql {sql}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Creates an empty MySQL database and returns its URL: a fresh store for one server.
pub fn fresh_mysql_database(label: &str) -> Result<String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
    let label: String = label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("resonate_{label}_{}_{n}_{nanos}", std::process::id());
    let admin = mysql_admin_url();
    mysql_cli(&admin, &format!("CREATE DATABASE {name}"))?;
    let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin);
    Ok(format!("{base}/{name}"))
}

/// Drops a database [`fresh_mysql_database`] created.
pub fn drop_mysql_database(url: &str) {
    let Some((_, name)) = url.rsplit_once('/') else { return };
    let _ = mysql_cli(&mysql_admin_url(), &format!("DROP DATABASE IF EXISTS {name}"));
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
    let (_debug, addr) = start(&server, m, &debug_dir, true)?;
    let (_plain, plain) = start(&server, m, &plain_dir, false)?;
    eprintln!("conform {}: running against {addr} (and {plain} without --debug)", m.name);
    let status = Command::new(bins.join("resonate-conform"))
        .args(["--url", &format!("http://{addr}"), "--plain", &format!("http://{plain}")])
        .stdin(Stdio::null())
        .status()?;
    if status.success() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("conform {}: server logs kept in {}", m.name, dir.display());
    }
    Ok(status.success())
}
