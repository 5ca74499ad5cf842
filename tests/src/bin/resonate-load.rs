//! resonate-load: a closed-loop load generator for a running Resonate server.
//!
//! Each of N clients is a thread with one connection that sends its next request as soon as the
//! previous one is answered, for a fixed time: a keep-alive HTTP connection (`POST /`), or a NATS
//! connection (publish with a `Resonate-Reply-To` inbox, wait for the reply there). Latencies go
//! into log-bucketed histograms (HdrHistogram-style, within ~3 %); one JSON report is printed on
//! stdout. `resonate-gen bench` builds a target, starts it and runs this.

use resonate_tests::transport::{Conn, Endpoint, Rpc};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HELP: &str = "\
resonate-load: closed-loop load against a Resonate server on loopback; prints a JSON report.

Usage: resonate-load --url http://127.0.0.1:PORT [OPTIONS]
       resonate-load --url nats://127.0.0.1:4222/API_PREFIX [OPTIONS]

Options:
  --url URL        the server (loopback addresses only): its HTTP address, or the NATS server
                   and the api prefix it takes requests on (--nats-api-prefix; each request is
                   published to API_PREFIX.default with a Resonate-Reply-To header naming an
                   inbox, and its answer awaited there)
  --mix MIX        workflow (default) or promise:
                     workflow  promise.create with resonate:target poll://any@bench (over NATS
                               nats://resonate.recv.bench), task.acquire at version 0,
                               task.fence x2 creating children, task.fence x2 settling them,
                               task.fulfill (7 requests per iteration)
                     promise   promise.create, promise.get, promise.settle (3 per iteration)
  --clients N      concurrent clients, each one thread and one connection (keep-alive HTTP, or
                   NATS) [default: 1]
  --seconds S      measured time [default: 5]
  --warmup S       time before the measurement whose requests are not counted [default: 0.5]
  --run ID         prefix of every promise id (default: from the process id and the clock)
  --token JWT      sent as head.auth in every request (servers with auth: jwt)
  -h, --help       print this help

Output: {mix, clients, seconds, requests, requests_per_sec, iterations, iterations_per_sec,
errors, error, latency_us: {p50, p99, p999, max}, kinds: [{kind, count, per_sec, p50_us, ...}]}.
The exit status is 1 when any request failed (the report says which).

Examples:
  resonate-load --url http://127.0.0.1:8001 --mix promise --clients 16 --seconds 10
  resonate-load --url nats://127.0.0.1:4222/resonate.requests --mix workflow --clients 4";

/// Per request read or write; a hung server fails the run instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const VERSION: &str = "2026-04-01";
/// Far enough ahead that no promise times out during a run.
const TIMEOUT_AHEAD_MS: u64 = 3_600_000;

