//! `resonate-gen bench`: what a target costs and how fast it is.
//!
//! Builds the target and `resonate-load` (tests/) in release, then measures the stripped binary,
//! its dependency graph, the generated lines, cold start-up, idle memory and closed-loop
//! throughput and latency, all on 127.0.0.1: over HTTP, or for a NATS target through the local
//! NATS server (127.0.0.1:4222, `tests/nats-up`) on subjects and a queue group of the server's
//! own, as `resonate-gen conform` starts it. Prints a markdown report, writes it to
//! `bench/<target>.md` with a chart in `bench/<target>.svg` (not with `--quick` unless `--write`),
//! and holds the target to the `budget:` of its manifest.

use anyhow::{bail, Context, Result};
use resonate_gen::manifest::{Auth, Manifest, Store, Transport};
use resonate_gen::conform::Running;
use resonate_tests::server::Database;
use resonate_gen::Repo;
use resonate_tests::jwt::AdminKey;
use resonate_tests::nats::{self, Nats};
use resonate_tests::transport::{Endpoint, NatsEndpoint, REPLY_TO};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How `bench` was asked to run.
pub struct Options {
    pub quick: bool,
    pub write: bool,
    /// The command line, as written into the report.
    pub command: String,
}

/// How much to measure.
struct Plan {
    clients: &'static [usize],
    seconds: f64,
    warmup: f64,
    starts: usize,
}

const FULL: Plan = Plan { clients: &[1, 4, 16, 64], seconds: 10.0, warmup: 1.0, starts: 20 };
const QUICK: Plan = Plan { clients: &[1, 16], seconds: 1.0, warmup: 0.2, starts: 10 };
const MIXES: [&str; 2] = ["workflow", "promise"];
/// How long a starting server has to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server idles before its memory is read.
const SETTLE: Duration = Duration::from_millis(500);

/// The targets `--target NAME` or `--all` names.
pub fn select(repo: &Repo, target: Option<String>, all: bool) -> Result<Vec<Manifest>> {
    let targets = Manifest::load_all(&repo.targets_dir())?;
    if all {
        return Ok(targets);
    }
    let name = target.context("pass --target NAME or --all")?;
    let known: Vec<&str> = targets.iter().map(|m| m.name.as_str()).collect();
    let hint = format!("no target {name}; targets/ has {}", known.join(", "));
    Ok(vec![targets.into_iter().find(|m| m.name == name).context(hint)?])
}

/// resonate-load's JSON report, the parts used here.
#[derive(Deserialize)]
struct Load {
    mix: String,
    clients: usize,
    requests_per_sec: f64,
    iterations_per_sec: f64,
    latency_us: Quantiles,
    kinds: Vec<KindLoad>,
    /// CPU time (user + system) the run cost, in ms: the server's, and the database server's
    /// processes' (PostgreSQL, MariaDB/MySQL) on the database stores. Not in resonate-load's report.
    #[serde(skip)]
    cpu: Cpu,
}

/// CPU time spent over some interval, in ms.
#[derive(Default, Clone, Copy)]
struct Cpu {
    server_ms: f64,
    database_ms: f64,
}

#[derive(Deserialize)]
struct Quantiles {
    p50: f64,
    p99: f64,
    p999: f64,
}

#[derive(Deserialize)]
struct KindLoad {
    kind: String,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

/// Everything measured for one target.
struct Measured {
    binary_bytes: u64,
    crates: usize,
    lines: usize,
    /// Start to first response, in ms, sorted.
    starts_ms: Vec<f64>,
    /// Start-up on a store an earlier start created (schema in place), sorted.
    restarts_ms: Vec<f64>,
    rss_start_kb: Option<u64>,
    rss_after_kb: Option<u64>,
    loads: Vec<Load>,
    /// The 1-minute load average when `bench` began: other work on the machine skews the numbers.
    busy: Option<String>,
    /// For a NATS target, the version of the NATS server the requests went through.
    nats_version: Option<String>,
    /// The idle server over [`IDLE`] after start-up: CPU, and wake-ups (context switches of all
    /// its threads), per second.
    idle: Idle,
}

struct Idle {
    cpu: Cpu,
    wakeups: f64,
    seconds: f64,
}

impl Measured {
    fn load(&self, mix: &str, clients: usize) -> Option<&Load> {
        self.loads.iter().find(|l| l.mix == mix && l.clients == clients)
    }

