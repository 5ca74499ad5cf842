//! The request kinds of protocol {{ c.version }}, from spec/kinds.yaml (and spec/ctl.yaml for the
//! few words the protocol does not say). `cli.rs` makes one subcommand of each entry and `mcp.rs`
//! one tool, so a kind added to the spec is a command and a tool at the next render.

/// The protocol version every request carries.
pub const PROTOCOL_VERSION: &str = "{{ c.version }}";

/// How an argument is written and what it becomes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// A string, as given.
    Str,
    /// An integer, as given.
    Int,
    /// A length of time (`1h30m`, `500ms`, or plain ms) sent as milliseconds.
    Duration,
    /// A length of time from now, sent as the instant it ends (Unix ms).
    FromNow,
    /// An instant: Unix ms, or `+DURATION` from now.
    Instant,
    /// A JSON payload (or `@FILE`), sent as `{"data": base64(JSON)}`.
    Value,
    /// `KEY=VALUE` pairs, sent as an object of strings.
    Tags,
    /// `ID=VERSION` pairs, sent as `[{id, version}]`.
    TaskRefs,
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// A flag without a value that sends this string (`--resolve` for `state: resolved`).
    Const(&'static str),
}

/// A field check of spec/kinds.yaml, run before sending; its message is the server's own.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    NonEmpty(&'static str),
    NoNul(&'static str),
    AtLeast(i64, &'static str),
}

/// One argument of a command (a flag, or a positional) and of its MCP tool (a property).
#[derive(Debug)]
pub struct Arg {
    /// The long flag without `--`, or the positional's name.
    pub flag: &'static str,
    /// The MCP property name.
    pub property: &'static str,
    /// Where the value goes in the request's `data`; `[]` steps into every element of a list.
    pub path: &'static [&'static str],
    pub ty: Type,
    pub positional: bool,
    /// One argument of those with this `path` must be given.
    pub required: bool,
    /// Another flag for it (`--data` for a command's only payload).
    pub alias: Option<&'static str>,
    /// Where it goes and its constraints; the command line and the tools add how to write it.
    pub help: &'static str,
    pub checks: &'static [Check],
}

/// A request (the kind itself, or the inner request of a subcommand such as `task fence … promise-create`).
#[derive(Debug)]
pub struct Request {
    pub args: &'static [Arg],
    /// Nested envelopes `{kind, head, data}` at these paths (`action`, `actions[]`).
    pub wraps: &'static [(&'static [&'static str], &'static str)],
    /// Fields that take another field's value instead of a flag (spec/ctl.yaml `defaults`).
    pub copies: &'static [(&'static [&'static str], &'static [&'static str])],
}

/// The inner request a subcommand stands for, when a field may hold one of several kinds.
#[derive(Debug)]
pub struct Sub {
    /// The subcommand (`promise-create`).
    pub name: &'static str,
    pub doc: &'static str,
    pub request: Request,
}

/// A request kind: its subcommand `<group> <verb>` and its MCP tool.
#[derive(Debug)]
pub struct Kind {
    pub name: &'static str,
    pub group: &'static str,
    pub verb: &'static str,
    pub tool: &'static str,
    /// The spec's doc of the kind.
    pub doc: &'static str,
    /// spec/ctl.yaml's help for it, if the doc is not enough; else empty.
    pub help: &'static str,
    /// Only a server started with --debug answers it.
    pub debug: bool,
    pub request: Request,
    /// The field holding one of several kinds (`action`), and a subcommand per kind.
    pub subs: Option<(&'static str, &'static [Sub])>,
    /// Examples: the arguments after `resonate-ctl`.
    pub examples: &'static [&'static [&'static str]],
}

/// The kinds' groups, as subcommands with what they hold.
pub const GROUPS: &[(&str, &str)] = &[
{% for g in c.groups %}    ({{ g.0 }}, {{ g.1 }}),
{% endfor %}];

/// Every request kind of spec/kinds.yaml, in its order.
pub const KINDS: &[Kind] = &[
{% for k in c.kinds %}    Kind {
        name: {{ k.name }},
        group: {{ k.group }},
        verb: {{ k.verb }},
        tool: {{ k.tool }},
        doc: {{ k.doc }},
        help: {{ k.help }},
        debug: {{ k.debug }},
        request: {{ k.request }},
        subs: {{ k.subs }},
        examples: &[{% for e in k.examples %}&[{{ e }}], {% endfor %}],
    },
{% endfor %}];
