//! resonate-e2e: runs workflows written with the official Resonate SDKs against a generated server.
//!
//! `resonate-e2e --target sqlite-http [--sdk python-0.8.1]... [--scenario countdown]... [--jobs N]`
//!
//! Each SDK gets what it needs installed once into a cache outside the repository
//! (`$RESONATE_E2E_CACHE`, default `~/.cache/resonate-gen/e2e`): a venv per Python SDK version,
//! an npm project per TypeScript SDK version, the Rust SDK's published source and one Cargo
//! target dir for its own e2e suite and for our Rust worker. The workflows themselves live in
//! `tests/e2e/<language>/`; each program has two modes, `worker` (serve the functions, print
//! `ready`) and `invoke` (start one function on the workers' group, print its result as JSON).
//! Every case gets a freshly started server and a fresh worker group. The last line is
//! `N passed, N failed`; cases that fail because of a known SDK defect are listed apart and
//! counted in neither.
//!
//! A NATS target (`transport: nats` in its manifest) has no HTTP listener: the harness starts it
//! on the local NATS server (127.0.0.1:4222, `tests/nats-up`) as it does for every suite, each
//! case on its own api prefix and queue group, with a worker topic of its own, and the SDKs
//! connect with their NATS connectors. Only the SDK versions that have one run there; a target
//! on a shared database (postgres-nats) runs two replicas in one queue group per case.

use resonate_tests::jwt::AdminKey;
use resonate_tests::nats::{self, Nats};
use resonate_tests::server::{self, repo_root, Server};
use resonate_tests::transport::{Endpoint, Rpc};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use std::{env, thread};

const USAGE: &str =
    "usage: resonate-e2e --target NAME [--sdk SDK]... [--scenario NAME]... [--jobs N]";

/// Every SDK this runner knows, as `<language>-<version>`.
const SDKS: &[&str] = &[
    "python-0.8.1",
    "python-0.7.4",
    "typescript-0.11.5",
    "typescript-0.11.4",
    "rust-0.6.0",
];

/// The scenarios every SDK runs; the Rust SDK also runs its own e2e suite (`sdk-suite`), and a
/// target run as several replicas also [`REPLICA_SCENARIOS`].
const SCENARIOS: &[&str] = &[
    "countdown",
    "fan-out",
    "human-in-the-loop",
    "worker-crash",
    "server-crash",
    "long-step",
    "worker-crash-in-step",
    "server-crash-in-step",
];

/// The scenarios a target run as several replicas adds: one replica is killed and stays down.
const REPLICA_SCENARIOS: &[&str] = &["replica-crash", "replica-crash-in-step"];

/// The SDK versions that ship a NATS connector: the only ones a NATS target runs.
const NATS_SDKS: &[&str] = &["python-0.8.1", "typescript-0.11.5"];

/// Installed beside `resonate-sdk` for NATS targets. nats-py is pinned because 2.16 validates
/// header names as RFC 7230 tokens and refuses the `resonate:origin` header resonate-nats 0.8.0
/// puts on every request, so every request fails; 2.15.0 sends it.
const PYTHON_NATS_PACKAGES: &[&str] = &["resonate-nats==0.8.0", "nats-py==2.15.0"];

/// Installed beside `@resonatehq/sdk` for NATS targets: the peer dependency of its `NatsNetwork`.
const TYPESCRIPT_NATS_PACKAGES: &[&str] = &["@nats-io/transport-node@^3"];

/// Cases expected to fail because of a defect in a published SDK, with the defect.
const KNOWN_DEFECTS: &[(&str, &str, &str)] = &[(
    "typescript-0.11.4",
    "long-step",
    "its heartbeat always sends `tasks: []`, so no lease is ever extended and a step longer than the ttl loses its task",
)];

/// The Rust SDK's published e2e suite has this many tests.
const RUST_SUITE_TESTS: usize = 30;
/// How long a worker has to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one invocation may take.
const RESULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Task lease for the scenarios that do not test leases (the SDKs' own default).
const DEFAULT_TTL_MS: u64 = 60_000;
/// How long the runner's own requests wait for an answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The protocol version of the runner's own requests.
const PROTOCOL_VERSION: &str = "2026-04-01";

// ---------------------------------------------------------------------------------------------
// Command line and main
// ---------------------------------------------------------------------------------------------

struct Options {
    target: String,
    sdks: Vec<String>,
    scenarios: Vec<String>,
    jobs: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        target: String::new(),
        sdks: vec![],
        scenarios: vec![],
        jobs: 3,
    };
    let mut args = env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--target" => options.target = value,
            "--sdk" if SDKS.contains(&value.as_str()) => options.sdks.push(value),
            "--sdk" => return Err(format!("unknown SDK {value}; known: {}", SDKS.join(", "))),
            "--scenario" => options.scenarios.push(value),
            "--jobs" => options.jobs = value.parse().map_err(|_| USAGE)?,
            _ => return Err(USAGE.into()),
        }
    }
    if options.target.is_empty() || options.jobs == 0 {
        return Err(USAGE.into());
    }
    if options.sdks.is_empty() {
        options.sdks = SDKS.iter().map(|s| s.to_string()).collect();
    }
    Ok(options)
}

/// The server under test: its binary, and how the SDKs reach it.
struct Target {
    name: String,
    bin: PathBuf,
    /// Served over NATS (no HTTP listener) rather than HTTP.
    nats: bool,
    /// Server processes per case: a NATS target on a shared database runs two replicas on one
    /// database in one queue group.
    replicas: usize,
    /// On a target with `auth: jwt`, the token every SDK process is given through its token
    /// option (the apps read it from `RESONATE_E2E_TOKEN`): the one the tests' servers trust.
    token: Option<String>,
}