    /// A kind's numbers in the promise mix at `clients`.
    fn promise_kind(&self, clients: usize, kind: &str) -> Option<&KindLoad> {
        self.load("promise", clients)?.kinds.iter().find(|k| k.kind == kind)
    }
}

/// Benchmarks one target; `Ok(false)` when it is over its budget.
pub fn bench(repo: &Repo, m: &Manifest, opts: &Options) -> Result<bool> {
    let plan = if opts.quick { &QUICK } else { &FULL };
    let began = Instant::now();
    let busy = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| Some(l.split(' ').next()?.to_owned()));
    let say = |what: String| eprintln!("[{:6.1}s] bench {}: {what}", began.elapsed().as_secs_f64(), m.name);
    let manifest = repo.generated_dir(&m.name).join("Cargo.toml");
    let manifest = manifest.to_string_lossy();

    say("building the server and resonate-load (release)".into());
    cargo(repo, &["build", "--release", "-q", "--manifest-path", &manifest])?;
    cargo(repo, &["build", "--release", "-q", "-p", "resonate-tests", "--bin", "resonate-load"])?;
    let bins = target_dir(repo).join("release");
    let server = bins.join(format!("resonate-{}{}", m.name, std::env::consts::EXE_SUFFIX));
    let binary_bytes = std::fs::metadata(&server).with_context(|| format!("no {}", server.display()))?.len();
    let crates = count_crates(repo, &manifest)?;
    let lines = count_lines(&repo.generated_dir(&m.name).join("src"))?;
    say(format!(
        "{} bytes stripped, {crates} crates, {} lines of generated Rust",
        group(binary_bytes),
        group(lines as u64)
    ));
    let over = over_budget(m, m.path.strip_prefix(&repo.root).unwrap_or(&m.path), binary_bytes, crates);
    for o in &over {
        say(format!("OVER BUDGET: {o}"));
    }

    let scratch = Scratch::new(&m.name)?;
    let jwt = match m.auth {
        Auth::Jwt => Some(AdminKey::new(&scratch.dir("auth")?).map_err(anyhow::Error::msg)?),
        Auth::None => None,
    };
    let jwt = jwt.as_ref();
    say(format!(
        "start-up: {} cold starts, each on a fresh store, each followed by a restart on that store",
        plan.starts
    ));
    let (mut starts_ms, mut restarts_ms) = (Vec::new(), Vec::new());
    for i in 0..plan.starts {
        let dir = scratch.dir(&format!("start{i}"))?;
        let (store, database) = resonate_gen::conform::fresh_store(m, &dir)?;
        let (first, took) = start(&server, m, &dir, jwt, store.clone(), database)?;
        starts_ms.push(took.as_secs_f64() * 1000.0);
        let database = first.process.into_database();
        let (_, took) = start(&server, m, &dir, jwt, store, database)?;
        restarts_ms.push(took.as_secs_f64() * 1000.0);
    }
    starts_ms.sort_by(f64::total_cmp);
    restarts_ms.sort_by(f64::total_cmp);
    for (what, ms) in [("fresh store", &starts_ms), ("restart", &restarts_ms)] {
        say(format!("start-up ({what}) min {:.1} / median {:.1} / max {:.1} ms", ms[0], median(ms), ms[ms.len() - 1]));
    }

