//! Building generated servers and running them as real processes.

use crate::client::{Client, IO_TIMEOUT};
use crate::jwt::AdminKey;
use crate::transport::{Conn, Endpoint, NatsEndpoint, Rpc};
use serde_json::json;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use std::{env, thread};

/// How long a starting server has to answer `GET /health` with 200 (or a request over NATS).
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a starting server is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a restart waits for its port to be free again.
const PORT_WAIT: Duration = Duration::from_millis(500);
/// How many lines of the log a failing test prints.
const LOG_TAIL_LINES: usize = 100;

/// The repository root: the parent of this crate's directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lies inside the repository")
        .to_path_buf()
}

/// The Cargo target directory: `CARGO_TARGET_DIR` (relative to the root) if set, else `<root>/target`.
fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("target"),
    }
}

/// The target the server suites run against: `RESONATE_TARGET`, by default `sqlite-http`.
pub fn target() -> String {
    env::var("RESONATE_TARGET").ok().filter(|t| !t.is_empty()).unwrap_or_else(|| "sqlite-http".to_string())
}

/// Whether `target` speaks NATS (`transport: nats` in targets/<target>.yaml); a binary that is
/// no target's, such as a mutant, speaks HTTP.
pub fn speaks_nats(target: &str) -> bool {
    manifest(target)["transport"].as_str() == Some("nats")
}

/// Whether `target`'s requests must carry a JWT (`auth: jwt` in its manifest).
pub fn has_auth(target: &str) -> bool {
    manifest(target)["auth"].as_str() == Some("jwt")
}

/// Whether `target` serves Prometheus metrics on a port of its own (`metrics: prometheus`).
pub fn has_metrics(target: &str) -> bool {
    manifest(target)["metrics"].as_str() == Some("prometheus")
}