impl Target {
    /// Reads `targets/<name>.yaml` for the store and transport, and builds the server.
    fn load(name: &str) -> Result<Target, String> {
        let path = repo_root().join("targets").join(format!("{name}.yaml"));
        let text = fs::read_to_string(&path)
            .map_err(|e| format!("unknown target {name}: cannot read {}: {e}", path.display()))?;
        let manifest: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let field = |key: &str| manifest[key].as_str().unwrap_or_default().to_string();
        let nats = field("transport") == "nats";
        let replicas = if nats && field("store") != "sqlite" {
            2
        } else {
            1
        };
        let token = server::has_auth(name).then(|| AdminKey::shared().token.clone());
        Ok(Target {
            name: name.to_string(),
            bin: server::build(name),
            nats,
            replicas,
            token,
        })
    }

    /// The scenarios run when none are named.
    fn default_scenarios(&self) -> Vec<String> {
        let mut scenarios: Vec<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
        if self.replicas > 1 {
            scenarios.extend(REPLICA_SCENARIOS.iter().map(|s| s.to_string()));
        }
        if !self.nats {
            scenarios.push("sdk-suite".into());
        }
        scenarios
    }
}

/// One scenario for one SDK, or (scenario `sdk-suite`) the Rust SDK's own suite.
struct Case {
    sdk: Arc<Sdk>,
    scenario: String,
}

#[derive(Debug)]
enum Outcome {
    Passed,
    Failed(String),
    /// Failed as a known SDK defect predicts: (defect, what happened).
    KnownDefect(&'static str, String),
}

struct Tally {
    passed: usize,
    failed: Vec<String>,
    known: Vec<String>,
}

impl Tally {
    fn record(&mut self, name: &str, outcome: Outcome, took: Duration) {
        let secs = took.as_secs_f64();
        match outcome {
            Outcome::Passed => {
                self.passed += 1;
                println!("PASS  {name} ({secs:.1}s)");
            }
            Outcome::Failed(why) => {
                println!("FAIL  {name} ({secs:.1}s): {why}");
                self.failed.push(name.to_string());
            }
            Outcome::KnownDefect(defect, what) => {
                let what = what.lines().next().unwrap_or("");
                println!(
                    "KNOWN {name} ({secs:.1}s): known SDK defect: {defect}\n      observed: {what}"
                );
                self.known.push(format!("{name}: {defect}"));
            }
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("resonate-e2e: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let cache = cache_dir();
    println!(
        "resonate-e2e: target {}, cache {}",
        options.target,
        cache.display()
    );
    let target = match Target::load(&options.target) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("resonate-e2e: {e}");
            return ExitCode::from(2);
        }
    };
    println!("server: built {}", target.bin.display());
    if target.nats {
        if let Err(e) = Nats::connect(nats::LOCAL) {
            println!(
                "resonate-e2e: no NATS server at {} ({e}); start one with `bash tests/nats-up`",
                nats::LOCAL
            );
            return ExitCode::FAILURE;
        }
        println!(
            "transport: NATS at {}, {} server replica(s) per case",
            nats::LOCAL,
            target.replicas
        );
    }
    let scenarios = if options.scenarios.is_empty() {
        target.default_scenarios()
    } else {
        options.scenarios.clone()
    };

    let mut tally = Tally {
        passed: 0,
        failed: vec![],
        known: vec![],
    };
    let mut cases = VecDeque::new();
    for name in &options.sdks {
        if target.nats && !NATS_SDKS.contains(&name.as_str()) {
            println!(
                "skip  {name}: this SDK version has no NATS connector, so {} cannot run it (NATS: {})",
                target.name,
                NATS_SDKS.join(", ")
            );
            continue;
        }
        let setup_started = Instant::now();
        let scenarios: Vec<&String> = scenarios
            .iter()
            .filter(|s| s.as_str() != "sdk-suite" || name.starts_with("rust-"))
            .collect();
        match Sdk::setup(name, &cache, target.nats) {
            Ok(sdk) => {
                println!(
                    "setup {name}: ready ({:.1}s)",
                    setup_started.elapsed().as_secs_f64()
                );
                let sdk = Arc::new(sdk);
                cases.extend(scenarios.into_iter().map(|s| Case {
                    sdk: sdk.clone(),
                    scenario: s.clone(),
                }));
            }
            Err(e) => {
                println!("setup {name}: FAILED: {e}");
                for s in scenarios {
                    tally.record(
                        &format!("{name} {s}"),
                        Outcome::Failed("SDK setup failed".into()),
                        Duration::ZERO,
                    );
                }
            }
        }
    }

    let queue = Mutex::new(cases);
    let tally = Mutex::new(tally);
    thread::scope(|scope| {
        for _ in 0..options.jobs {
            scope.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let case_started = Instant::now();
                for (name, outcome) in run_case(&target, &case) {
                    tally
                        .lock()
                        .unwrap()
                        .record(&name, outcome, case_started.elapsed());
                }
            });
        }
    });

