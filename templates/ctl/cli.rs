//! The command line, built at run time from [`KINDS`] with clap's builder API: one subcommand
//! `<group> <verb>` per kind, one flag (or positional) per argument, the spec's doc as its help
//! and examples after it. Beside the kinds: `tree`, `watch`, `invoke`, `mcp` and `completions`.

use crate::kinds::{Arg, Kind, Request, Type, GROUPS, KINDS};
use crate::request::Inputs;
use clap::{ArgAction, ArgGroup, ArgMatches, Command};

/// The exit codes, for `--help` and main.rs.
pub const EXIT_CODES: &str = "Exit codes:
  0  success
  1  refused: the server answered 4xx; its message is printed to stderr exactly as sent
  2  bad usage or input (also a field check of the spec, with the server's message)
  3  server unreachable: no connection, no answer in time, no NATS subscriber
  4  server error: a 5xx or an answer that is not the protocol's
  5  watch: still pending when --timeout ran out";

/// The whole command tree.
pub fn command() -> Command {
    let mut root = Command::new("resonate-ctl")
        .version(env!("CARGO_PKG_VERSION"))
        .about(format!(
            "A command line and MCP server for Resonate servers (protocol {}), generated from the spec: \
             one subcommand per request kind.",
            crate::kinds::PROTOCOL_VERSION
        ))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .after_help(format!(
            "Examples:\n  resonate-ctl promise create order-1 --timeout 1h --data '{{\"amount\":3}}'\n  \
             resonate-ctl promise get order-1 --json\n  resonate-ctl invoke charge --target workers 3 --wait\n  \
             resonate-ctl --server nats://127.0.0.1:4222 tree order-1\n\n{EXIT_CODES}"
        ))
        .arg(
            clap::Arg::new("server")
                .long("server")
                .help_heading("Global options")
                .short('S')
                .global(true)
                .env("RESONATE_SERVER")
                .hide_env_values(true)
                .default_value("http://127.0.0.1:8001")
                .value_name("URL")
                .help("The server: http://host:port, or nats://host:port for the NATS targets"),
        )
        .arg(
            clap::Arg::new("token")
                .long("token")
                .help_heading("Global options")
                .short('T')
                .global(true)
                .env("RESONATE_TOKEN")
                .hide_env_values(true)
                .value_name("JWT")
                .help("A JWT for servers with auth (the *-jwt targets), sent as head.auth"),
        )
        .arg(
            clap::Arg::new("nats-api-prefix")
                .long("nats-api-prefix")
                .help_heading("Global options")
                .global(true)
                .env("RESONATE_NATS__API_PREFIX")
                .hide_env_values(true)
                .default_value("resonate.requests")
                .value_name("PREFIX")
                .help("Over NATS, requests are published to <PREFIX>.default"),
        )
        .arg(
            clap::Arg::new("request-timeout")
                .long("request-timeout")
                .help_heading("Global options")
                .global(true)
                .default_value("30s")
                .value_name("DURATION")
                .help("How long one request may wait for its answer"),
        )
        .arg(
            clap::Arg::new("json")
                .long("json")
                .help_heading("Global options")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Print the answer's data as one line of JSON, as the wire has it (for scripts)"),
        );
    for (group, about) in GROUPS {
        let mut sub = Command::new(*group).about(*about).subcommand_required(true).arg_required_else_help(true);
        for kind in KINDS.iter().filter(|k| k.group == *group) {
            sub = sub.subcommand(kind_command(kind));
        }
        root = root.subcommand(sub);
    }
    root.subcommand(tree_command())
        .subcommand(watch_command())
        .subcommand(invoke_command())
        .subcommand(
            Command::new("mcp")
                .about("Serve the Model Context Protocol over stdio: one tool per request kind, plus promise_wait, invoke and tree")
                .after_help(
                    "Register it with an agent client, e.g. in claude_desktop_config.json:\n  \
                     {\"mcpServers\": {\"resonate\": {\"command\": \"resonate-ctl\", \"args\": [\"--server\", \"http://127.0.0.1:8001\", \"mcp\"]}}}",
                ),
        )
        .subcommand(
            Command::new("completions")
                .about("Print a shell completion script")
                .arg(clap::Arg::new("shell").required(true).value_parser(clap::value_parser!(clap_complete::Shell)))
                .after_help("Examples:\n  resonate-ctl completions bash > /etc/bash_completion.d/resonate-ctl\n  resonate-ctl completions zsh > ~/.zfunc/_resonate-ctl"),
        )
}

/// `<group> <verb>`: the kind's doc, its arguments, and examples.
fn kind_command(kind: &'static Kind) -> Command {
    let mut about = kind.doc.to_string();
    if kind.debug {
        about.push_str(" (only with a server started with --debug)");
    }
    let mut long = about.clone();
    if !kind.help.is_empty() {
        long = format!("{long}\n\n{}", kind.help);
    }
    let mut cmd = Command::new(kind.verb).about(about).long_about(long).after_help(examples(kind.examples));
    cmd = with_args(cmd, &kind.request);
    if kind.request.args.iter().any(|a| a.property == "cursor") {
        cmd = cmd.arg(
            clap::Arg::new("all")
                .long("all")
                .action(ArgAction::SetTrue)
                .help("Follow the cursor and print every page"),
        );
    }
    if let Some((_, subs)) = kind.subs {
        cmd = cmd.subcommand_required(true);
        for sub in subs {
            cmd = cmd.subcommand(with_args(Command::new(sub.name).about(sub.doc), &sub.request));
        }
    }
    cmd
}

fn examples(examples: &[&[&str]]) -> String {
    let mut text = String::from("Examples:");
    for args in examples {
        text.push_str("\n  resonate-ctl");
        for a in *args {
            text.push(' ');
            text.push_str(&quote(a));
        }
    }
    text
}

/// Quotes an argument for a POSIX shell when it needs it.
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// Adds the request's arguments; arguments that set the same field form a group of which one
/// may be given (and one must, if the field is required).
fn with_args(mut cmd: Command, request: &Request) -> Command {
    let mut paths: Vec<&[&str]> = Vec::new();
    for arg in request.args {
        if !paths.contains(&arg.path) {
            paths.push(arg.path);
        }
    }
    for path in paths {
        let args: Vec<&Arg> = request.args.iter().filter(|a| a.path == path).collect();
        let alone = args.len() == 1;
        for arg in &args {
            cmd = cmd.arg(clap_arg(arg, alone));
        }
        if !alone {
            let group = format!("field {}", path.join("."));
            cmd = cmd.group(
                ArgGroup::new(group)
                    .args(args.iter().map(|a| a.property))
                    .required(args.iter().any(|a| a.required))
                    .multiple(false),
            );
        }
    }
    cmd
}

fn clap_arg(arg: &'static Arg, alone: bool) -> clap::Arg {
    let how = match arg.ty {
        Type::Duration | Type::FromNow => " (written 500ms, 30s, 1m, 1h30m, 2d, or ms)",
        Type::Instant => ": Unix ms, or +DURATION from now",
        Type::Value => ": JSON (other text is a JSON string), @FILE, or @- for stdin; sent as base64 of the JSON, as the SDKs do",
        Type::Tags => ": KEY=VALUE, repeat for more",
        Type::TaskRefs => ": ID=VERSION, repeat for more",
        _ if arg.path.contains(&"[]") => "; repeat for more",
        _ => "",
    };
    // How to write it goes before the constraints: "data.ttl, in ms (written …); at least 1".
    let help = match arg.help.split_once("; ") {
        Some((what, constraints)) => format!("{what}{how}; {constraints}"),
        None => format!("{}{how}", arg.help),
    };
    let mut c = clap::Arg::new(arg.property).help(help).value_name(arg.flag.to_uppercase());
    if !arg.positional {
        c = c.long(arg.flag);
    }
    if let Some(alias) = arg.alias {
        c = c.visible_alias(alias);
    }
    let repeated = arg.path.contains(&"[]") || matches!(arg.ty, Type::Tags | Type::TaskRefs);
    c = match arg.ty {
        Type::Const(_) => c.action(ArgAction::SetTrue),
        _ if repeated => c.action(ArgAction::Append),
        _ => c.action(ArgAction::Set),
    };
    c = match arg.ty {
        Type::Duration | Type::FromNow => c.value_name("DURATION"),
        Type::Instant => c.value_name("MS|+DURATION"),
        Type::Value => c.value_name("JSON|@FILE").allow_hyphen_values(true),
        Type::Tags => c.value_name("KEY=VALUE"),
        Type::TaskRefs => c.value_name("ID=VERSION"),
        Type::Int => c.allow_negative_numbers(true),
        Type::Choice(options) => c.value_parser(clap::builder::PossibleValuesParser::new(options.iter().copied())),
        Type::Str => c.allow_hyphen_values(!arg.positional),
        Type::Const(_) => c,
    };
    c.required(arg.required && alone)
}

fn tree_command() -> Command {
    Command::new("tree")
        .about("Draw the call graph under a root promise, with states")
        .long_about(
            "Draw the call graph under a root promise, with states.\n\nThe SDKs tag every promise a \
             function creates with resonate:origin (the root) and resonate:parent (its caller); the \
             tree is read with promise.search by the root's origin and drawn by parent.",
        )
        .arg(clap::Arg::new("root").value_name("ROOT").required(true).help("The root promise's id"))
        .after_help("Examples:\n  resonate-ctl tree order-1\n  resonate-ctl tree order-1 --json")
}

fn watch_command() -> Command {
    Command::new("watch")
        .about("Wait until a promise is settled, then print it")
        .arg(clap::Arg::new("id").value_name("ID").required(true).help("The promise's id"))
        .arg(
            clap::Arg::new("timeout")
                .long("timeout")
                .value_name("DURATION")
                .help("Give up after this long (exit code 5); without it, wait as long as it takes"),
        )
        .arg(
            clap::Arg::new("interval")
                .long("interval")
                .value_name("DURATION")
                .default_value("500ms")
                .help("How often to ask"),
        )
        .after_help("Examples:\n  resonate-ctl watch order-1\n  resonate-ctl watch order-1 --timeout 30s --json")
}

fn invoke_command() -> Command {
    Command::new("invoke")
        .about("Start a function on workers, as the SDKs' rpc does")
        .long_about(
            "Start a function on workers, as the SDKs' rpc does.\n\nCreates a promise tagged \
             resonate:target (poll://any@GROUP over HTTP, nats://resonate.recv.GROUP over NATS, or \
             GROUP as given if it is an address) whose param is the SDKs' call, \
             base64 of {\"func\":FUNC,\"args\":[ARGS],\"version\":N}; the server dispatches its task \
             to a worker of the group. The root tags resonate:origin, resonate:branch and \
             resonate:parent are the id, resonate:scope is global, as the SDKs write them.",
        )
        .arg(clap::Arg::new("func").value_name("FUNC").required(true).help("The registered function's name"))
        .arg(
            clap::Arg::new("args")
                .value_name("ARGS")
                .num_args(0..)
                .allow_negative_numbers(true)
                .help("The arguments, each JSON (text that is not JSON is a string) or @FILE"),
        )
        .arg(clap::Arg::new("target").long("target").value_name("GROUP").required(true).help("The worker group, or an address"))
        .arg(clap::Arg::new("id").long("id").value_name("ID").help("The promise id [default: FUNC-<time>]"))
        .arg(
            clap::Arg::new("timeout")
                .long("timeout")
                .value_name("DURATION")
                .default_value("24h")
                .help("How long the call may take before it times out"),
        )
        .arg(clap::Arg::new("version").long("version").value_name("N").default_value("1").help("The function's version"))
        .arg(clap::Arg::new("delay").long("delay").value_name("DURATION").help("Dispatch no earlier than this from now (resonate:delay)"))
        .arg(clap::Arg::new("tags").long("tag").value_name("KEY=VALUE").action(ArgAction::Append).help("More tags; repeat for more"))
        .arg(
            clap::Arg::new("wait")
                .long("wait")
                .value_name("DURATION")
                .num_args(0..=1)
                .default_missing_value("forever")
                .help("Then wait for the result (as watch), at most DURATION if given"),
        )
        .after_help(
            "Examples:\n  resonate-ctl invoke add --target workers 1 2\n  \
             resonate-ctl invoke greet --target workers '\"Ada\"' --id greet-ada --wait 1m",
        )
}

/// The arguments of `request` given in `matches`, by property.
pub fn inputs(request: &Request, matches: &ArgMatches, into: &mut Inputs) {
    for arg in request.args {
        let values: Vec<String> = match arg.ty {
            Type::Const(_) if matches.get_flag(arg.property) => vec!["true".to_string()],
            Type::Const(_) => Vec::new(),
            _ => matches.get_many::<String>(arg.property).map(|v| v.cloned().collect()).unwrap_or_default(),
        };
        if !values.is_empty() {
            into.insert(arg.property.to_string(), values);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::build;

    #[test]
    fn the_command_tree_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn every_kind_is_a_subcommand() {
        let cmd = command();
        for kind in KINDS {
            let group = cmd.find_subcommand(kind.group).unwrap_or_else(|| panic!("no `{}` command", kind.group));
            assert!(group.find_subcommand(kind.verb).is_some(), "no `{} {}` for {}", kind.group, kind.verb, kind.name);
        }
    }

    /// Every example in --help parses and builds a request of its kind.
    #[test]
    fn every_example_parses_and_builds_its_request() {
        for kind in KINDS {
            assert!(!kind.examples.is_empty(), "{} has no example", kind.name);
            for example in kind.examples {
                let argv = std::iter::once("resonate-ctl").chain(example.iter().copied());
                let matches = command()
                    .try_get_matches_from(argv)
                    .unwrap_or_else(|e| panic!("{}: {example:?}: {e}", kind.name));
                let (group, m) = matches.subcommand().unwrap();
                let (verb, m) = m.subcommand().unwrap();
                assert_eq!((group, verb), (kind.group, kind.verb), "{example:?}");
                let mut given = Inputs::new();
                inputs(&kind.request, m, &mut given);
                build(&kind.request, &given, 1_000).unwrap_or_else(|e| panic!("{example:?}: {e}"));
                if let Some((_, subs)) = kind.subs {
                    let (name, sm) = m.subcommand().expect("a subcommand");
                    let sub = subs.iter().find(|s| s.name == name).unwrap();
                    inputs(&sub.request, sm, &mut given);
                    build(&sub.request, &given, 1_000).unwrap_or_else(|e| panic!("{example:?}: {e}"));
                }
            }
        }
    }

    #[test]
    fn settle_takes_a_verb_and_refuses_two() {
        let ok = command().try_get_matches_from(["resonate-ctl", "promise", "settle", "p", "--reject", "--data", "\"no\""]);
        assert!(ok.is_ok());
        let two = command().try_get_matches_from(["resonate-ctl", "promise", "settle", "p", "--reject", "--resolve"]);
        assert!(two.is_err());
        let none = command().try_get_matches_from(["resonate-ctl", "promise", "settle", "p"]);
        assert!(none.is_err());
    }
}
