//! resonate-conform: holds a running server to spec/ and prints a per-section report.
//!
//! The server must run with `--debug`; C12 also needs a second instance without it (`--plain`).
//! `resonate-gen conform --target NAME` builds a target, starts both and runs this.
//!
//! The traces section needs the recorded official traces (`RESONATE_TRACES_DIR`, see
//! `resonate_tests::traces`): without them it is reported NOT RUN and does not fail the run,
//! unless `RESONATE_TRACES_REQUIRED=1`, which makes their absence a failure.

use resonate_tests::conform::{not_run, report, run_cases, Outcome};
use resonate_tests::transport::Endpoint;
use resonate_tests::{checklist, traces, transitions};
use std::process::ExitCode;

const USAGE: &str = "usage: resonate-conform --url URL [--plain URL], each URL http://127.0.0.1:PORT \
                     or (a NATS target) nats://127.0.0.1:PORT/API_PREFIX";

/// The traces section, or its cases as NOT RUN (failed when the traces are required) when the
/// recorded traces are not there.
fn run_traces(server: &Endpoint, plain: Option<&Endpoint>) -> Vec<Outcome> {
    let cases = traces::cases();
    match traces::dir() {
        Ok(dir) => {
            eprintln!("resonate-conform: traces from {}", dir.display());
            run_cases("traces", server, plain, &cases)
        }
        Err(why) if traces::required() => {
            eprintln!("resonate-conform: traces required (RESONATE_TRACES_REQUIRED=1) but missing");
            let failure = format!("the traces are required (RESONATE_TRACES_REQUIRED=1): {why}");
            cases
                .iter()
                .map(|c| Outcome {
                    section: "traces".into(),
                    case: c.name.clone(),
                    failure: Some(failure.clone()),
                    not_run: None,
                })
                .collect()
        }
        Err(why) => {
            eprintln!("resonate-conform: traces NOT RUN: {why}");
            not_run("traces", &cases, &why)
        }
    }
}

fn main() -> ExitCode {
    let mut url = None;
    let mut plain = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--url", Some(v)) => url = Some(v),
            ("--plain", Some(v)) => plain = Some(v),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let parsed = url.as_deref().ok_or(USAGE.to_string()).and_then(str::parse::<Endpoint>).and_then(|a| {
        plain.as_deref().map(str::parse).transpose().map(|p| (a, p))
    });
    let (server, plain) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("resonate-conform: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("resonate-conform: transitions against {server}");
    let mut outcomes = run_cases("transitions", &server, plain.as_ref(), &transitions::cases());
    eprintln!("resonate-conform: checklist");
    outcomes.extend(run_cases("checklist", &server, plain.as_ref(), &checklist::cases()));
    outcomes.extend(run_traces(&server, plain.as_ref()));
    print!("{}", report(&outcomes));
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    let skipped = outcomes.iter().filter(|o| o.not_run.is_some()).count();
    let passed = outcomes.len() - failed - skipped;
    if skipped == 0 {
        println!("{passed} passed, {failed} failed");
    } else {
        println!("{passed} passed, {failed} failed, {skipped} NOT RUN");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