    let tally = tally.into_inner().unwrap();
    println!("finished in {:.0}s", started.elapsed().as_secs_f64());
    if !tally.known.is_empty() {
        println!(
            "known SDK defects ({}, counted neither passed nor failed):",
            tally.known.len()
        );
        for known in &tally.known {
            println!("  {known}");
        }
    }
    if !tally.failed.is_empty() {
        println!("failed:");
        for failed in &tally.failed {
            println!("  {failed}");
        }
    }
    println!("{} passed, {} failed", tally.passed, tally.failed.len());
    if tally.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one case on its own server; the Rust suite yields one outcome per test.
fn run_case(target: &Target, case: &Case) -> Vec<(String, Outcome)> {
    let name = format!("{} {}", case.sdk.name, case.scenario);
    let known = KNOWN_DEFECTS
        .iter()
        .find(|(sdk, scenario, _)| *sdk == case.sdk.name && *scenario == case.scenario)
        .map(|(_, _, defect)| *defect);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if case.scenario == "sdk-suite" {
            if target.nats {
                return vec![(
                    name.clone(),
                    Outcome::Failed("the Rust SDK's suite speaks HTTP only".into()),
                )];
            }
            return rust_suite(&target.bin, &case.sdk, target.token.as_deref());
        }
        let mut run = match Run::new(target, &case.sdk, &case.scenario) {
            Ok(run) => run,
            Err(e) => return vec![(name.clone(), Outcome::Failed(e))],
        };
        let result = match case.scenario.as_str() {
            "countdown" => countdown(&mut run),
            "fan-out" => fan_out(&mut run),
            "human-in-the-loop" => human_in_the_loop(&mut run),
            "worker-crash" => worker_crash(&mut run),
            "server-crash" => server_crash(&mut run),
            "long-step" => long_step(&mut run),
            "worker-crash-in-step" => worker_crash_in_step(&mut run),
            "server-crash-in-step" => server_crash_in_step(&mut run),
            "replica-crash" => replica_crash(&mut run),
            "replica-crash-in-step" => replica_crash_in_step(&mut run),
            other => Err(format!(
                "unknown scenario {other}; known: {}, {}, sdk-suite",
                SCENARIOS.join(", "),
                REPLICA_SCENARIOS.join(", ")
            )),
        };
        vec![(name.clone(), run.finish(result))]
    }));
    let outcomes = result.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        vec![(name, Outcome::Failed(why))]
    });
    outcomes
        .into_iter()
        .map(|(name, outcome)| match (outcome, known) {
            (Outcome::Failed(what), Some(defect)) => (name, Outcome::KnownDefect(defect, what)),
            (Outcome::Passed, Some(defect)) => (
                name,
                Outcome::Failed(format!(
                    "passed, but a known SDK defect predicts failure ({defect})"
                )),
            ),
            (outcome, _) => (name, outcome),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------------------------

/// A workflow of steps and durable sleeps; invoking the same id again returns the stored result
/// without running any step again.
fn countdown(run: &mut Run) -> Result<(), String> {
    run.worker(DEFAULT_TTL_MS)?;
    let args = json!([run.dir_arg(), 3, 200]);
    let expected = json!(["count-3", "count-2", "count-1"]);
    let first = run
        .invoke("countdown-1", "countdown", &args)?
        .result(RESULT_TIMEOUT)?;
    expect_eq("first result", &first, &expected)?;
    run.steps_exactly_once(&["count-3", "count-2", "count-1"])?;
    let again = run
        .invoke("countdown-1", "countdown", &args)?
        .result(RESULT_TIMEOUT)?;
    expect_eq("result of the second invocation", &again, &expected)?;
    run.steps_exactly_once(&["count-3", "count-2", "count-1"])
}

/// A parent starts ten children on a group of two workers in parallel and sums their results.
fn fan_out(run: &mut Run) -> Result<(), String> {
    run.worker(DEFAULT_TTL_MS)?;
    run.worker(DEFAULT_TTL_MS)?;
    let result = run
        .invoke("fan-out-1", "fan_out", &json!([10]))?
        .result(RESULT_TIMEOUT)?;
    expect_eq("result", &result, &json!(385))
}

/// A workflow awaits a promise; the test settles it with a plain `promise.settle` request.
fn human_in_the_loop(run: &mut Run) -> Result<(), String> {
    run.worker(DEFAULT_TTL_MS)?;
    let invocation = run.invoke("approval-1", "approval", &json!([run.dir_arg()]))?;
    let id_file = run.dir.join("promise-id");
    wait_until(
        RESULT_TIMEOUT,
        "the workflow to announce its promise id",
        || fs::read_to_string(&id_file).is_ok_and(|id| !id.is_empty()),
    )?;
    let id = fs::read_to_string(&id_file).map_err(|e| e.to_string())?;
    let value = json!({ "data": base64(br#""yes""#) });
    let (status, body) = run.call(
        "promise.settle",
        json!({ "id": id, "state": "resolved", "value": value }),
    );
    if status != 200 {
        return Err(format!("promise.settle {id} answered {status}: {body}"));
    }
    let result = invocation.result(RESULT_TIMEOUT)?;
    expect_eq("result", &result, &json!({ "approved": "yes" }))
}

/// SIGKILL the worker while the workflow sleeps durably; a new worker finishes it.
fn worker_crash(run: &mut Run) -> Result<(), String> {
    let first = run.worker(5_000)?;
    let invocation = run.invoke("crash-1", "countdown", &json!([run.dir_arg(), 3, 2_000]))?;
    run.wait_sleeping("crash-1", 1)?;
    run.kill(first);
    run.worker(5_000)?;
    let result = invocation.result(RESULT_TIMEOUT)?;
    expect_eq("result", &result, &json!(["count-3", "count-2", "count-1"]))?;
    run.steps_exactly_once(&["count-3", "count-2", "count-1"])
}

/// SIGKILL the worker in the middle of a step; once its lease expires another worker runs the
/// step again (it never completed) and finishes the workflow.
fn worker_crash_in_step(run: &mut Run) -> Result<(), String> {
    let first = run.worker(4_000)?;
    let invocation = run.invoke("crash-2", "long_step", &json!([run.dir_arg(), 2_000]))?;
    wait_until(RESULT_TIMEOUT, "crash-2 to be acquired", || {
        run.call("task.get", json!({ "id": "crash-2" })).1["data"]["task"]["state"] == "acquired"
    })?;
    thread::sleep(Duration::from_millis(500));
    run.kill(first);
    run.worker(4_000)?;
    let result = invocation.result(RESULT_TIMEOUT)?;
    expect_eq("result", &result, &json!("slow done"))?;
    run.steps_exactly_once(&["slow"])
}

/// SIGKILL the server while a step runs under a lease and restart it at once: the step
/// completes once, and the worker fulfils the task on the restarted server.
fn server_crash_in_step(run: &mut Run) -> Result<(), String> {
    run.worker(5_000)?;
    let invocation = run.invoke(
        "server-crash-2",
        "long_step",
        &json!([run.dir_arg(), 3_000]),
    )?;
    wait_until(RESULT_TIMEOUT, "server-crash-2 to be acquired", || {
        run.call("task.get", json!({ "id": "server-crash-2" })).1["data"]["task"]["state"]
            == "acquired"
    })?;
    thread::sleep(Duration::from_millis(500));
    run.server.kill_all();
    thread::sleep(Duration::from_millis(500));
    run.server.restart_all();
    let result = invocation.result(RESULT_TIMEOUT)?;
    expect_eq("result", &result, &json!("slow done"))?;
    run.steps_exactly_once(&["slow"])
}

/// SIGKILL the server (every replica) while the workflow sleeps durably and restart it on the
/// same store (and port, over HTTP).
fn server_crash(run: &mut Run) -> Result<(), String> {
    run.worker(5_000)?;
    let invocation = run.invoke(
        "server-crash-1",
        "countdown",
        &json!([run.dir_arg(), 3, 3_000]),
    )?;
    run.wait_sleeping("server-crash-1", 1)?;
    run.server.kill_all();
    thread::sleep(Duration::from_millis(500));
    run.server.restart_all();
    let result = invocation.result(RESULT_TIMEOUT)?;
    expect_eq("result", &result, &json!(["count-3", "count-2", "count-1"]))?;
    run.steps_exactly_once(&["count-3", "count-2", "count-1"])
}

/// Replicas only: SIGKILL one of them while the workflow sleeps durably and leave it down; the
/// others fire the sleep's timeout, dispatch the task and answer every request.
fn replica_crash(run: &mut Run) -> Result<(), String> {
    if run.server.replicas() < 2 {
        return Err(format!("{} runs one server process per case", run.target));
    }
    run.worker(5_000)?;
    let invocation = run.invoke(
        "replica-crash-1",
        "countdown",
        &json!([run.dir_arg(), 3, 2_000]),
    )?;
    run.wait_sleeping("replica-crash-1", 1)?;
    run.server.kill_replica(0);
    let result = invocation.result(RESULT_TIMEOUT)?;
    expect_eq("result", &result, &json!(["count-3", "count-2", "count-1"]))?;
    run.steps_exactly_once(&["count-3", "count-2", "count-1"])
}

/// Replicas only: SIGKILL one of them 0.5 s into a 3 s step (lease 5 s) and leave it down; the
/// others take the heartbeats and the fulfil, and the step completes once.
fn replica_crash_in_step(run: &mut Run) -> Result<(), String> {
    if run.server.replicas() < 2 {
        return Err(format!("{} runs one server process per case", run.target));
    }
    run.worker(5_000)?;
    let invocation = run.invoke(
        "replica-crash-2",
        "long_step",
        &json!([run.dir_arg(), 3_000]),
    )?;
    wait_until(RESULT_TIMEOUT, "replica-crash-2 to be acquired", || {
        run.call("task.get", json!({ "id": "replica-crash-2" })).1["data"]["task"]["state"]
            == "acquired"
    })?;
    thread::sleep(Duration::from_millis(500));
    run.server.kill_replica(0);
    let result = invocation.result(RESULT_TIMEOUT)?;
    expect_eq("result", &result, &json!("slow done"))?;
    run.steps_exactly_once(&["slow"])
}

/// A 6 s step under a 2 s lease finishes exactly once: heartbeats keep extending the lease.
fn long_step(run: &mut Run) -> Result<(), String> {
    run.worker(2_000)?;
    let invocation = run.invoke("long-1", "long_step", &json!([run.dir_arg(), 6_000]))?;
    let result = invocation.result_unless(RESULT_TIMEOUT, || match run.steps().len() {
        0 | 1 => Ok(()),
        n => Err(format!(
            "the 6 s step under a 2 s lease completed {n} times before the workflow finished"
        )),
    })?;
    expect_eq("result", &result, &json!("slow done"))?;
    thread::sleep(Duration::from_millis(500));
    run.steps_exactly_once(&["slow"])
}

/// The Rust SDK's published `tests/e2e.rs`, against a fresh server; one outcome per test.
/// On a jwt target the suite's clients get the token from `RESONATE_TOKEN`, the SDK's fallback
/// for a `token` its config leaves out (the suite is the SDK's, so it has no option of ours).
fn rust_suite(bin: &Path, sdk: &Sdk, token: Option<&str>) -> Vec<(String, Outcome)> {
    let name = |test: &str| format!("{} sdk-suite::{test}", sdk.name);
    let Some(suite) = &sdk.suite else {
        return vec![(
            name("*"),
            Outcome::Failed("only the Rust SDK has a suite".into()),
        )];
    };
    let server = Server::start(bin, &[]);
    let mut command = Command::new(suite);
    if let Some(token) = token {
        command.env("RESONATE_TOKEN", token);
    }
    let output = command
        .args(["--test-threads", "2"])
        .env("RESONATE_URL", format!("http://{}", server.addr))
        .current_dir(suite.parent().unwrap())
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            return vec![(
                name("*"),
                Outcome::Failed(format!("cannot run {}: {e}", suite.display())),
            )]
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut outcomes: Vec<(String, Outcome)> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("test ")?.split_once(" ... "))
        .map(|(test, verdict)| {
            let outcome = match verdict.trim() {
                "ok" => Outcome::Passed,
                other => Outcome::Failed(format!("{other}\n{}", failure_section(&stdout, test))),
            };
            (name(test), outcome)
        })
        .collect();
    if outcomes.len() != RUST_SUITE_TESTS {
        let tail = tail(
            &format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
            20,
        );
        outcomes.push((
            name("*"),
            Outcome::Failed(format!(
                "expected {RUST_SUITE_TESTS} tests, saw {}:\n{tail}",
                outcomes.len()
            )),
        ));
    }
    outcomes
}

/// The `---- test stdout ----` section libtest prints for a failed test.
fn failure_section(stdout: &str, test: &str) -> String {
    let header = format!("---- {test} stdout ----");
    stdout
        .split(&header)
        .nth(1)
        .map(|s| s.split("\n\n").next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// One case: a server, worker processes, invocations, a directory for their files
// ---------------------------------------------------------------------------------------------

struct Run<'a> {
    sdk: &'a Sdk,
    target: &'a str,
    /// [`Target::token`].
    token: Option<&'a str>,
    server: Backend,
    /// Where the workflows write `steps.log` and `promise-id`, and the processes their logs.
    dir: PathBuf,
    group: String,
    workers: Vec<Option<Proc>>,
}

/// A child process that is killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Invocation {
    proc: Proc,
    out: PathBuf,
}

impl<'a> Run<'a> {
    fn new(target: &'a Target, sdk: &'a Sdk, scenario: &str) -> Result<Run<'a>, String> {
        let server = Backend::start(target);
        let dir = server.dir().join("e2e");
        let tag = server.tag();
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Lowercase and free of dots: over NATS the group is a token of the workers' subjects.
        let group = format!("{}-{}-{}", sdk.name.replace('.', "_"), scenario, tag);
        Ok(Run {
            sdk,
            target: &target.name,
            token: target.token.as_deref(),
            server,
            dir,
            group,
            workers: vec![],
        })
    }

    /// What the programs get as URL: the server's `http://` address, or over NATS
    /// `nats://host:port?serverTopic=..&workerTopic=..` (the connectors' api and worker prefixes).
    fn url(&self) -> String {
        self.server.url()
    }

    fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }

    fn spawn(&self, log_name: &str, args: &[&str], stdout: Option<&Path>) -> Result<Proc, String> {
        let log = self.dir.join(log_name);
        let err = fs::File::create(&log).map_err(|e| e.to_string())?;
        let out = match stdout {
            Some(path) => fs::File::create(path).map_err(|e| e.to_string())?,
            None => err.try_clone().map_err(|e| e.to_string())?,
        };
        let mut command = self.sdk.command();
        if let Some(token) = &self.token {
            command.env("RESONATE_E2E_TOKEN", token);
        }
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.sdk.program[0]))?;
        Ok(Proc { child, log })
    }

    /// Starts a worker with lease `ttl_ms` on the group and waits until it prints `ready`.
    fn worker(&mut self, ttl_ms: u64) -> Result<usize, String> {
        let n = self.workers.len();
        let (url, dir, ttl) = (self.url(), self.dir_arg(), ttl_ms.to_string());
        let mut proc = self.spawn(
            &format!("worker-{n}.log"),
            &["worker", &url, &self.group, &dir, &ttl],
            None,
        )?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = fs::read_to_string(&proc.log).unwrap_or_default();
            if log.lines().any(|line| line == "ready") {
                break;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                return Err(format!(
                    "worker {n} exited before it was ready ({status}):\n{}",
                    tail(&log, 15)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "worker {n} was not ready within {READY_TIMEOUT:?}:\n{}",
                    tail(&log, 15)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.workers.push(Some(proc));
        Ok(n)
    }

    /// SIGKILLs worker `n`.
    fn kill(&mut self, n: usize) {
        drop(self.workers[n].take());
    }

    /// Starts `func(args)` as `id` on the workers' group from a separate client process.
    fn invoke(&self, id: &str, func: &str, args: &Value) -> Result<Invocation, String> {
        let out = self.dir.join(format!("invoke-{id}.out"));
        let proc = self.spawn(
            &format!("invoke-{id}.log"),
            &[
                "invoke",
                &self.url(),
                &self.group,
                id,
                func,
                &args.to_string(),
            ],
            Some(&out),
        )?;
        Ok(Invocation { proc, out })
    }

    /// One protocol request to the server: its status and the whole response envelope.
    fn call(&self, kind: &str, data: Value) -> (u16, Value) {
        self.server.call(kind, data)
    }

    /// The lines of `steps.log`.
    fn steps(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("steps.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn steps_exactly_once(&self, expected: &[&str]) -> Result<(), String> {
        let steps = self.steps();
        if steps != expected {
            return Err(format!(
                "steps ran {steps:?}, expected each of {expected:?} exactly once"
            ));
        }
        Ok(())
    }

    /// Waits until `steps` steps completed and the root task `id` is suspended (in a durable sleep).
    fn wait_sleeping(&self, id: &str, steps: usize) -> Result<(), String> {
        wait_until(
            RESULT_TIMEOUT,
            &format!("{id} to complete {steps} step(s) and suspend"),
            || {
                self.steps().len() >= steps
                    && self.call("task.get", json!({ "id": id })).1["data"]["task"]["state"]
                        == "suspended"
            },
        )
    }

    /// Turns a scenario's result into an outcome, adding the logs of a failure. The server's
    /// directory (store, logs, the case's files) is kept after a failure or with `RESONATE_E2E_KEEP=1`.
    fn finish(self, result: Result<(), String>) -> Outcome {
        let keep = result.is_err() || env::var_os("RESONATE_E2E_KEEP").is_some_and(|v| v == "1");
        drop(self.workers); // before the server, so their logs end without reconnect noise
        let mut server = self.server;
        server.kill_all();
        server.save_logs(&self.dir);
        let kept = server.dirs();
        let outcome = match result {
            Ok(()) => Outcome::Passed,
            Err(mut report) => {
                let mut logs: Vec<PathBuf> = fs::read_dir(&self.dir)
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|x| x == "log"))
                            .collect()
                    })
                    .unwrap_or_default();
                logs.sort();
                for log in logs.iter().filter(|log| !log.ends_with("steps.log")) {
                    let text = fs::read_to_string(log).unwrap_or_default();
                    if !text.trim().is_empty() {
                        report += &format!("\n  --- {} ---\n{}", log.display(), tail(&text, 12));
                    }
                }
                Outcome::Failed(report + &format!("\n  (kept {kept})"))
            }
        };
        if keep {
            if matches!(outcome, Outcome::Passed) {
                eprintln!("      kept {kept}");
            }
            std::mem::forget(server);
        }
        outcome
    }
}

