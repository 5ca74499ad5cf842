//! resonate-ctl: a command line and an MCP server for Resonate servers, generated from the
//! protocol spec. Modules, from the spec inward:
//!
//! ```text
//! main      parses the command line, runs it, maps failures to exit codes
//!   -> cli        the clap command tree, built from kinds
//!   -> mcp        the MCP server over stdio, its tools built from kinds
//!   -> show       answers for people
//!   -> compose    watch, tree, invoke, every page of a search
//!   -> request    arguments -> a request's data
//!   -> client     HTTP/1.1 and NATS, blocking, std only
//!   -> kinds      the request kinds of spec/kinds.yaml, as data
//!   -> values     durations, instants, base64 JSON payloads
//! ```

mod cli;
mod client;
mod compose;
mod kinds;
mod mcp;
mod request;
mod show;
mod values;

use clap::ArgMatches;
use client::{Client, Failure};
use kinds::KINDS;
use request::Inputs;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// What a run ended in (cli::EXIT_CODES says it for people).
enum Outcome {
    Done,
    StillPending,
}

fn main() -> ExitCode {
    let matches = cli::command().get_matches();
    let as_json = matches.get_flag("json");
    match run(&matches, as_json) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::StillPending) => ExitCode::from(5),
        Err(failure) => {
            // A refusal's message is printed exactly as the server sent it; with --json also as
            // a line on stdout with its status, for scripts.
            match &failure {
                Failure::Refused { status, message } => {
                    eprintln!("{message}");
                    if as_json {
                        println!("{}", json!({ "status": status, "message": message }));
                    }
                }
                _ => eprintln!("resonate-ctl: {failure}"),
            }
            ExitCode::from(match failure {
                Failure::Refused { .. } => 1,
                Failure::Input(_) => 2,
                Failure::Unreachable(_) => 3,
                Failure::Server(_) => 4,
            })
        }
    }
}

fn duration(matches: &ArgMatches, name: &str) -> Result<Option<Duration>, Failure> {
    match matches.get_one::<String>(name).map(String::as_str) {
        None | Some("forever") => Ok(None),
        Some(text) => values::parse_duration(text)
            .map(|ms| Some(Duration::from_millis(ms.max(0) as u64)))
            .map_err(|e| Failure::Input(format!("--{name}: {e}"))),
    }
}

fn run(matches: &ArgMatches, as_json: bool) -> Result<Outcome, Failure> {
    let (command, sub) = matches.subcommand().expect("clap requires a subcommand");
    if command == "completions" {
        let shell = *sub.get_one::<clap_complete::Shell>("shell").expect("required");
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cli::command(), "resonate-ctl", &mut script);
        // A closed pipe (`| head`) is not an error worth a message.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
        return Ok(Outcome::Done);
    }
    let server = matches.get_one::<String>("server").expect("has a default");
    let token = matches.get_one::<String>("token").cloned();
    let prefix = matches.get_one::<String>("nats-api-prefix").expect("has a default");
    let timeout = duration(matches, "request-timeout")?.unwrap_or(Duration::from_secs(30));
    let mut client = Client::new(server, token, prefix, timeout)?;
    let print = |data: &Value, human: String| {
        if as_json {
            println!("{data}");
        } else {
            print!("{human}");
        }
    };
    match command {
        "mcp" => {
            mcp::serve(&mut client, server).map_err(|e| Failure::Input(format!("stdio: {e}")))?;
        }
        "tree" => {
            let root = sub.get_one::<String>("root").expect("required");
            let node = compose::tree(&mut client, root)?;
            print(&node.to_json(), show::tree(&node));
        }
        "watch" => {
            let id = sub.get_one::<String>("id").expect("required");
            let interval = duration(sub, "interval")?.unwrap_or(Duration::from_millis(500));
            let promise = compose::wait(&mut client, id, duration(sub, "timeout")?, interval)?;
            print(&promise, show::promise(&promise, values::now_ms()));
            if !compose::settled(&promise) {
                eprintln!("resonate-ctl: {id} is still pending");
                return Ok(Outcome::StillPending);
            }
        }
        "invoke" => {
            let text = |k: &str| sub.get_one::<String>(k).cloned();
            let ms = |k: &str| -> Result<Option<i64>, Failure> {
                text(k).map(|t| values::parse_duration(&t).map_err(|e| Failure::Input(format!("--{k}: {e}")))).transpose()
            };
            let mut tags = serde_json::Map::new();
            for pair in sub.get_many::<String>("tags").into_iter().flatten() {
                let (k, v) = values::parse_pair(pair, "KEY=VALUE").map_err(|e| Failure::Input(format!("--tag: {e}")))?;
                tags.insert(k, json!(v));
            }
            let call = compose::Call {
                func: text("func").expect("required"),
                args: sub
                    .get_many::<String>("args")
                    .into_iter()
                    .flatten()
                    .map(|a| values::read_payload(a).map_err(Failure::Input))
                    .collect::<Result<_, _>>()?,
                target: text("target").expect("required"),
                id: text("id"),
                timeout_ms: ms("timeout")?.expect("has a default"),
                version: text("version")
                    .expect("has a default")
                    .parse()
                    .map_err(|_| Failure::Input("--version: not an integer".into()))?,
                delay_ms: ms("delay")?,
                tags,
            };
            let answer = compose::invoke(&mut client, call)?;
            if sub.contains_id("wait") && sub.get_one::<String>("wait").is_some() {
                let id = answer.data["promise"]["id"].as_str().unwrap_or_default().to_string();
                let promise = compose::wait(&mut client, &id, duration(sub, "wait")?, Duration::from_millis(250))?;
                print(&promise, show::promise(&promise, values::now_ms()));
                if !compose::settled(&promise) {
                    eprintln!("resonate-ctl: {id} is still pending");
                    return Ok(Outcome::StillPending);
                }
            } else {
                print(&answer.data, show::answer(&answer, values::now_ms()));
            }
        }
        group => {
            let (verb, m) = sub.subcommand().expect("clap requires a verb");
            let kind = KINDS.iter().find(|k| k.group == group && k.verb == verb).expect("every command is a kind");
            let mut given = Inputs::new();
            cli::inputs(&kind.request, m, &mut given);
            let chosen = match (kind.subs, m.subcommand()) {
                (Some((_, subs)), Some((name, sm))) => {
                    let s = subs.iter().find(|s| s.name == name).expect("every subcommand is a sub");
                    cli::inputs(&s.request, sm, &mut given);
                    Some(s)
                }
                _ => None,
            };
            let all = m.try_get_one::<bool>("all").ok().flatten().copied().unwrap_or(false);
            let answer = compose::run_kind(&mut client, kind, chosen, &given, all)?;
            print(&answer.data, show::answer(&answer, values::now_ms()));
        }
    }
    Ok(Outcome::Done)
}
