//! resonate-conform: holds a running server to spec/ and prints a per-section report.
//!
//! The server must run with `--debug`; C12 also needs a second instance without it (`--plain`).
//! `resonate-gen conform --target NAME` builds a target, starts both and runs this.

use resonate_tests::conform::{report, run_cases};
use resonate_tests::transport::Endpoint;
use resonate_tests::{checklist, traces, transitions};
use std::process::ExitCode;

const USAGE: &str = "usage: resonate-conform --url URL [--plain URL], each URL http://127.0.0.1:PORT \
                     or (a NATS target) nats://127.0.0.1:PORT/API_PREFIX";

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
    eprintln!("resonate-conform: traces");
    outcomes.extend(run_cases("traces", &server, plain.as_ref(), &traces::cases()));
    print!("{}", report(&outcomes));
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    println!("{} passed, {} failed", outcomes.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