impl Invocation {
    /// Waits for the invocation to exit and returns the JSON on the last line of its stdout.
    fn result(self, timeout: Duration) -> Result<Value, String> {
        self.result_unless(timeout, || Ok(()))
    }

    /// Like [`Invocation::result`], but gives up as soon as `check` fails.
    fn result_unless(
        mut self,
        timeout: Duration,
        check: impl Fn() -> Result<(), String>,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                break status;
            }
            check()?;
            if Instant::now() > deadline {
                let log = fs::read_to_string(&self.proc.log).unwrap_or_default();
                return Err(format!(
                    "no result within {timeout:?}; invoke log:\n{}",
                    tail(&log, 15)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        };
        let out = fs::read_to_string(&self.out).unwrap_or_default();
        let last = out.lines().last().unwrap_or("");
        if !status.success() {
            let log = fs::read_to_string(&self.proc.log).unwrap_or_default();
            return Err(format!("invoke exited with {status}:\n{}", tail(&log, 15)));
        }
        serde_json::from_str(last).map_err(|e| format!("invoke printed {last:?}, not JSON: {e}"))
    }
}

fn expect_eq(what: &str, got: &Value, expected: &Value) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{what}: got {got}, expected {expected}"))
    }
}

fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Standard base64 with padding, as the SDKs encode `value.data`.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ABC[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The case's server: the harness's server processes, over HTTP or NATS
// ---------------------------------------------------------------------------------------------

/// One case's server: one process, or for a NATS target on a shared database two replicas on one
/// database in one queue group, all started by the harness ([`Server::start`],
/// [`Server::replica`]). A NATS server gets an api prefix and queue group of its own on the
/// local NATS server, and the case a worker topic of its own, so concurrent cases (and other
/// runs) never see each other's requests or messages.
struct Backend {
    /// The first started; the case's files live in its directory.
    servers: Vec<Server>,
    /// Over NATS: the prefix of the workers' subjects (the connectors' `workerTopic`).
    worker_topic: Option<String>,
}

impl Backend {
    /// Starts `target`'s server(s), each ready to answer (over NATS: the first, then a replica
    /// once either answers, as the queue group hides which one did). A NATS server logs one line
    /// per answered request (`--level debug`): which replica answered what, for a failure's report.
    fn start(target: &Target) -> Backend {
        let args: &[&str] = if target.nats {
            &["--level", "debug"]
        } else {
            &[]
        };
        let first = Server::start(&target.bin, args);
        let mut servers = vec![first];
        for _ in 1..target.replicas {
            let replica = servers[0].replica(args);
            servers.push(replica);
        }
        let worker_topic = target.nats.then(|| format!("e2e{}.recv", nats::unique()));
        Backend {
            servers,
            worker_topic,
        }
    }

    /// What the programs get as URL: the server's `http://` address, or over NATS
    /// `nats://host:port?serverTopic=..&workerTopic=..` (the connectors' api and worker prefixes).
    fn url(&self) -> String {
        match (self.servers[0].endpoint(), &self.worker_topic) {
            (Endpoint::Nats(at), Some(topic)) => format!(
                "nats://{}?serverTopic={}&workerTopic={topic}",
                at.nats, at.prefix
            ),
            (endpoint, _) => endpoint.to_string(),
        }
    }

    /// A token of the case's worker group: the HTTP port, or over NATS a fresh unique one.
    fn tag(&self) -> String {
        match self.servers[0].endpoint() {
            Endpoint::Http(addr) => addr.port().to_string(),
            Endpoint::Nats(_) => nats::unique(),
        }
    }

    /// The directory holding the (first) store and, under `e2e/`, the case's files.
    fn dir(&self) -> &Path {
        &self.servers[0].dir
    }

    fn replicas(&self) -> usize {
        self.servers.len()
    }

    /// One request over the server's transport (over NATS with a `Resonate-Reply-To` header, as
    /// the connectors send it), with the admin token on a jwt target; a request nobody answers in
    /// time has status 0.
    fn call(&self, kind: &str, data: Value) -> (u16, Value) {
        let mut request = json!({
            "kind": kind,
            "head": { "corrId": "e2e", "version": PROTOCOL_VERSION },
            "data": data,
        });
        if let Some(token) = resonate_tests::jwt::admin_token() {
            request["head"]["auth"] = json!(token);
        }
        let mut conn = self.servers[0].endpoint().conn(CALL_TIMEOUT);
        match conn.rpc(request.to_string().as_bytes()) {
            Ok(answer) => match serde_json::from_slice::<Value>(&answer.body) {
                Ok(envelope) => (answer.status, envelope),
                Err(e) => (0, json!({ "error": format!("not JSON: {e}") })),
            },
            Err(e) => (0, json!({ "error": e.to_string() })),
        }
    }

    /// SIGKILLs every server process.
    fn kill_all(&mut self) {
        self.servers.iter_mut().for_each(Server::kill9);
    }

    /// Starts every server process again on its store (and port, over HTTP); waits until each
    /// is ready.
    fn restart_all(&mut self) {
        self.servers.iter_mut().for_each(Server::restart);
    }

    /// SIGKILLs replica `n` and leaves it down.
    fn kill_replica(&mut self, n: usize) {
        self.servers[n].kill9();
    }

    /// Copies each server's log into the case's directory: `server.log`, or over NATS
    /// `server-<replica>.log`.
    fn save_logs(&self, dir: &Path) {
        for (n, server) in self.servers.iter().enumerate() {
            let name = match self.worker_topic {
                Some(_) => format!("server-{n}.log"),
                None => "server.log".to_string(),
            };
            let _ = fs::write(dir.join(name), server.log());
        }
    }

    /// Every server's directory, for a report.
    fn dirs(&self) -> String {
        let dirs: Vec<String> = self
            .servers
            .iter()
            .map(|s| s.dir.display().to_string())
            .collect();
        dirs.join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// Installing the SDKs into the cache
// ---------------------------------------------------------------------------------------------

/// An installed SDK: how to run its scenario program, and for Rust its suite executable.
struct Sdk {
    name: String,
    program: Vec<String>,
    suite: Option<PathBuf>,
}

impl Sdk {
    /// Installs the SDK (with its NATS connector for a NATS target) unless the cache has it.
    fn setup(name: &str, cache: &Path, nats: bool) -> Result<Sdk, String> {
        let (language, version) = name
            .split_once('-')
            .ok_or("SDK names are <language>-<version>")?;
        let (program, suite) = match language {
            "python" => (setup_python(cache, version, nats)?, None),
            "typescript" => (setup_typescript(cache, version, nats)?, None),
            "rust" => {
                let (program, suite) = setup_rust(cache, version)?;
                (program, Some(suite))
            }
            _ => return Err(format!("no setup for {language}")),
        };
        Ok(Sdk {
            name: name.to_string(),
            program,
            suite,
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program[0]);
        command.args(&self.program[1..]);
        command
    }
}

fn cache_dir() -> PathBuf {
    match env::var_os("RESONATE_E2E_CACHE").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
            .join(".cache/resonate-gen/e2e"),
    }
}

/// Runs a setup command; on failure returns its output's tail.
fn sh(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{shown} failed ({}):\n{}",
            output.status,
            tail(&text, 20)
        ))
    }
}