    let dir = scratch.dir("load")?;
    let (store, database) = resonate_gen::conform::fresh_store(m, &dir)?;
    let (mut running, _) = start(&server, m, &dir, jwt, store, database)?;
    let endpoint = running.endpoint.clone();
    let log = scratch.0.join("load").join("server.log");
    std::thread::sleep(SETTLE);
    let pid = running.process.child.id();
    let rss_start_kb = rss_kb(pid);
    say(format!("idle for {} s", IDLE.as_secs()));
    let (before, switches) = (cpu(pid, m.store), wakeups(pid));
    std::thread::sleep(IDLE);
    let idle = Idle {
        cpu: cpu(pid, m.store).since(before),
        wakeups: wakeups(pid).saturating_sub(switches) as f64,
        seconds: IDLE.as_secs_f64(),
    };
    let mut loads = Vec::new();
    for mix in MIXES {
        for &clients in plan.clients {
            say(format!("{mix} mix, {clients} client(s), {} s", plan.seconds));
            let before = cpu(pid, m.store);
            let mut l = load(&bins, &endpoint, mix, clients, plan, jwt).with_context(|| tail(&log))?;
            l.cpu = cpu(pid, m.store).since(before);
            let per_request = l.cpu.server_ms * 1000.0 / (l.requests_per_sec * (plan.seconds + plan.warmup));
            say(format!("  server CPU {per_request:.0} µs/request, database CPU {:.0} ms", l.cpu.database_ms));
            say(format!(
                "  {} requests/s, p50 {} µs, p99 {} µs, p99.9 {} µs",
                group(l.requests_per_sec as u64),
                us(l.latency_us.p50),
                us(l.latency_us.p99),
                us(l.latency_us.p999)
            ));
            loads.push(l);
        }
    }
    std::thread::sleep(SETTLE);
    let rss_after_kb = rss_kb(running.process.child.id());
    if let Some(status) = running.process.child.try_wait()? {
        bail!("the server exited during the load ({status}); {}", tail(&log));
    }
    drop(running);

    let nats_version = match m.transport {
        Transport::Http => None,
        Transport::Nats => Nats::connect(nats::LOCAL).ok().and_then(|n| n.info()["version"].as_str().map(str::to_owned)),
    };
    let measured =
        Measured { idle, binary_bytes, crates, lines, starts_ms, restarts_ms, rss_start_kb, rss_after_kb, loads, busy, nats_version };
    let report = markdown(repo, m, &measured, plan, opts);
    println!("{report}");
    if opts.quick && !opts.write {
        say("--quick: nothing written (add --write to keep the report in bench/)".into());
    } else {
        let dir = repo.root.join("bench");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{}.md", m.name)), &report)?;
        std::fs::write(dir.join(format!("{}.svg", m.name)), svg(&m.name, &measured))?;
        say(format!("wrote bench/{0}.md and bench/{0}.svg", m.name));
    }
    say(format!("done in {:.0} s", began.elapsed().as_secs_f64()));
    for o in &over {
        eprintln!("resonate-gen bench: {}: OVER BUDGET: {o}", m.name);
    }
    Ok(over.is_empty())
}

/// What exceeds the manifest's budget, one sentence each.
fn over_budget(m: &Manifest, file: &Path, bytes: u64, crates: usize) -> Vec<String> {
    let Some(budget) = m.budget else { return Vec::new() };
    let file = file.display();
    let mut over = Vec::new();
    if let Some(max) = budget.binary_bytes.filter(|max| bytes > *max) {
        over.push(format!(
            "the stripped release binary is {} bytes, {} more than budget.binary_bytes {} in {file}",
            group(bytes),
            group(bytes - max),
            group(max)
        ));
    }
    if let Some(max) = budget.crates.filter(|max| crates > *max) {
        over.push(format!(
            "the dependency graph has {crates} crates, {} more than budget.crates {max} in {file} \
             (see `cargo tree --manifest-path generated/{}/Cargo.toml -e normal,build`)",
            crates - max,
            m.name
        ));
    }
    over
}

fn target_dir(repo: &Repo) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| repo.root.join(d))
        .unwrap_or_else(|| repo.root.join("target"))
}

fn cargo_command(repo: &Repo, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args).current_dir(&repo.root).stdin(Stdio::null());
    cmd
}

fn cargo(repo: &Repo, args: &[&str]) -> Result<()> {
    if !cargo_command(repo, args).status().context("cannot run cargo")?.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Distinct `name version` pairs in the normal and build dependency graph, the crate itself excluded.
fn count_crates(repo: &Repo, manifest: &str) -> Result<usize> {
    let args = ["tree", "-q", "--manifest-path", manifest, "-e", "normal,build", "--prefix", "none"];
    let out = cargo_command(repo, &args).stderr(Stdio::inherit()).output().context("cannot run cargo tree")?;
    if !out.status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let root = lines.next().context("cargo tree printed nothing")?;
    let key = |l: &str| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let root = key(root);
    Ok(lines.map(key).filter(|k| *k != root).collect::<BTreeSet<_>>().len())
}

/// Lines of the `.rs` files under `dir`, as `wc -l` counts them.
fn count_lines(dir: &Path) -> Result<usize> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            total += count_lines(&path)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            total += std::fs::read(&path)?.iter().filter(|b| **b == b'\n').count();
        }
    }
    Ok(total)
}

