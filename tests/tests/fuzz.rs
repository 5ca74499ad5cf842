//! The model-based differential fuzzer against the generated `sqlite-http` server: seeded random
//! workloads run in lockstep on `resonate_tests::model::Model` and the server. `FUZZ_STEPS`
//! overrides the total number of steps, `FUZZ_SEED` runs that one seed, `FUZZ_BIN` fuzzes another
//! server binary (e.g. a mutant) instead of the freshly built `sqlite-http`.

use resonate_tests::fuzz::run;
use resonate_tests::server::{build, target, Server};
use std::collections::BTreeMap;
use std::time::Instant;

const RETRY_TIMEOUT: i64 = 5_000;
const STEPS: usize = 20_000;
const SEEDS: [u64; 4] = [1, 2, 3, 4];

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let text = std::env::var(name).ok()?;
    Some(text.parse().unwrap_or_else(|_| panic!("{name}={text:?} does not parse")))
}

#[test]
fn model_and_server_agree() {
    let bin = env::<std::path::PathBuf>("FUZZ_BIN").unwrap_or_else(|| build(&target()));
    let server = Server::start(&bin, &["--debug", "--tasks-retry-timeout", &RETRY_TIMEOUT.to_string()]);
    let total: usize = env("FUZZ_STEPS").unwrap_or(STEPS);
    let seeds: Vec<u64> = env("FUZZ_SEED").map_or(SEEDS.to_vec(), |seed| vec![seed]);
    let mut pairs: BTreeMap<(String, u16), u64> = BTreeMap::new();
    let mut rules: BTreeMap<&str, u64> = BTreeMap::new();
    let started = Instant::now();
    for &seed in &seeds {
        let report = run(&server.endpoint(), seed, total / seeds.len(), RETRY_TIMEOUT);
        println!("seed {seed}: {} steps", report.steps);
        for (pair, n) in report.pairs {
            *pairs.entry(pair).or_default() += n;
        }
        for (rule, n) in report.rules {
            *rules.entry(rule).or_default() += n;
        }
        if let Some(failure) = report.failure {
            panic!("the model and the server disagree (rerun with FUZZ_SEED={seed}):\n{failure}");
        }
    }
    println!("{} seeds, {total} steps in {:.1?}", seeds.len(), started.elapsed());
    println!("{} (kind, status) pairs reached:", pairs.len());
    for ((kind, status), n) in &pairs {
        println!("  {kind:<28} {status} x{n}");
    }
    println!("rules fired: {rules:?}");
}