/// Writes `contents` to `path` unless it already holds exactly that (keeps mtimes for Cargo).
fn sync_file(path: &Path, contents: &[u8]) -> Result<(), String> {
    if fs::read(path).ok().as_deref() != Some(contents) {
        fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
        fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A Python of at least 3.12: `$RESONATE_E2E_PYTHON`, else python3.13/3.12 on PATH, else pyenv's.
fn find_python() -> Result<PathBuf, String> {
    if let Some(python) = env::var_os("RESONATE_E2E_PYTHON") {
        return Ok(python.into());
    }
    for candidate in ["python3.13", "python3.12"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(candidate.into());
        }
    }
    let pyenv = PathBuf::from(env::var_os("PYENV_ROOT").unwrap_or_else(|| "/root/.pyenv".into()))
        .join("versions");
    let mut found: Vec<PathBuf> = fs::read_dir(&pyenv)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("3.12") || n.starts_with("3.13"))
    });
    found.sort();
    found
        .first()
        .map(|p| p.join("bin/python"))
        .ok_or_else(|| "no Python >= 3.12 found (set RESONATE_E2E_PYTHON)".into())
}

/// A venv with `resonate-sdk==version` (and for NATS, in a venv of its own, the connector);
/// runs `tests/e2e/python/app.py`.
fn setup_python(cache: &Path, version: &str, nats: bool) -> Result<Vec<String>, String> {
    let suffix = if nats { "-nats" } else { "" };
    let venv = cache.join(format!("python-{version}{suffix}"));
    let marker = venv.join(".e2e-installed");
    let mut packages = vec![format!("resonate-sdk=={version}")];
    if nats {
        packages.extend(PYTHON_NATS_PACKAGES.iter().map(|p| p.to_string()));
    }
    // The marker names what is installed (just the version, as before NATS, for the plain SDK).
    let wanted = if nats {
        packages.join(" ")
    } else {
        version.to_string()
    };
    if fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        let _ = fs::remove_dir_all(&venv);
        sh(Command::new(find_python()?).args(["-m", "venv"]).arg(&venv))?;
        sh(Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .args(&packages))?;
        fs::write(&marker, &wanted).map_err(|e| e.to_string())?;
    }
    let app = repo_root().join("tests/e2e/python/app.py");
    Ok(vec![
        venv.join("bin/python").display().to_string(),
        app.display().to_string(),
    ])
}

