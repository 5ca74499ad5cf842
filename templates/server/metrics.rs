//! Prometheus metrics in the text format 0.0.4, under the official server's names so its
//! dashboards keep working, plus what this server knows beyond them (spec/metrics.yaml). The
//! modules that see things happen bump them here; `exporter` serves them at `GET /metrics`.
//!
//! Counters and histograms are relaxed atomics bumped where things happen: a request costs one
//! clock read, a lookup of its kind and four additions, and nothing takes a lock. The gauges
//! (promises and tasks by state, outbox messages by address) are counted by the store when
//! Prometheus scrapes, so they cost a scan per scrape and nothing per request.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A metric family: the name and what its `# HELP` and `# TYPE` lines say.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}
{% for f in c.metric_families() %}

/// `{{ f.name }}`{% if f.official %}, as the official server names it{% endif %}.
const {{ f.ident }}: Family = Family { name: "{{ f.name }}", kind: "{{ f.kind }}", help: {{ f.help }} };
{% endfor %}

/// Values of the `kind` label of requests: the kinds of the protocol, then the one every
/// other kind (or a request without one) is counted under.
const KINDS: [&str; {{ c.spec.kinds.len() + 1 }}] = [{% for (name, _) in c.spec.kinds %}"{{ name }}", {% endfor %}"{{ c.spec.metrics.unknown_kind }}"];
/// Every status a request can be answered with.
const STATUSES: [u16; {{ c.spec.metrics.statuses.len() }}] = [{% for s in c.spec.metrics.statuses %}{{ s }}, {% endfor %}];
/// Upper bounds in seconds of the duration histograms' buckets (the last, `+Inf`, is implied).
const BUCKETS: [f64; {{ c.spec.metrics.buckets.len() }}] = [{{ c.metric_buckets() }}];
/// Values of the `kind` label of messages, told apart by the outbox key's first word.
const MESSAGES: [&str; 2] = ["execute", "unblock"];
/// Values of the `status` label of deliveries, in the order of [`Delivery`].
const DELIVERIES: [&str; 3] = ["success", "error", "dropped"];
/// Stored states of promises and tasks, each written even when no row has it.
const PROMISE_STATES: [&str; {{ c.spec.records.states["promise_state"].len() }}] = [{% for s in c.spec.records.states["promise_state"] %}"{{ s }}", {% endfor %}];
const TASK_STATES: [&str; {{ c.spec.records.states["task_state"].len() }}] = [{% for s in c.spec.records.states["task_state"] %}"{{ s }}", {% endfor %}];

/// What became of one attempt at delivering a message.
#[derive(Clone, Copy)]
pub enum Delivery {
    /// A stream wrote it, or a push endpoint answered 2xx.
    Success = 0,
    /// It could not be delivered now; it stays queued and is tried again after a backoff.
    Error = 1,
    /// It was given up: an execute nobody could take (rule R6 sends a new one), or a failed
    /// message over `messages-retry-cap`.
    Dropped = 2,
}

/// What the store counts when `/metrics` is scraped.
#[derive(Default)]
pub struct Census {
    /// `(state, rows)` of promises and of tasks; states without rows may be left out.
    pub promises: Vec<(String, i64)>,
    pub tasks: Vec<(String, i64)>,
    /// `(address, queued, retrying)`: outbox rows of each address, and those of them whose
    /// delivery failed at least once.
    pub outbox: Vec<(String, i64, i64)>,
{% if c.postgres() %}
    /// Store calls repeated since start after PostgreSQL aborted them.
    pub store_retries: u64,
{% endif %}
}

/// A histogram of durations: per-bucket counts (made cumulative when written), the count, and
/// the sum in nanoseconds.
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

{% raw %}impl Histogram {
    const fn new() -> Histogram {
        Histogram { buckets: [const { AtomicU64::new(0) }; BUCKETS.len()], count: AtomicU64::new(0), sum_ns: AtomicU64::new(0) }
    }

    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines; `labels` is empty or `name="value",`.
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        let labels = labels.trim_end_matches(',');
        if labels.is_empty() {
            let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        } else {
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {count}");
        }
    }
}

{% endraw %}/// Every counter and histogram of the process.
struct Metrics {
    /// By kind, then status (indexes into `KINDS` and `STATUSES`).
    requests: [[AtomicU64; STATUSES.len()]; KINDS.len()],
    durations: [Histogram; KINDS.len()],
    messages: [AtomicU64; MESSAGES.len()],
    deliveries: [AtomicU64; DELIVERIES.len()],
    schedule_promises: AtomicU64,
    background: Histogram,
}

