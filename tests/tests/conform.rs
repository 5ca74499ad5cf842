//! The conformance sections that run against a live server (checklist, traces), as cargo tests:
//! the same cases `resonate-gen conform` runs.

use resonate_tests::conform::{report, run_cases, Case};
use resonate_tests::server::{build, Server};
use resonate_tests::{checklist, traces};

fn section(name: &str, cases: &[Case]) {
    let bin = build("sqlite-http");
    let server = Server::start(&bin, &["--debug"]);
    let plain = Server::start(&bin, &[]);
    let outcomes = run_cases(name, server.addr, Some(plain.addr), cases);
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    assert_eq!(failed, 0, "\n{}", report(&outcomes));
}

#[test]
fn checklist_c1_to_c12() {
    section("checklist", &checklist::cases());
}

#[test]
fn recorded_official_traces() {
    section("traces", &traces::cases());
}