/// An npm project with `@resonatehq/sdk@version` (and for NATS, in a project of its own, the
/// NATS client); runs a copy of `tests/e2e/typescript/app.mjs` there.
fn setup_typescript(cache: &Path, version: &str, nats: bool) -> Result<Vec<String>, String> {
    let suffix = if nats { "-nats" } else { "" };
    let project = cache.join(format!("typescript-{version}{suffix}"));
    let marker = project.join(".e2e-installed");
    let mut packages = vec![format!("@resonatehq/sdk@{version}")];
    if nats {
        packages.extend(TYPESCRIPT_NATS_PACKAGES.iter().map(|p| p.to_string()));
    }
    // The marker names what is installed (just the version, as before NATS, for the plain SDK).
    let wanted = if nats {
        packages.join(" ")
    } else {
        version.to_string()
    };
    if fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        sync_file(
            &project.join("package.json"),
            b"{ \"private\": true, \"type\": \"module\" }\n",
        )?;
        sh(Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--save-exact",
                "--loglevel=error",
            ])
            .args(&packages)
            .current_dir(&project))?;
        fs::write(&marker, &wanted).map_err(|e| e.to_string())?;
    }
    let app = project.join("app.mjs");
    sync_file(
        &app,
        &read(&repo_root().join("tests/e2e/typescript/app.mjs"))?,
    )?;
    Ok(vec!["node".into(), app.display().to_string()])
}

