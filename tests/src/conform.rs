//! The frame of the conformance suite: sections of named cases run against a live server started
//! with `--debug`, and the per-section report.
//!
//! A case is a function of a [`Session`]; it returns `Err` with the request, the expectation and
//! the actual response when the server disagrees with the spec.

use crate::client::IO_TIMEOUT;
use crate::transport::{Conn, Endpoint};
use serde_json::{json, Value};

/// A case's verdict: `Err` carries a readable account of the disagreement.
pub type Check = Result<(), String>;

/// One named case of a section.
pub struct Case {
    pub name: String,
    pub run: Box<dyn Fn(&mut Session) -> Check>,
}

impl Case {
    pub fn new(name: impl Into<String>, run: impl Fn(&mut Session) -> Check + 'static) -> Case {
        Case { name: name.into(), run: Box::new(run) }
    }
}

/// The result of one case (or one summarised run) in one section.
pub struct Outcome {
    pub section: String,
    pub case: String,
    pub failure: Option<String>,
    /// Why the case was not run (its inputs are missing); such a case neither passed nor failed.
    pub not_run: Option<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.not_run.is_none()
    }
}

/// Fails the case with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err(format!($($msg)*));
        }
    };
}

/// A connection to the server under test (started with `--debug`) and, for the cases that need
/// one, to a second instance started without it.
pub struct Session {
    conn: Conn,
    /// The server under test.
    pub endpoint: Endpoint,
    /// An instance started without `--debug` (checklist C12).
    pub plain: Option<Endpoint>,
}

impl Session {
    pub fn new(endpoint: Endpoint, plain: Option<Endpoint>) -> Session {
        Session { conn: endpoint.conn(IO_TIMEOUT), endpoint, plain }
    }

    /// A clean store and paused background loops: only the requests' clocks move time.
    pub fn fresh(&mut self) -> Check {
        self.expect("debug.reset", json!({}), 0, 200)?;
        self.expect("debug.start", json!({}), 0, 200)?;
        Ok(())
    }

    /// Sends one request at `now` and returns the status and the whole response envelope.
    pub fn send(&mut self, kind: &str, data: Value, now: i64) -> (u16, Value) {
        crate::call(&mut self.conn, kind, data, Some(now))
    }

    /// Sends one request and requires `status`; returns the response's `data`.
    pub fn expect(&mut self, kind: &str, data: Value, now: i64, status: u16) -> Result<Value, String> {
        let request = json!({ "kind": kind, "data": data, "now": now });
        let (got, response) = self.send(kind, data, now);
        if got != status || response["head"]["status"] != json!(status) {
            return Err(format!("request  {request}\nexpected status {status}\nactual   {response}"));
        }
        Ok(response["data"].clone())
    }

    /// The whole store (debug.snap).
    pub fn snap(&mut self, now: i64) -> Result<Value, String> {
        self.expect("debug.snap", json!({}), now, 200)
    }

    /// Runs the internal rules at `time` (debug.tick).
    pub fn tick(&mut self, time: i64) -> Check {
        self.expect("debug.tick", json!({ "time": time }), time, 200).map(|_| ())
    }
}

/// Runs every case of a section against a fresh session each.
pub fn run_cases(section: &str, endpoint: &Endpoint, plain: Option<&Endpoint>, cases: &[Case]) -> Vec<Outcome> {
    cases
        .iter()
        .map(|case| {
            let mut session = Session::new(endpoint.clone(), plain.cloned());
            let failure = session.fresh().and_then(|()| (case.run)(&mut session)).err();
            Outcome { section: section.to_string(), case: case.name.clone(), failure, not_run: None }
        })
        .collect()
}

/// Every case of a section that cannot run, each reported NOT RUN with the reason.
pub fn not_run(section: &str, cases: &[Case], why: &str) -> Vec<Outcome> {
    cases
        .iter()
        .map(|case| Outcome {
            section: section.to_string(),
            case: case.name.clone(),
            failure: None,
            not_run: Some(why.to_string()),
        })
        .collect()
}

/// The per-section table, then every failure with its account.
pub fn report(outcomes: &[Outcome]) -> String {
    let mut sections: Vec<&str> = Vec::new();
    for o in outcomes {
        if !sections.contains(&o.section.as_str()) {
            sections.push(&o.section);
        }
    }
    let mut out = format!("{:<14} {:>7} {:>7} {:>10}  failed cases\n", "section", "passed", "failed", "not run");
    for s in &sections {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.section == *s).collect();
        let passed = of.iter().filter(|o| o.passed()).count();
        let failed: Vec<&str> = of.iter().filter(|o| o.failure.is_some()).map(|o| o.case.as_str()).collect();
        let not_run = of.iter().filter(|o| o.not_run.is_some()).count();
        let not_run = if not_run == 0 { "0".to_string() } else { format!("{not_run} NOT RUN") };
        out.push_str(&format!("{:<14} {:>7} {:>7} {:>10}  {}\n", s, passed, failed.len(), not_run, failed.join(", ")));
    }
    for o in outcomes {
        if let Some(f) = &o.failure {
            out.push_str(&format!("\n--- {} / {}\n{f}\n", o.section, o.case));
        }
    }
    let mut reasons: Vec<(&str, &str)> = Vec::new();
    for o in outcomes {
        if let Some(why) = &o.not_run {
            if !reasons.contains(&(o.section.as_str(), why.as_str())) {
                reasons.push((&o.section, why));
            }
        }
    }
    for (section, why) in reasons {
        out.push_str(&format!(
            "\n!!! section {section} NOT RUN: its cases neither passed nor failed and prove nothing.\n!!! {why}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_not_run_is_reported_loudly_and_never_as_passed() {
        let cases = [Case::new("a", |_| Ok(())), Case::new("b", |_| Ok(()))];
        let outcomes = not_run("traces", &cases, "no traces directory at /x");
        assert!(outcomes.iter().all(|o| !o.passed() && o.failure.is_none()));
        let text = report(&outcomes);
        assert!(text.contains("traces               0       0  2 NOT RUN"), "{text}");
        assert!(text.contains("!!! section traces NOT RUN"), "{text}");
        assert!(text.contains("no traces directory at /x"), "{text}");
    }
}
