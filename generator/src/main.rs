use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use resonate_gen::manifest::{Manifest, Store, Transport};
use resonate_gen::{check, render, write, Repo};
use std::path::PathBuf;
use std::process::ExitCode;

/// Renders a minimal, single-purpose Resonate server crate for one store and transport.
///
/// The protocol lives in spec/ as data, each target in targets/<store>-<transport>.yaml, and the
/// code in templates/. A render writes generated/<target>/, a standalone crate:
///
///   resonate-gen --store sqlite --transport http     # renders generated/sqlite-http
///   cargo run --manifest-path generated/sqlite-http/Cargo.toml -- --help
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
    /// Render this manifest file instead of one from targets/.
    #[arg(long, value_name = "FILE")]
    target: Option<PathBuf>,
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
    /// Build a target, start it on free loopback ports with a fresh store, run the conformance
    /// suite (tests/) against it and print a per-section report.
    Conform {
        /// The target to hold to the spec (a name from targets/), or --all.
        #[arg(long, required_unless_present = "all")]
        target: Option<String>,
        /// Every target in targets/.
        #[arg(long, conflicts_with = "target")]
        all: bool,
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
        Some(Command::Conform { target, all }) => {
            let targets = Manifest::load_all(&repo.targets_dir())?;
            let chosen: Vec<&Manifest> = if all {
                targets.iter().collect()
            } else {
                let name = target.expect("clap requires --target without --all");
                let known: Vec<&str> = targets.iter().map(|m| m.name.as_str()).collect();
                vec![targets.iter().find(|m| m.name == name).ok_or_else(|| {
                    anyhow::anyhow!("no target {name}; targets/ has {}", known.join(", "))
                })?]
            };
            let mut failed = Vec::new();
            for m in chosen {
                if !resonate_gen::conform::conform(&repo, m)? {
                    failed.push(m.name.clone());
                }
            }
            if failed.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("resonate-gen: conformance failed for {}", failed.join(", "));
                Ok(ExitCode::FAILURE)
            }
        }
        Some(Command::List) => {
            for m in Manifest::load_all(&repo.targets_dir())? {
                println!(
                    "{:<14} store={:<8} transport={:<5} push={:<5} {}",
                    m.name,
                    m.store.name(),
                    m.transport.name(),
                    format!("{:?}", m.push).to_lowercase(),
                    m.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let manifest = match (cli.target, cli.store, cli.transport) {
                (Some(path), _, _) => Manifest::load(&path)?,
                (None, Some(store), Some(transport)) => Manifest::find(&repo.targets_dir(), store, transport)?,
                _ => bail!(
                    "nothing to render: pass --store and --transport (e.g. --store sqlite --transport http), \
                     --target FILE, or a subcommand (check, list); see --help"
                ),
            };
            let spec = repo.spec()?;
            let files = render::render(&spec, &manifest)?;
            let out = cli.out.unwrap_or_else(|| repo.generated_dir(&manifest.name));
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
    if stale > 0 {
        println!(
            "{stale} file(s) differ from a fresh render. Regenerate with `resonate-gen --store <store> --transport <transport>` \
             (never edit generated/ by hand), review the diff, commit."
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("all {} targets up to date", targets.len());
    Ok(ExitCode::SUCCESS)
}