/// The published crate's source (for its `tests/e2e.rs`) and our worker crate, built into one
/// target dir. Returns the worker program and the suite executable.
fn setup_rust(cache: &Path, version: &str) -> Result<(Vec<String>, PathBuf), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = cache.join("rust-target");
    let sdk = cache.join(format!("rust-sdk-{version}"));
    if !sdk.join("tests/e2e.rs").exists() {
        let source = registry_source(cache, version, &cargo)?;
        copy_dir(&source, &sdk)?;
    }
    let app = cache.join("rust-app");
    let ours = repo_root().join("tests/e2e/rust");
    sync_file(&app.join("Cargo.toml"), &read(&ours.join("Cargo.toml"))?)?;
    sync_file(&app.join("src/main.rs"), &read(&ours.join("src/main.rs"))?)?;
    // Start from the SDK's own lock file, so both builds share most compiled dependencies.
    if !app.join("Cargo.lock").exists() {
        sync_file(&app.join("Cargo.lock"), &read(&sdk.join("Cargo.lock"))?)?;
    }
    sh(Command::new(&cargo)
        .args(["build", "-q", "--manifest-path"])
        .arg(app.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir))?;
    // The suite decides ignored/not-ignored at compile time from RESONATE_URL being set; the
    // URL itself is read at run time.
    let built = sh(Command::new(&cargo)
        .args(["test", "--test", "e2e", "--no-run", "--manifest-path"])
        .arg(sdk.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RESONATE_URL", "http://127.0.0.1:8001"))?;
    let suite = built
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("Executable tests/e2e.rs (")?
                .strip_suffix(')')
        })
        .ok_or_else(|| {
            format!(
                "cargo did not name the e2e executable:\n{}",
                tail(&built, 10)
            )
        })?;
    let program = target_dir.join("debug/resonate-e2e-rust-app");
    Ok((vec![program.display().to_string()], PathBuf::from(suite)))
}

