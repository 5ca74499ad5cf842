//! {{ c.crate_name }}: a Resonate durable-execution server speaking protocol {{ c.spec.protocol.version }}.
//!
//! {{ c.target.description }}.
//!
//! Layout, each module using only those after it: `{% if c.http() %}http` (the `POST /` endpoint,
//! SSE streams and health routes){% else %}nats` (the NATS connection: request subjects in a
//! queue group, answers to reply subjects){% endif %}, `delivery` (messages to workers), `service`
//! (envelope checks and the background rules, for any transport), `store` ({% if c.sqlite() %}one
//! SQLite file, one writer thread{% else if c.mysql() %}a small pool of MySQL connections, one
//! InnoDB transaction per request{% else %}a small PostgreSQL pool; `schema.sql`'s server-side
//! functions run the protocol's transitions and internal rules, one call per request{% endif %}),
{% if c.machine() %}
//! `machine` (the protocol's transitions and internal rules over the store's `Records`),
{% endif %}
//! `outbox` (queued messages between store and delivery), `protocol` (wire records and requests,
//! rendered from spec/), `cron` (schedule expressions), `clock`, `config` (flags and
//! environment).
{% if c.jwt() %}
//! `auth` verifies the JWT every request carries and holds it to its id prefix.
{% endif %}
{% if c.metrics %}
//! `metrics` holds the counters the other modules bump; `exporter` serves them, with the store's
//! counts, at `GET /metrics` on a port of its own.
{% endif %}
{% if c.https %}
//! `tls` opens the TLS connections of pushes to https:// addresses.
{% endif %}

{% if c.jwt() %}
mod auth;
{% endif %}
mod clock;
mod config;
mod cron;
mod delivery;
{% if c.http() %}
mod http;
{% if c.https %}
mod tls;
{% endif %}
{% else %}
mod nats;
{% endif %}
{% if c.metrics %}
mod exporter;
mod metrics;
{% endif %}
{% if c.machine() %}
mod machine;
mod protocol;
{% else %}
// The records and states document the wire; the SQL functions build them, so Rust never does.
#[allow(dead_code)]
mod protocol;
{% endif %}
mod outbox;
mod service;
mod store;
{% if c.dashboard %}
mod ui;
{% endif %}
{% if !c.sqlite() %}
mod url;
{% endif %}

use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};

/// Log levels, most severe first.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

static LOG_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the level from its name (the `level` option).
pub fn set_log_level(name: &str) -> Result<(), String> {
    let level = match name {
        "error" => Level::Error,
        "warn" => Level::Warn,
        "info" => Level::Info,
        "debug" => Level::Debug,
        _ => return Err(format!("level must be error, warn, info or debug, got '{name}'")),
    };
    LOG_LEVEL.store(level as u8, Ordering::Relaxed);
    Ok(())
}

/// Writes `message` to stderr as one line, led by its level, if that level is enabled.
pub fn write_log(level: Level, message: std::fmt::Arguments<'_>) {
    if level as u8 <= LOG_LEVEL.load(Ordering::Relaxed) {
        let name = match level {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        };
        eprintln!("{name} {message}");
    }
}

/// Writes one log line to stderr if its level is enabled: `log!(Warn, "…{x}…")`.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::write_log($crate::Level::$level, format_args!($($arg)*))
    };
}

fn main() -> ExitCode {
    let config = match config::Config::load() {
        Ok(Some(c)) => c,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{{ c.crate_name }}: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{{ c.crate_name }}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on({% if c.http() %}http{% else %}nats{% endif %}::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{{ c.crate_name }}: {e}");
            ExitCode::FAILURE
        }
    }
}