#[derive(Clone, Copy, PartialEq)]
enum Mix {
    Workflow,
    Promise,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::Workflow => "workflow",
            Mix::Promise => "promise",
        }
    }

    /// The request kinds in iteration order; fences are told apart by their inner kind.
    fn kinds(self) -> &'static [&'static str] {
        match self {
            Mix::Workflow => &[
                "promise.create",
                "task.acquire",
                "task.fence(promise.create)",
                "task.fence(promise.create)",
                "task.fence(promise.settle)",
                "task.fence(promise.settle)",
                "task.fulfill",
            ],
            Mix::Promise => &["promise.create", "promise.get", "promise.settle"],
        }
    }

    /// The request bodies of one iteration on promise `id`, in `kinds()` order; the workflow's
    /// root promise targets the worker address `target`.
    fn requests(self, id: &str, pid: &str, timeout_at: u64, target: &str) -> Vec<String> {
        let auth = TOKEN.get().map(|t| format!(r#","auth":"{t}""#)).unwrap_or_default();
        let envelope = |kind: &str, data: String| {
            format!(
                r#"{{"kind":"{kind}","head":{{"corrId":"{id}","version":"{VERSION}"{auth}}},"data":{data}}}"#
            )
        };
        let value = r#"{"headers":{},"data":"ImRvbmUi"}"#;
        let create = |pid: &str, tags: &str| {
            format!(
                r#"{{"id":"{pid}","timeoutAt":{timeout_at},"param":{{"headers":{{}},"data":"e30="}},"tags":{tags}}}"#
            )
        };
        let settle = |pid: &str| format!(r#"{{"id":"{pid}","state":"resolved","value":{value}}}"#);
        match self {
            Mix::Promise => vec![
                envelope("promise.create", create(id, "{}")),
                envelope("promise.get", format!(r#"{{"id":"{id}"}}"#)),
                envelope("promise.settle", settle(id)),
            ],
            Mix::Workflow => {
                let child_tags = format!(
                    r#"{{"resonate:scope":"local","resonate:parent":"{id}","resonate:origin":"{id}"}}"#
                );
                let fence = |action: &str, data: String| {
                    envelope(
                        "task.fence",
                        format!(
                            r#"{{"id":"{id}","version":1,"action":{}}}"#,
                            envelope(action, data)
                        ),
                    )
                };
                vec![
                    envelope(
                        "promise.create",
                        create(id, &format!(r#"{{"resonate:target":"{target}"}}"#)),
                    ),
                    envelope(
                        "task.acquire",
                        format!(r#"{{"id":"{id}","version":0,"pid":"{pid}","ttl":60000}}"#),
                    ),
                    fence("promise.create", create(&format!("{id}.1"), &child_tags)),
                    fence("promise.create", create(&format!("{id}.2"), &child_tags)),
                    fence("promise.settle", settle(&format!("{id}.1"))),
                    fence("promise.settle", settle(&format!("{id}.2"))),
                    envelope(
                        "task.fulfill",
                        format!(
                            r#"{{"id":"{id}","version":1,"action":{}}}"#,
                            envelope("promise.settle", settle(id))
                        ),
                    ),
                ]
            }
        }
    }
}

/// Sub-buckets per power of two: 32, so a bucket is at most 1/32 (~3 %) wide.
const SUB_BITS: u32 = 5;
const BUCKETS: usize = ((64 - SUB_BITS + 1) << SUB_BITS) as usize;

/// Latencies in nanoseconds, counted in log-linear buckets as HdrHistogram does.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    /// Values below 64 get a bucket each; above, 32 buckets per power of two.
    fn index(v: u64) -> usize {
        let e = 63 - (v | 1).leading_zeros();
        if e <= SUB_BITS {
            return v as usize;
        }
        let shift = e - SUB_BITS;
        ((shift << SUB_BITS) as u64 + (v >> shift)) as usize
    }

    /// The largest value that falls into bucket `i`.
    fn highest(i: usize) -> u64 {
        if i < 2 << SUB_BITS {
            return i as u64;
        }
        let shift = (i >> SUB_BITS) - 1;
        let top = (i & ((1 << SUB_BITS) - 1)) as u64 + (1 << SUB_BITS);
        ((top + 1) << shift).wrapping_sub(1)
    }

    fn record(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    fn merge(&mut self, other: &Histogram) {
        self.counts
            .iter_mut()
            .zip(&other.counts)
            .for_each(|(a, b)| *a += b);
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), as the top of its bucket (never above the maximum).
    fn quantile(&self, q: f64) -> u64 {
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::highest(i).min(self.max);
            }
        }
        self.max
    }

    /// `{p50, p99, p999, max}` in microseconds with one decimal.
    fn summary(&self) -> Value {
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        json!({
            "p50": us(self.quantile(0.50)),
            "p99": us(self.quantile(0.99)),
            "p999": us(self.quantile(0.999)),
            "max": us(self.max),
        })
    }
}

/// What one client measured: one histogram per position in the iteration.
struct Outcome {
    steps: Vec<Histogram>,
    finished: Instant,
    error: Option<String>,
}

/// One client: runs iterations back to back until `end`, counting requests that start after `measure`.
fn client(endpoint: Endpoint, mix: Mix, prefix: String, measure: Instant, end: Instant) -> Outcome {
    let mut conn = endpoint.conn(IO_TIMEOUT);
    let target = endpoint.worker_address("bench", None);
    let kinds = mix.kinds();
    let mut steps = vec![Histogram::new(); kinds.len()];
    let timeout_at = now_ms() + TIMEOUT_AHEAD_MS;
    let mut error = None;
    'run: for i in 0.. {
        let id = format!("{prefix}-{i}");
        for (step, body) in mix.requests(&id, &prefix, timeout_at, &target).iter().enumerate() {
            let start = Instant::now();
            if start >= end {
                break 'run;
            }
            if let Err(e) = send(&mut conn, body, kinds[step]) {
                error = Some(format!("{} {id}: {e}", kinds[step]));
                break 'run;
            }
            if start >= measure {
                steps[step].record(start.elapsed().as_nanos() as u64);
            }
        }
    }
    Outcome {
        steps,
        finished: Instant::now(),
        error,
    }
}

/// Sends one request; an error unless it (and a fence's inner action) answered 200 (over NATS:
/// `head.status` of the reply).
fn send(conn: &mut Conn, body: &str, kind: &str) -> Result<(), String> {
    let response = conn.rpc(body.as_bytes()).map_err(|e| e.to_string())?;
    let status = if kind.starts_with("task.fence") && response.status == 200 {
        let v: Value = serde_json::from_slice(&response.body).map_err(|e| e.to_string())?;
        v["data"]["action"]["head"]["status"].as_u64().unwrap_or(0)
    } else {
        u64::from(response.status)
    };
    if status != 200 {
        return Err(format!("answered {status}: {}", response.text()));
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The JWT every request carries in `head.auth` (`--token`), if any.
static TOKEN: OnceLock<String> = OnceLock::new();

struct Args {
    endpoint: Endpoint,
    mix: Mix,
    clients: usize,
    seconds: f64,
    warmup: f64,
    run: String,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut url = None;
    let (mut mix, mut clients, mut seconds, mut warmup) = (Mix::Workflow, 1, 5.0, 0.5);
    let mut run = format!("load{}x{}", std::process::id(), now_ms() % 1_000_000_000);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<f64>().ok().filter(|s| *s >= 0.0 && s.is_finite());
        match flag.as_str() {
            "--url" => url = Some(value),
            "--mix" if value == "workflow" => mix = Mix::Workflow,
            "--mix" if value == "promise" => mix = Mix::Promise,
            "--mix" => return Err(format!("--mix must be workflow or promise, not {value}")),
            "--clients" => {
                clients = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--clients must be a positive integer")?
            }
            "--seconds" => {
                seconds = number(&value)
                    .filter(|s| *s > 0.0)
                    .ok_or("--seconds must be a positive number")?
            }
            "--warmup" => warmup = number(&value).ok_or("--warmup must be a number >= 0")?,
            "--run" => run = value,
            "--token" => {
                let _ = TOKEN.set(value);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let endpoint: Endpoint = url.parse()?;
    let addr = match &endpoint {
        Endpoint::Http(addr) => *addr,
        Endpoint::Nats(at) => at.nats,
    };
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{url}: resonate-load only talks to loopback addresses"
        ));
    }
    Ok(Some(Args {
        endpoint,
        mix,
        clients,
        seconds,
        warmup,
        run,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("resonate-load: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let measure = start + Duration::from_secs_f64(args.warmup);
    let end = measure + Duration::from_secs_f64(args.seconds);
    let threads: Vec<_> = (0..args.clients)
        .map(|c| {
            let (endpoint, mix, prefix) = (args.endpoint.clone(), args.mix, format!("{}c{c}", args.run));
            std::thread::spawn(move || client(endpoint, mix, prefix, measure, end))
        })
        .collect();
    let outcomes: Vec<Outcome> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();

    let seconds = outcomes
        .iter()
        .map(|o| o.finished)
        .max()
        .unwrap_or(end)
        .saturating_duration_since(measure)
        .as_secs_f64();
    let kinds = args.mix.kinds();
    let mut all = Histogram::new();
    let mut per_kind: Vec<(&str, Histogram)> = Vec::new();
    for (step, kind) in kinds.iter().enumerate() {
        let mut h = Histogram::new();
        outcomes.iter().for_each(|o| h.merge(&o.steps[step]));
        all.merge(&h);
        match per_kind.iter_mut().find(|(k, _)| k == kind) {
            Some((_, merged)) => merged.merge(&h),
            None => per_kind.push((kind, h)),
        }
    }
    let iterations = outcomes
        .iter()
        .map(|o| o.steps[kinds.len() - 1].total)
        .sum::<u64>();
    let errors: Vec<&String> = outcomes.iter().filter_map(|o| o.error.as_ref()).collect();
    let rate = |n: u64| (n as f64 / seconds).round();
    let kinds: Vec<Value> = per_kind
        .iter()
        .map(|(kind, h)| {
            let mut k = json!({ "kind": kind, "count": h.total, "per_sec": rate(h.total) });
            k.as_object_mut().expect("object").extend(
                h.summary()
                    .as_object()
                    .expect("object")
                    .iter()
                    .map(|(q, v)| (format!("{q}_us"), v.clone())),
            );
            k
        })
        .collect();
    let report = json!({
        "mix": args.mix.name(),
        "clients": args.clients,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "requests": all.total,
        "requests_per_sec": rate(all.total),
        "iterations": iterations,
        "iterations_per_sec": rate(iterations),
        "errors": errors.len(),
        "error": errors.first(),
        "latency_us": all.summary(),
        "kinds": kinds,
    });
    println!("{report}");
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "resonate-load: {} of {} clients failed; first: {}",
            errors.len(),
            args.clients,
            errors[0]
        );
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn buckets_are_contiguous_and_within_three_percent() {
        let mut last = 0;
        for v in (0..200_000u64).chain([1 << 40, u64::MAX / 3, u64::MAX]) {
            let i = Histogram::index(v);
            assert!(i >= last && i < super::BUCKETS, "index of {v}");
            let top = Histogram::highest(i);
            assert!(
                top >= v && (top - v) as f64 <= v as f64 / 32.0 + 1.0,
                "{v} -> {top}"
            );
            last = i;
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        (1..=1000u64).for_each(|v| h.record(v * 1000));
        let near = |q: f64, want: f64| {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        };
        near(0.5, 500_000.0);
        near(0.99, 990_000.0);
        near(0.999, 999_000.0);
        assert_eq!(h.quantile(1.0), 1_000_000);
    }
}