/// `resonate-sdk-<version>` from Cargo's registry sources, fetched through a scratch crate if absent.
fn registry_source(
    cache: &Path,
    version: &str,
    cargo: &std::ffi::OsStr,
) -> Result<PathBuf, String> {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    let find = || -> Option<PathBuf> {
        fs::read_dir(cargo_home.join("registry/src"))
            .ok()?
            .flatten()
            .map(|index| index.path().join(format!("resonate-sdk-{version}")))
            .find(|p| p.join("tests/e2e.rs").exists())
    };
    if let Some(found) = find() {
        return Ok(found);
    }
    let scratch = cache.join("rust-fetch");
    let manifest = format!(
        "[package]\nname = \"fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[dependencies]\nresonate-sdk = \"={version}\"\n\n[workspace]\n"
    );
    sync_file(&scratch.join("Cargo.toml"), manifest.as_bytes())?;
    sync_file(&scratch.join("src/lib.rs"), b"")?;
    sh(Command::new(cargo)
        .args(["fetch", "--manifest-path"])
        .arg(scratch.join("Cargo.toml")))?;
    find().ok_or_else(|| {
        format!(
            "cargo fetch did not unpack resonate-sdk-{version} under {}",
            cargo_home.display()
        )
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in fs::read_dir(from).map_err(|e| e.to_string())?.flatten() {
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            fs::copy(&path, &dest).map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
        }
    }
    Ok(())
}