/// A temporary directory for stores and logs, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(target: &str) -> Result<Scratch> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
        let dir = std::env::temp_dir().join(format!("resonate-bench-{target}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.0.join(name);
        std::fs::create_dir(&dir)?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server and how it is reached; killed (and its store dropped) when dropped.
struct Server {
    process: Running,
    endpoint: Endpoint,
}

/// Starts the server on `store` (the flags of [`resonate_gen::conform::fresh_store`]; logging
/// into `dir`) on a free loopback port, or for a NATS target on subjects and a queue group of its
/// own on the local NATS server (the flags `resonate-gen conform` gives it), and waits for its
/// first answer to a `promise.get`; also returns the time from process start to that answer.
fn start(
    bin: &Path,
    m: &Manifest,
    dir: &Path,
    jwt: Option<&AdminKey>,
    store: Vec<OsString>,
    database: Option<Database>,
) -> Result<(Server, Duration)> {
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut cmd = Command::new(bin);
    let endpoint = resonate_gen::conform::fresh_endpoint(m, &mut cmd)?;
    cmd.args(store);
    if let Some(jwt) = jwt {
        cmd.arg("--auth-publickey").arg(&jwt.public_key);
    }
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    let body = probe_body(jwt.map(|j| j.token.as_str()));
    // Over NATS the probe's own connection is made before the clock starts: the time is the
    // server's (its start, its connection and subscription), not the prober's handshake.
    let mut probe = match &endpoint {
        Endpoint::Http(addr) => Probe::Http(*addr),
        Endpoint::Nats(at) => Probe::Nats {
            nats: Some(Box::new(
                Nats::connect(at.nats).with_context(|| format!("no NATS server at {} (bash tests/nats-up)", at.nats))?,
            )),
            at: at.clone(),
        },
    };
    let began = Instant::now();
    let process = cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
    let mut server = Server { process: Running::new(process, database), endpoint };
    loop {
        if probe.answers(&body) {
            return Ok((server, began.elapsed()));
        }
        if began.elapsed() > START_TIMEOUT || server.process.child.try_wait()?.is_some() {
            bail!(
                "{} did not answer at {} within {START_TIMEOUT:?}; {}",
                bin.display(),
                server.endpoint,
                tail(&dir.join("server.log"))
            );
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A `promise.get` of an id that does not exist, with the admin token of a `jwt` target.
fn probe_body(token: Option<&str>) -> String {
    let auth = token.map(|t| format!(r#","auth":"{t}""#)).unwrap_or_default();
    format!(r#"{{"kind":"promise.get","head":{{"corrId":"probe","version":"2026-04-01"{auth}}},"data":{{"id":"bench-probe"}}}}"#)
}

/// Asks a starting server whether it serves the protocol yet.
enum Probe {
    /// A new connection per try: the server's listener may not exist yet.
    Http(SocketAddr),
    /// One connection to the NATS server for every try (made again only if it breaks): until
    /// the server subscribes, a request gets the NATS server's no-responders answer at once.
    Nats { nats: Option<Box<Nats>>, at: NatsEndpoint },
}

impl Probe {
    /// True once the probe is answered 200 or 404: the protocol is being served.
    fn answers(&mut self, body: &str) -> bool {
        match self {
            Probe::Http(addr) => answers_http(*addr, body),
            Probe::Nats { nats, at } => {
                if nats.is_none() {
                    *nats = Nats::connect(at.nats).ok().map(Box::new);
                }
                let Some(conn) = nats.as_mut() else { return false };
                let subject = format!("{}.bench", at.prefix);
                let answer = conn.new_inbox().and_then(|inbox| {
                    conn.publish(&subject, Some(&inbox), &[(REPLY_TO, &inbox)], body.as_bytes())?;
                    conn.reply(&inbox, Instant::now() + Duration::from_secs(2))
                });
                match answer {
                    Ok(msg) => {
                        // JSON, which YAML reads too.
                        let status = serde_yaml::from_slice::<serde_yaml::Value>(&msg.payload)
                            .ok()
                            .and_then(|v| v["head"]["status"].as_u64());
                        matches!(status, Some(200 | 404))
                    }
                    // No responders: the server has not subscribed yet; the connection is fine.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => false,
                    Err(_) => {
                        *nats = None;
                        false
                    }
                }
            }
        }
    }
}

/// True once `POST /` with `body` is answered 200 or 404.
fn answers_http(addr: SocketAddr, body: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    s.write_all(request.as_bytes()).is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && (answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 404"))
}

/// The end of a server log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!("the server's log ends:\n{}", lines[lines.len().saturating_sub(20)..].join("\n"))
}

/// Resident memory of a process in KiB (Linux; `None` elsewhere).
/// How long the idle server is watched after start-up.
const IDLE: Duration = Duration::from_secs(3);

/// The clock ticks per second `/proc/<pid>/stat` counts CPU time in (`getconf CLK_TCK`).
fn ticks_per_sec() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().ok();
        out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
    })
}

/// A process's name (`comm`) and user + system CPU ticks, from `/proc/<pid>/stat`.
fn proc_ticks(pid: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the name: state is field 3 of the whole line, utime 14 and stime 15.
    Some((name.to_string(), fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?))
}

/// CPU time so far of the server `pid` and of the database server's processes for `store`
/// (every process named postgres, or mariadbd/mysqld: the bench's databases share them).
fn cpu(pid: u32, store: Store) -> Cpu {
    let ms = |ticks: u64| ticks as f64 * 1000.0 / ticks_per_sec();
    let names: &[&str] = match store {
        Store::Sqlite => &[],
        Store::Postgres => &["postgres"],
        Store::Mysql => &["mariadbd", "mysqld"],
    };
    let database = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| proc_ticks(&e.ok()?.file_name().to_string_lossy()))
        .filter(|(name, _)| names.contains(&name.as_str()))
        .map(|(_, ticks)| ticks)
        .sum();
    Cpu { server_ms: ms(proc_ticks(&pid.to_string()).map_or(0, |(_, t)| t)), database_ms: ms(database) }
}

impl Cpu {
    fn since(self, before: Cpu) -> Cpu {
        Cpu { server_ms: self.server_ms - before.server_ms, database_ms: self.database_ms - before.database_ms }
    }
}

/// Context switches so far of every thread of `pid`: each is the process waking up or being woken.
fn wakeups(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().filter_map(|e| e.ok());
    tasks
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One resonate-load run against the server at `endpoint` (`http://…` or `nats://…/<prefix>`).
fn load(bins: &Path, endpoint: &Endpoint, mix: &str, clients: usize, plan: &Plan, jwt: Option<&AdminKey>) -> Result<Load> {
    let out = Command::new(bins.join(format!("resonate-load{}", std::env::consts::EXE_SUFFIX)))
        .args(["--url", &endpoint.to_string(), "--mix", mix, "--clients", &clients.to_string()])
        .args(jwt.map(|j| ["--token", j.token.as_str()]).into_iter().flatten())
        .args(["--seconds", &plan.seconds.to_string(), "--warmup", &plan.warmup.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run resonate-load")?;
    if !out.status.success() {
        bail!("resonate-load ({mix}, {clients} clients) failed: {}", String::from_utf8_lossy(&out.stdout));
    }
    // The report is JSON, which YAML reads too.
    serde_yaml::from_slice(&out.stdout).context("resonate-load printed no report")
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds, whole (the histograms are only ~3 % exact).
fn us(v: f64) -> String {
    group(v.round() as u64)
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or("n/a".into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0))
}

/// Today as `YYYY-MM-DD` (UTC), from the days since 1970 (Howard Hinnant's civil_from_days).
fn today() -> String {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The commit, and whether generated/<target> differs from it.
fn revision(repo: &Repo, target: &str) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(&repo.root).args(args).output().ok();
        out.filter(|o| o.status.success()).map(|o| o.stdout)
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else { return "an unknown commit".into() };
    let dirty = git(&["status", "--porcelain", "--", &format!("generated/{target}")]).is_some_and(|o| !o.is_empty());
    let head = String::from_utf8_lossy(&head).trim().to_owned();
    format!(
        "commit {head}{}",
        if dirty { format!(" with uncommitted changes in generated/{target}") } else { String::new() }
    )
}

/// `nproc`, the CPU model, memory and rustc, in one line.
fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let field = |file: &str, key: &str| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let line = text.lines().find(|l| l.starts_with(key)).map(str::to_owned);
        line.and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned())).unwrap_or("unknown".into())
    };
    let model = field("/proc/cpuinfo", "model name");
    let memory = field("/proc/meminfo", "MemTotal")
        .trim_end_matches(" kB")
        .parse::<f64>()
        .map_or("unknown".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    format!(
        "nproc {nproc}, {model}, {memory} RAM, {} {}; {}",
        std::env::consts::OS,
        std::env::consts::ARCH,
        rustc.unwrap_or("rustc unknown".into())
    )
}

/// The report: setup, costs against the budget, throughput and latency per run and per kind.
fn markdown(repo: &Repo, m: &Manifest, r: &Measured, plan: &Plan, opts: &Options) -> String {
    let budget = m.budget.unwrap_or_default();
    let limit = |v: Option<String>| v.unwrap_or("none".into());
    let seq = r.promise_kind(1, "promise.create").map_or("n/a".into(), |k| format!("{} µs", us(k.p50_us)));
    let pair = ["promise.create", "promise.settle"]
        .iter()
        .map(|k| r.promise_kind(16, k).map(|k| k.per_sec))
        .sum::<Option<f64>>();
    let (starts, restarts) = (&r.starts_ms, &r.restarts_ms);
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Benchmark: {}\n", m.name);
    let _ = writeln!(
        w,
        "- Date: {} (UTC){}",
        today(),
        if opts.quick { ", **--quick** (short runs, indicative only)" } else { "" }
    );
    let _ = writeln!(w, "- Command: `{}` at {}", opts.command, revision(repo, &m.name));
    let busy = r.busy.as_deref().unwrap_or("unknown");
    let _ = writeln!(w, "- Machine: {}; load average {busy} when the bench began", machine());
    let store = match m.store {
        Store::Sqlite => {
            "default flags (`--storage-sqlite-synchronous full`: every commit is fsynced), a fresh \
                          SQLite file in the temp directory for every start"
        }
        Store::Postgres => {
            "default flags, a fresh database on the PostgreSQL server at RESONATE_POSTGRES_ADMIN_URL \
                            (default 127.0.0.1:5432, sharing the machine) for every start; RSS is the server's alone"
        }
        Store::Mysql => {
            "default flags, a fresh database on the MySQL server at RESONATE_MYSQL_ADMIN_URL \
                            (default MariaDB at 127.0.0.1:3306, sharing the machine) for every start; RSS is the server's alone"
        }
    };
    let _ = writeln!(w, "- Server: release build, {store}; 127.0.0.1 only.");
    let (connection, target) = match m.transport {
        Transport::Http => ("one keep-alive HTTP connection (`POST /`)".to_owned(), "poll://any@bench"),
        Transport::Nats => {
            let version = r.nats_version.as_deref().map_or(String::new(), |v| format!(" {v}"));
            let _ = writeln!(
                w,
                "- Transport: NATS. Every request goes through the nats-server{version} at 127.0.0.1:4222 \
                 (sharing the machine; its memory not counted in RSS), on an api prefix and queue group of \
                 the server's own; start-up is measured to the first request answered through it."
            );
            (
                "one NATS connection, each request published with a `Resonate-Reply-To` inbox and its \
                 reply awaited there"
                    .to_owned(),
                "nats://resonate.recv.bench",
            )
        }
    };
    let _ = writeln!(
        w,
        "- Load: `resonate-load` (tests/), closed loop: each client is a thread with {connection}; \
         {} s per run after {} s of warm-up, one server for all runs; the load generator shares the CPUs \
         with the server.\n",
        plan.seconds, plan.warmup
    );
    let _ = writeln!(w, "## Cost\n\n| | {} | budget |\n|---|---:|---:|", m.name);
    let _ = writeln!(
        w,
        "| stripped binary | {:.2} MB ({} bytes) | {} |",
        r.binary_bytes as f64 / 1e6,
        group(r.binary_bytes),
        limit(budget.binary_bytes.map(|b| format!("{} bytes", group(b))))
    );
    let _ = writeln!(
        w,
        "| crates in the dependency graph (normal + build) | {} | {} |",
        r.crates,
        limit(budget.crates.map(|c| c.to_string()))
    );
    let _ = writeln!(w, "| lines of generated Rust (src/) | {} | |", group(r.lines as u64));
    let _ = writeln!(
        w,
        "| start to first response on a fresh store (creates it), {} cold starts (min / median / max) | {:.1} / {:.1} / {:.1} ms | |",
        starts.len(),
        starts[0],
        median(starts),
        starts[starts.len() - 1]
    );
    let _ = writeln!(
        w,
        "| start to first response on an existing store (a restart), {} cold starts (min / median / max) | {:.1} / {:.1} / {:.1} ms | |",
        restarts.len(),
        restarts[0],
        median(restarts),
        restarts[restarts.len() - 1]
    );
    let _ = writeln!(w, "| idle RSS after start | {} | |", mib(r.rss_start_kb));
    let per_sec = |ms: f64| ms / r.idle.seconds;
    let _ = writeln!(
        w,
        "| idle CPU over {:.0} s after start: server{} | {:.2} ms/s{} | |",
        r.idle.seconds,
        if m.store == Store::Sqlite { "" } else { " / database server (all its processes)" },
        per_sec(r.idle.cpu.server_ms),
        if m.store == Store::Sqlite { String::new() } else { format!(" / {:.2} ms/s", per_sec(r.idle.cpu.database_ms)) }
    );
    let _ = writeln!(w, "| idle wake-ups of the server (context switches, all threads) | {:.1}/s | |", r.idle.wakeups / r.idle.seconds);
    let _ = writeln!(w, "| idle RSS after the load runs | {} | |", mib(r.rss_after_kb));
    let _ = writeln!(w, "| sequential promise.create p50 (1 client) | {seq} | |");
    let _ = writeln!(
        w,
        "| promise.create + promise.settle at 16 clients | {} | |\n",
        pair.map_or("n/a".into(), |p| format!("{} requests/s", group(p as u64)))
    );
    let _ = writeln!(w, "## Throughput and latency\n");
    let _ = writeln!(
        w,
        "- workflow: promise.create with `resonate:target: {target}` (no worker listens: the execute \
         message is queued{}), task.acquire (version 0), task.fence creating two child promises, \
         task.fence settling them, task.fulfill: 7 requests per iteration.",
        if m.transport == Transport::Nats { " and published to a subject nobody subscribes to" } else { "" }
    );
    let _ = writeln!(w, "- promise: promise.create, promise.get, promise.settle: 3 requests per iteration.\n");
    let _ = writeln!(
        w,
        "CPU is user + system time of the server{} over the whole run, warm-up included, divided by \
         the run's requests or iterations (their rate × (warm-up + measured seconds)); an iteration of the \
         workflow mix is one durable execution.\n",
        if m.store == Store::Sqlite { "" } else { " and, after the slash, of the database server's processes" }
    );
    let _ = writeln!(w, "| mix | clients | requests/s | iterations/s | p50 µs | p99 µs | p99.9 µs | CPU µs/request | CPU ms/iteration |");
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let run_secs = plan.seconds + plan.warmup;
    for l in &r.loads {
        let q = &l.latency_us;
        let cost = |per: f64, scale: f64, digits: usize| {
            let each = |ms: f64| if per > 0.0 { ms * scale / (per * run_secs) } else { f64::NAN };
            match m.store {
                Store::Sqlite => format!("{:.digits$}", each(l.cpu.server_ms)),
                _ => format!("{:.digits$} / {:.digits$}", each(l.cpu.server_ms), each(l.cpu.database_ms)),
            }
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            l.mix,
            l.clients,
            group(l.requests_per_sec as u64),
            group(l.iterations_per_sec as u64),
            us(q.p50),
            us(q.p99),
            us(q.p999),
            cost(l.requests_per_sec, 1000.0, 0),
            cost(l.iterations_per_sec, 1.0, 2)
        );
    }
    let _ = writeln!(w, "\n![requests/s by clients]({}.svg)\n", m.name);
    let _ = writeln!(w, "### Per kind\n\n| mix | clients | kind | requests/s | p50 µs | p99 µs | p99.9 µs |");
    let _ = writeln!(w, "|---|---:|---|---:|---:|---:|---:|");
    for l in &r.loads {
        for k in &l.kinds {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} |",
                l.mix,
                l.clients,
                k.kind,
                group(k.per_sec as u64),
                us(k.p50_us),
                us(k.p99_us),
                us(k.p999_us)
            );
        }
    }
    s
}

/// A line chart of requests/s against clients, one line per mix, as a standalone SVG.
fn svg(target: &str, r: &Measured) -> String {
    let (width, height, left, right, top, bottom) = (640.0, 340.0, 80.0, 24.0, 48.0, 56.0);
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);
    let mut clients: Vec<usize> = r.loads.iter().map(|l| l.clients).collect();
    clients.sort_unstable();
    clients.dedup();
    let peak = r.loads.iter().map(|l| l.requests_per_sec).fold(1.0, f64::max);
    let step = {
        let raw = peak / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        [1.0, 2.0, 5.0, 10.0].iter().map(|f| f * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude)
    };
    let top_value = (peak * 1.08 / step).ceil() * step;
    let x = |i: usize| left + (i as f64 + 0.5) * plot_w / clients.len() as f64;
    let y = |v: f64| top + plot_h - v / top_value * plot_h;
    let short = |v: f64| match v {
        v if v >= 1000.0 && v % 1000.0 == 0.0 => format!("{}k", v / 1000.0),
        v if v >= 1000.0 => format!("{:.1}k", v / 1000.0),
        v => format!("{v:.0}"),
    };
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(w, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        w,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{target}: requests/s by concurrent clients (closed loop, loopback)</text>"#,
        width / 2.0
    );
    let mut v = 0.0;
    while v <= top_value + step / 2.0 {
        let (x2, gy, tx) = (left + plot_w, y(v), left - 8.0);
        let _ = writeln!(
            w,
            r##"<line x1="{left}" x2="{x2}" y1="{gy:.1}" y2="{gy:.1}" stroke="#ddd"/><text x="{tx}" y="{:.1}" text-anchor="end">{}</text>"##,
            gy + 4.0,
            short(v)
        );
        v += step;
    }
    for (i, c) in clients.iter().enumerate() {
        let _ = writeln!(w, r#"<text x="{:.1}" y="{}" text-anchor="middle">{c}</text>"#, x(i), top + plot_h + 20.0);
    }
    let _ =
        writeln!(w, r#"<text x="{}" y="{}" text-anchor="middle">clients</text>"#, left + plot_w / 2.0, height - 10.0);
    let _ = writeln!(
        w,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">requests/s</text>"#,
        top + plot_h / 2.0
    );
    for (n, (mix, color)) in MIXES.iter().zip(["#2b6cb0", "#dd6b20"]).enumerate() {
        let other = MIXES[1 - n];
        // (x, value, whether the other mix is higher here)
        let points: Vec<(f64, f64, bool)> = clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let v = r.load(mix, *c)?.requests_per_sec;
                Some((x(i), v, r.load(other, *c).is_some_and(|o| o.requests_per_sec > v)))
            })
            .collect();
        let line: Vec<String> = points.iter().map(|(px, v, _)| format!("{px:.1},{:.1}", y(*v))).collect();
        let _ =
            writeln!(w, r#"<polyline fill="none" stroke="{color}" stroke-width="2.5" points="{}"/>"#, line.join(" "));
        // Each value goes on the side away from the other line, so close values stay legible.
        for (px, v, below) in &points {
            let _ = writeln!(
                w,
                r#"<circle cx="{px:.1}" cy="{:.1}" r="4" fill="{color}"/><text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="{color}">{}</text>"#,
                y(*v),
                y(*v) + if *below { 18.0 } else { -9.0 },
                short(*v)
            );
        }
        let ly = top + 4.0 + n as f64 * 18.0;
        let _ = writeln!(
            w,
            r#"<line x1="{0}" x2="{1}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2.5"/><text x="{2}" y="{3}">{mix} mix</text>"#,
            left + 12.0,
            left + 36.0,
            left + 42.0,
            ly + 4.0
        );
    }
    let _ = writeln!(w, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_and_median() {
        assert_eq!(group(0), "0");
        assert_eq!(group(2_255_984), "2,255,984");
        assert_eq!(group(999), "999");
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }

    #[test]
    fn today_is_a_date() {
        let d = today();
        assert_eq!(d.len(), 10, "{d}");
        assert!(d.starts_with("20"), "{d}");
    }
}
