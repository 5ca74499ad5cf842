use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use resonate_gen::manifest::{Auth, Manifest, Store, Transport};
use resonate_gen::{check, render, write, Repo};
use std::path::PathBuf;
use std::process::ExitCode;

mod bench;

/// Renders a minimal, single-purpose Resonate server crate for one store and transport.
///
/// The protocol lives in spec/ as data, each target in targets/<store>-<transport>[-<feature>].yaml, and the
/// code in templates/. A render writes generated/<target>/, a standalone crate:
///
///   resonate-gen --store sqlite --transport http     # renders generated/sqlite-http
///   resonate-gen --store sqlite --transport http --auth jwt   # renders generated/sqlite-http-jwt
///   resonate-gen --store sqlite --transport http --variant ops # renders generated/sqlite-http-ops
///   cargo run --release --manifest-path generated/sqlite-http/Cargo.toml -- --help
///   resonate-gen ctl                                 # renders generated/resonate-ctl (command line + MCP server)
///   resonate-gen --all                               # renders every target and resonate-ctl
///   resonate-gen check                               # CI: fail if generated/ is stale
#[derive(Parser)]
#[command(name = "resonate-gen", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Store of the target to render (with --transport).
    #[arg(long, value_enum, requires = "transport", conflicts_with = "target")]
    store: Option<Store>,
    /// Transport of the target to render (with --store).
    #[arg(long, value_enum, requires = "store", conflicts_with = "target")]
    transport: Option<Transport>,
    /// Inbound auth of the target to render (with --store and --transport): `jwt` renders
    /// <store>-<transport>-jwt, whose server verifies a JWT on every request.
    #[arg(long, value_enum, default_value = "none", requires = "store", conflicts_with = "target")]
    auth: Auth,
    /// Variant of the target to render (with --store and --transport): `ops` renders
    /// <store>-<transport>[-jwt]-ops, the manifest with metrics, the dashboard and HTTPS push.
    #[arg(long, value_name = "WORD", requires = "store", conflicts_with = "target")]
    variant: Option<String>,
    /// Render this manifest file instead of one from targets/.
    #[arg(long, value_name = "FILE")]
    target: Option<PathBuf>,
    /// Render every target in targets/ and resonate-ctl into generated/.
    #[arg(long, conflicts_with_all = ["store", "target", "out"])]
    all: bool,
    /// Write the crate here instead of generated/<target>/.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Render every target in memory and compare with generated/; print a diff and fail on any difference.
    Check,
    /// List the targets and what each contains.
    List,
    /// Render generated/resonate-ctl: a command line and MCP server with one subcommand and one
    /// tool per request kind of spec/kinds.yaml.
    Ctl {
        /// Write the crate here instead of generated/resonate-ctl/.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Build a target, start it on free loopback ports with a fresh store, run the conformance
    /// suite (tests/) against it and print a per-section report.
    ///
    /// The traces section replays traces recorded against the official server, read from
    /// RESONATE_TRACES_DIR (default ../shared/protocol/traces from the repository root). When
    /// they are absent it is reported NOT RUN and does not fail, unless RESONATE_TRACES_REQUIRED=1.
    Conform {
        /// The target to hold to the spec (a name from targets/), or --all.
        #[arg(long, required_unless_present = "all")]
        target: Option<String>,
        /// Every target in targets/.
        #[arg(long, conflicts_with = "target")]
        all: bool,
    },
    /// Measure a target's cost and speed and hold it to the `budget:` in its manifest.
    ///
    /// Builds generated/<target> and resonate-load (tests/) in release, then measures, on 127.0.0.1:
    ///   cost        stripped binary bytes; distinct crates in `cargo tree -e normal,build`
    ///               (the crate itself excluded); lines of generated Rust in generated/<target>/src
    ///   start-up    process start to the first answered POST / (a 404 promise.get counts),
    ///               min/median/max over cold starts, each on a fresh store, and again for a
    ///               restart on the store that start created (schema in place)
    ///   memory      VmRSS of the idle server after start and after the load runs
    ///   idle        CPU of the server (and of the database server's processes) and its
    ///               wake-ups (context switches of all threads) per second, over 3 s idle
    ///   load        closed-loop requests/s and p50/p99/p99.9 latency with 1, 4, 16 and 64
    ///               clients, each with one connection, for two mixes: workflow (targeted
    ///               promise.create, task.acquire, 4 task.fence, task.fulfill) and promise
    ///               (create, get, settle); CPU (user + system) per request and per workflow
    ///               iteration (one durable execution), of the server and, on PostgreSQL and
    ///               MySQL, of every database-server process
    ///
    /// A NATS target (sqlite-nats, postgres-nats) is started with its own api prefix and queue
    /// group on the NATS server at 127.0.0.1:4222 (bash tests/nats-up); start-up runs to the first
    /// request answered through NATS, and each load client is one NATS connection publishing its
    /// requests with a Resonate-Reply-To inbox.
    ///
    /// A full run takes about two minutes per target after the build and writes bench/<target>.md
    /// (the tables, the machine, the date, the command) and bench/<target>.svg (a chart).
    /// --quick (for CI) runs 1 s per mix with 1 and 16 clients and writes nothing unless --write.
    /// Either way the command fails when the binary or the crate count exceeds the target's
    /// budget, e.g. in targets/sqlite-http.yaml:
    ///
    ///   budget: { binary_bytes: 2400000, crates: 48 }
    ///
    /// Examples:
    ///   resonate-gen bench --target sqlite-http     # full run, updates bench/sqlite-http.*
    ///   resonate-gen bench --all --quick            # budgets and a smoke load, as tests/run does
    #[command(verbatim_doc_comment)]
    Bench {
        /// The target to measure (a name from targets/), or --all.
        #[arg(long, required_unless_present = "all")]
        target: Option<String>,
        /// Every target in targets/.
        #[arg(long, conflicts_with = "target")]
        all: bool,
        /// Short runs for CI (1 s each, 1 and 16 clients); writes nothing into the repository.
        #[arg(long)]
        quick: bool,
        /// Write bench/<target>.md and .svg even with --quick.
        #[arg(long)]
        write: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("resonate-gen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let repo = Repo::find(&std::env::current_dir()?)?;
    match cli.command {
        Some(Command::Check) => check_all(&repo),
        Some(Command::Ctl { out }) => {
            let files = resonate_gen::ctl::render(&repo.spec()?)?;
            let out = out.unwrap_or_else(|| repo.generated_dir(resonate_gen::ctl::CRATE));
            write(&out, &files)?;
            println!("rendered {} files of {} into {}", files.len(), resonate_gen::ctl::CRATE, out.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Conform { target, all }) => {
            let targets = Manifest::load_all(&repo.targets_dir())?;
            let chosen: Vec<&Manifest> = if all {
                targets.iter().collect()
            } else {
                let name = target.expect("clap requires --target without --all");
                let known: Vec<&str> = targets.iter().map(|m| m.name.as_str()).collect();
                let m = targets.iter().find(|m| m.name == name).ok_or_else(|| {
                    anyhow::anyhow!("no target {name}; targets/ has {}", known.join(", "))
                })?;
                vec![m]
            };
            let mut failed = Vec::new();
            for m in chosen {
                if !resonate_gen::conform::conform(&repo, m)? {
                    failed.push(m.name.clone());
                }
            }
            // Repeated after every target's report, so it is not lost above them.
            if let Err(why) = resonate_tests::traces::dir() {
                if !resonate_tests::traces::required() {
                    println!("\n!!! conformance: the traces section was NOT RUN for any target: {why}");
                }
            }
            if failed.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("resonate-gen: conformance failed for {}", failed.join(", "));
                Ok(ExitCode::FAILURE)
            }
        }
        Some(Command::Bench { target, all, quick, write }) => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let command = format!("cargo run -p resonate-gen -- {}", args.join(" "));
            let opts = bench::Options { quick, write, command };
            let mut over = Vec::new();
            for m in bench::select(&repo, target, all)? {
                if !bench::bench(&repo, &m, &opts)? {
                    over.push(m.name);
                }
            }
            if over.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("resonate-gen: over budget: {} (see above; raise a budget only with a reason)", over.join(", "));
                Ok(ExitCode::FAILURE)
            }
        }
        Some(Command::List) => {
            for m in Manifest::load_all(&repo.targets_dir())? {
                println!(
                    "{:<22} store={:<8} transport={:<5} push={:<5} auth={:<4} retention={:<3} metrics={:<10} dashboard={:<3} {}",
                    m.name,
                    m.store.name(),
                    m.transport.name(),
                    format!("{:?}", m.push).to_lowercase(),
                    format!("{:?}", m.auth).to_lowercase(),
                    if m.retention { "yes" } else { "no" },
                    format!("{:?}", m.metrics).to_lowercase(),
                    if m.dashboard { "yes" } else { "no" },
                    m.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        None if cli.all => {
            let spec = repo.spec()?;
            for m in Manifest::load_all(&repo.targets_dir())? {
                let files = render::render(&spec, &m)?;
                write(&repo.generated_dir(&m.name), &files)?;
                println!("rendered {} files of {}", files.len(), m.name);
            }
            let files = resonate_gen::ctl::render(&spec)?;
            write(&repo.generated_dir(resonate_gen::ctl::CRATE), &files)?;
            println!("rendered {} files of {}", files.len(), resonate_gen::ctl::CRATE);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let manifest = match (cli.target, cli.store, cli.transport) {
                (Some(path), _, _) => Manifest::load(&path)?,
                (None, Some(store), Some(transport)) => {
                    Manifest::find(&repo.targets_dir(), store, transport, cli.auth, cli.variant.as_deref())?
                }
                _ => bail!(
                    "nothing to render: pass --store and --transport (e.g. --store sqlite --transport http), \
                     --target FILE, --all, or a subcommand (check, list, ctl); see --help"
                ),
            };
            let spec = repo.spec()?;
            let files = render::render(&spec, &manifest)?;
            let out = cli.out.unwrap_or_else(|| repo.generated_dir(&manifest.name));
            if out.exists() && !out.is_dir() {
                bail!(
                    "--out {}: that is a file, and a target renders into a directory of files (Cargo.toml, \
                     src/…); give --out a directory (it is created if missing) or leave --out out for \
                     generated/{}/",
                    out.display(),
                    manifest.name
                );
            }
            write(&out, &files)?;
            println!("rendered {} files of {} into {}", files.len(), manifest.name, out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check_all(repo: &Repo) -> Result<ExitCode> {
    let spec = repo.spec()?;
    let mut stale = 0;
    let targets = Manifest::load_all(&repo.targets_dir())?;
    for m in &targets {
        let files = render::render(&spec, m)?;
        let drift = check(&repo.generated_dir(&m.name), &files)?;
        if drift.is_empty() {
            println!("{}: up to date ({} files)", m.name, files.len());
        }
        for d in &drift {
            println!("{d}");
        }
        stale += drift.len();
    }
    let ctl = resonate_gen::ctl::render(&spec)?;
    let drift = check(&repo.generated_dir(resonate_gen::ctl::CRATE), &ctl)?;
    if drift.is_empty() {
        println!("{}: up to date ({} files)", resonate_gen::ctl::CRATE, ctl.len());
    }
    for d in &drift {
        println!("{d}");
    }
    stale += drift.len();
    if stale > 0 {
        println!(
            "{stale} file(s) differ from a fresh render. Regenerate with `resonate-gen --all` (or one target: \
             `resonate-gen --store <store> --transport <transport> [--auth jwt] [--variant ops]`, or `resonate-gen ctl`) \
             (never edit generated/ by hand), review the diff, commit."
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("all {} targets and {} up to date", targets.len(), resonate_gen::ctl::CRATE);
    Ok(ExitCode::SUCCESS)
}