static METRICS: Metrics = Metrics {
    requests: [const { [const { AtomicU64::new(0) }; STATUSES.len()] }; KINDS.len()],
    durations: [const { Histogram::new() }; KINDS.len()],
    messages: [const { AtomicU64::new(0) }; MESSAGES.len()],
    deliveries: [const { AtomicU64::new(0) }; DELIVERIES.len()],
    schedule_promises: AtomicU64::new(0),
    background: Histogram::new(),
};

/// The `kind` label index of a request kind.
pub fn kind(name: &str) -> usize {
    KINDS[..KINDS.len() - 1].iter().position(|k| *k == name).unwrap_or(KINDS.len() - 1)
}

/// Counts one answered request (`kind` from [`kind`]) and how long it took.
pub fn request(kind: usize, status: u16, elapsed: Duration) {
    if let Some(s) = STATUSES.iter().position(|s| *s == status) {
        METRICS.requests[kind][s].fetch_add(1, Relaxed);
    }
    METRICS.durations[kind].observe(elapsed);
}

/// Counts a message taken from the outbox for delivery, by the first word of its key.
pub fn message(key: &str) {
    let i = usize::from(!key.starts_with("execute:"));
    METRICS.messages[i].fetch_add(1, Relaxed);
}

/// Counts `n` delivery attempts with one outcome.
pub fn delivered(outcome: Delivery, n: usize) {
    METRICS.deliveries[outcome as usize].fetch_add(n as u64, Relaxed);
}

/// Counts a promise a schedule created (rule R7).
pub fn schedule_promise() {
    METRICS.schedule_promises.fetch_add(1, Relaxed);
}

/// Records how long one pass of the background rules took.
pub fn background_pass(elapsed: Duration) {
    METRICS.background.observe(elapsed);
}

{% raw %}/// Writes the `# HELP` and `# TYPE` lines of a family.
fn header(out: &mut String, f: &Family) {
    let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", f.name, f.help, f.name, f.kind);
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// The whole exposition: counters and histograms as they stand, then the store's census.
/// Requests appear by kind and status once one was answered (as in the official server).
pub fn render(census: &Census) -> String {
    let m = &METRICS;
    let mut out = String::with_capacity(4096);
    header(&mut out, &REQUEST_TOTAL);
    for (kind, row) in KINDS.iter().zip(&m.requests) {
        for (status, n) in STATUSES.iter().zip(row) {
            let n = n.load(Relaxed);
            if n > 0 {
                let _ = writeln!(out, "{}{{kind=\"{kind}\",status=\"{status}\"}} {n}", REQUEST_TOTAL.name);
            }
        }
    }
    header(&mut out, &REQUEST_DURATION_SECONDS);
    for (kind, h) in KINDS.iter().zip(&m.durations) {
        if h.count.load(Relaxed) > 0 {
            h.write(&mut out, REQUEST_DURATION_SECONDS.name, &format!("kind=\"{kind}\","));
        }
    }
    header(&mut out, &MESSAGES_TOTAL);
    for (kind, n) in MESSAGES.iter().zip(&m.messages) {
        let _ = writeln!(out, "{}{{kind=\"{kind}\"}} {}", MESSAGES_TOTAL.name, n.load(Relaxed));
    }
    header(&mut out, &DELIVERIES_TOTAL);
    for (status, n) in DELIVERIES.iter().zip(&m.deliveries) {
        let _ = writeln!(out, "{}{{status=\"{status}\"}} {}", DELIVERIES_TOTAL.name, n.load(Relaxed));
    }
    header(&mut out, &SCHEDULE_PROMISES_TOTAL);
    let _ = writeln!(out, "{} {}", SCHEDULE_PROMISES_TOTAL.name, m.schedule_promises.load(Relaxed));
    header(&mut out, &MESSAGES_QUEUED);
    for (address, queued, _) in &census.outbox {
        let _ = writeln!(out, "{}{{address=\"{}\"}} {queued}", MESSAGES_QUEUED.name, escape(address));
    }
    header(&mut out, &MESSAGES_RETRYING);
    for (address, _, retrying) in &census.outbox {
        let _ = writeln!(out, "{}{{address=\"{}\"}} {retrying}", MESSAGES_RETRYING.name, escape(address));
    }
    for (family, states, counted) in [(&PROMISES, &PROMISE_STATES[..], &census.promises), (&TASKS, &TASK_STATES[..], &census.tasks)] {
        header(&mut out, family);
        for state in states {
            let n = counted.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "{}{{state=\"{state}\"}} {n}", family.name);
        }
    }
    header(&mut out, &BACKGROUND_PASS_DURATION_SECONDS);
    m.background.write(&mut out, BACKGROUND_PASS_DURATION_SECONDS.name, "");
{% endraw %}{% if c.postgres() %}
    header(&mut out, &STORE_RETRIES_TOTAL);
    let _ = writeln!(out, "{} {}", STORE_RETRIES_TOTAL.name, census.store_retries);
{% endif %}
    out
}