/// `targets/<target>.yaml`, or null for a binary that is no target (a mutant, say).
fn manifest(target: &str) -> serde_yaml::Value {
    let path = repo_root().join("targets").join(format!("{target}.yaml"));
    let Ok(text) = fs::read_to_string(&path) else { return serde_yaml::Value::Null };
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Where test databases are created: `RESONATE_POSTGRES_ADMIN_URL`, by default the local
/// PostgreSQL as root over 127.0.0.1 (trust auth), database `postgres`.
pub fn postgres_admin_url() -> String {
    env::var("RESONATE_POSTGRES_ADMIN_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/postgres".to_string())
}

/// Runs one SQL command with `psql` against `url`; returns its unaligned output.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args([url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !output.status.success() {
        return Err(format!("psql {sql}: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Where MySQL test databases are created: `RESONATE_MYSQL_ADMIN_URL`, by default the local
/// MariaDB as root without a password over 127.0.0.1, database `test`.
pub fn mysql_admin_url() -> String {
    env::var("RESONATE_MYSQL_ADMIN_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".to_string())
}

/// Runs one SQL statement with the `mysql` client as the user of a
/// `mysql://user[:password]@host[:port]/db` URL; returns its tab-separated output.
pub fn mysql(url: &str, sql: &str) -> Result<String, String> {
    let rest = url.strip_prefix("mysql://").ok_or_else(|| format!("{url}: not a mysql:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (user, host) = authority.rsplit_once('@').unwrap_or(("root", authority));
    let (user, password) = user.split_once(':').unwrap_or((user, ""));
    let (host, port) = host.split_once(':').unwrap_or((host, "3306"));
    let mut command = Command::new("mysql");
    command.args(["-u", user, "-h", host, "-P", port, "--protocol=tcp", "-N", "-B", "-e", sql]);
    if !password.is_empty() {
        command.env("MYSQL_PWD", password);
    }
    let output = command.stdin(Stdio::null()).output().map_err(|e| format!("cannot run mysql: {e}"))?;
    if !output.status.success() {
        return Err(format!("mysql {sql}: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A fresh, empty PostgreSQL (or MySQL) database, dropped (with its connections) when the last
/// server using it is gone, failing or not: a failing test's server log is kept.
#[derive(Debug)]
pub struct Database {
    pub name: String,
    pub url: String,
}

impl Database {
    /// A fresh, empty database for a server of `target` (`postgres-…` or `mysql-…`) on the
    /// admin server of its store; `None` for a target that keeps its own file.
    pub fn for_target(target: &str) -> Result<Option<Database>, String> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!("resonate_test_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let admin = if target.starts_with("postgres") {
            let admin = postgres_admin_url();
            let _ = psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            psql(&admin, &format!("CREATE DATABASE {name}"))
                .map_err(|e| format!("cannot create a test database (is PostgreSQL running?): {e}"))?;
            admin
        } else if target.starts_with("mysql") {
            let admin = mysql_admin_url();
            mysql(&admin, &format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"))
                .map_err(|e| format!("cannot create a test database (is MySQL running?): {e}"))?;
            admin
        } else {
            return Ok(None);
        };
        let base = admin.rsplit_once('/').map(|(base, _)| base.to_string()).unwrap_or(admin);
        Ok(Some(Database { url: format!("{base}/{name}"), name }))
    }

    /// [`Database::for_target`] for a target with a database; panics if it cannot be created.
    pub fn create(target: &str) -> Database {
        match Database::for_target(target) {
            Ok(Some(database)) => database,
            Ok(None) => panic!("{target} keeps no database"),
            Err(e) => panic!("{e}"),
        }
    }

    /// The server flag that points a server at this database.
    pub fn flag(&self) -> &'static str {
        if self.url.starts_with("mysql://") {
            "--storage-mysql-url"
        } else {
            "--storage-postgres-url"
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if self.url.starts_with("mysql://") {
            let _ = mysql(&mysql_admin_url(), &format!("DROP DATABASE IF EXISTS {}", self.name));
        } else {
            let _ = psql(&postgres_admin_url(), &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// Builds `generated/<target>` (debug profile) once per process and returns the path of its
/// `resonate-<target>` binary. Panics with Cargo's output if the build fails.
pub fn build(target: &str) -> PathBuf {
    build_crate(target, &format!("resonate-{target}"))
}

/// Builds `generated/resonate-ctl`, the command line and MCP server, like [`build`].
pub fn build_ctl() -> PathBuf {
    build_crate("resonate-ctl", "resonate-ctl")
}

/// Builds `generated/<dir>` (debug profile) once per process; returns the path of its `bin`.
fn build_crate(dir: &str, bin_name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    // Held across the build, so concurrent tests wait for one build instead of racing.
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(bin) = built.get(dir) {
        return bin.clone();
    }
    let root = repo_root();
    let manifest = root.join("generated").join(dir).join("Cargo.toml");
    let target_dir = target_dir();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {}: {e}", manifest.display()));
    if !output.status.success() {
        panic!(
            "building {} failed ({}):\n{}",
            manifest.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let bin = target_dir
        .join("debug")
        .join(format!("{bin_name}{}", env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "cargo built {} but {} is missing",
        manifest.display(),
        bin.display()
    );
    built.insert(dir.to_owned(), bin.clone());
    bin
}

/// A running server process with its own working directory.
#[derive(Debug)]
pub struct Server {
    /// Where the server listens for HTTP; for a NATS target, the NATS server (see [`Server::endpoint`]).
    pub addr: SocketAddr,
    /// How the suites reach it, over either transport.
    endpoint: Endpoint,
    /// The server's working directory, holding its store and `server.log`.
    pub dir: PathBuf,
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    /// Whether a panic already showed the whole log, so dropping need not show it again.
    log_shown: bool,
    /// The database of a PostgreSQL target, shared by its replicas.
    pub database: Option<Arc<Database>>,
    /// Where a target with metrics serves `GET /metrics`.
    pub metrics: Option<SocketAddr>,
}

impl Server {
    /// Starts `bin args.. --server-port <free port> --server-bind 127.0.0.1` in a fresh
    /// temporary directory, its output appended to `server.log` there, and waits until
    /// `GET /health` answers 200. Panics with the log if it exits or is not ready in 15 s.
    /// A PostgreSQL or MySQL target (`resonate-postgres-*`, `resonate-mysql-*`) gets a fresh
    /// database of its own. A NATS target ([`speaks_nats`]) gets `--nats-url`,
    /// `--nats-api-prefix` and `--nats-queue-group` for subjects of its own on the local NATS
    /// server instead of the HTTP flags, and is ready once it answers a request over NATS.
    pub fn start(bin: &Path, args: &[&str]) -> Server {
        let name = bin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let target = name.strip_prefix("resonate-").unwrap_or(&name);
        let database = Database::for_target(target).unwrap_or_else(|e| panic!("{e}")).map(Arc::new);
        Server::start_on(bin, args, database)
    }

    /// Starts another process of this server's binary on the same database (and, over NATS,
    /// the same subjects and queue group): a replica. Over NATS it counts as ready once either
    /// answers, as the queue group hides which one did.
    pub fn replica(&self, args: &[&str]) -> Server {
        let endpoint = match &self.endpoint {
            Endpoint::Http(_) => Endpoint::Http(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))),
            Endpoint::Nats(_) => self.endpoint.clone(),
        };
        Server::start_with(&self.bin, args, self.database.clone(), endpoint)
    }

    /// Starts `bin` like [`Server::start`], on `database` when given.
    pub fn start_on(bin: &Path, args: &[&str], database: Option<Arc<Database>>) -> Server {
        let name = bin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let endpoint = if speaks_nats(name.strip_prefix("resonate-").unwrap_or(&name)) {
            Endpoint::Nats(NatsEndpoint::fresh())
        } else {
            Endpoint::Http(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())))
        };
        Server::start_with(bin, args, database, endpoint)
    }

    /// Starts `bin args..` to be reached at `endpoint`.
    fn start_with(bin: &Path, args: &[&str], database: Option<Arc<Database>>, endpoint: Endpoint) -> Server {
        let dir = fresh_dir();
        let mut args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let name = bin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if has_auth(name.strip_prefix("resonate-").unwrap_or(&name)) && !args.iter().any(|a| a == "--auth-publickey") {
            // Held to the suites like any target, with an admin token in every request.
            args.extend(["--auth-publickey".to_string(), AdminKey::shared().public_key.display().to_string()]);
        }
        if let Some(db) = &database {
            args.extend([db.flag().to_string(), db.url.clone()]);
        }
        // Servers with metrics all default to port 9090: each gets a free one, kept across restarts.
        let mut metrics = None;
        if has_metrics(name.strip_prefix("resonate-").unwrap_or(&name)) && !args.iter().any(|a| a == "--observability-metrics-port") {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            args.extend(["--observability-metrics-port".to_string(), addr.port().to_string()]);
            metrics = Some(addr);
        }
        let addr = match &endpoint {
            Endpoint::Http(addr) => *addr,
            Endpoint::Nats(at) => at.nats,
        };
        let mut server = Server {
            database,
            addr,
            endpoint,
            log: dir.join("server.log"),
            dir,
            child: None,
            bin: bin.to_path_buf(),
            args,
            log_shown: false,
            metrics,
        };
        server.launch();
        server
    }

    /// Kills the server if it runs, then starts it again in the same directory on the same port.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Kills the server with SIGKILL and reaps it; does nothing if it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.endpoint.killed();
        }
    }

    /// A new HTTP client for this server; panics for a NATS target (use [`Server::conn`]).
    pub fn client(&self) -> Client {
        assert!(matches!(self.endpoint, Endpoint::Http(_)), "{} has no HTTP listener: use Server::conn", self.bin.display());
        Client::new(self.addr)
    }

    /// A new connection to this server over its transport, with 30 s timeouts.
    pub fn conn(&self) -> Conn {
        self.endpoint.conn(IO_TIMEOUT)
    }

    /// How to reach this server over its transport, e.g. from another thread.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// Everything the server has written to stdout and stderr so far, across restarts.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Waits briefly for an HTTP server's port to be free, spawns the server and waits until
    /// it is ready. Panics with the log on failure.
    fn launch(&mut self) {
        if let Endpoint::Http(addr) = self.endpoint {
            let deadline = Instant::now() + PORT_WAIT;
            while TcpListener::bind(addr).is_err() && Instant::now() < deadline {
                thread::sleep(POLL_INTERVAL);
            }
        }
        if let Err(why) = self.spawn_and_wait() {
            self.kill9();
            self.log_shown = true;
            panic!(
                "server {} on {} {why}\n--- {} ---\n{}",
                self.bin.display(),
                self.addr,
                self.log.display(),
                self.log()
            );
        }
    }

    /// Spawns the process once and polls it until it is ready: `GET /health` answers 200, or a
    /// request over NATS is answered.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = open_log(&self.log).map_err(|e| format!("has no log: {e}"))?;
        let stderr = log.try_clone().map_err(|e| format!("has no log: {e}"))?;
        let mut command = Command::new(&self.bin);
        command.args(&self.args);
        match &self.endpoint {
            Endpoint::Http(addr) => command.args(["--server-port", &addr.port().to_string(), "--server-bind", "127.0.0.1"]),
            Endpoint::Nats(at) => command.args(at.flags()),
        };
        let child = command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("could not be spawned: {e}"))?;
        let child = self.child.insert(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("exited before it was ready: {status}"));
            }
            if ready(&self.endpoint) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(match self.endpoint {
                    Endpoint::Http(_) => format!("did not answer GET /health with 200 within {READY_TIMEOUT:?}"),
                    Endpoint::Nats(_) => format!("did not answer a request over NATS within {READY_TIMEOUT:?}"),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Server {
    /// Kills the server and removes its directory; if the test is failing, keeps the
    /// directory and prints the end of the log instead (unless a panic already showed it).
    fn drop(&mut self) {
        self.kill9();
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else if self.log_shown {
            eprintln!("--- directory kept: {} ---", self.dir.display());
        } else {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "--- last {} lines of {} (directory kept) ---\n{}",
                tail.len(),
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// Whether the server at `endpoint` is ready: `GET /health` answers 200, or a `promise.get`
/// published over NATS is answered at all.
pub fn ready(endpoint: &Endpoint) -> bool {
    let timeout = Duration::from_secs(1);
    match endpoint {
        Endpoint::Http(addr) => Client::with_timeout(*addr, timeout).get("/health").is_ok_and(|r| r.status == 200),
        Endpoint::Nats(_) => {
            let probe = json!({ "kind": "promise.get", "head": { "corrId": "ready", "version": crate::PROTOCOL_VERSION }, "data": { "id": "ready" } });
            endpoint.conn(timeout).rpc(probe.to_string().as_bytes()).is_ok()
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("cannot bind an ephemeral port")
        .port()
}

/// A new, empty directory under the system temp dir, unique within and across processes.
pub fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = env::temp_dir().join(format!("resonate-tests-{}-{n}", std::process::id()));
    // A directory left by an earlier process with the same pid is stale.
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Opens `path` for appending, creating it if needed.
fn open_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
