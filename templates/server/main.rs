//! {{ c.crate_name }}: a Resonate durable-execution server speaking protocol {{ c.spec.protocol.version }}.
//!
//! {{ c.target.description }}.
//!
{% if c.sqlite() %}
//! Layout: `protocol` (wire records and requests, rendered from spec/), `machine` (the
//! protocol's transitions and internal rules), `store` (durable state), `http` (the `POST /`
//! endpoint, SSE streams and health routes), `delivery` (messages to workers), `cron`
//! (schedule expressions), `config` (flags and environment).
{% else if c.mysql() %}
//! Layout: `protocol` (wire records and requests, rendered from spec/), `machine` (the
//! protocol's transitions and internal rules), `store` (the MySQL store: a small pool of
//! connections, one InnoDB transaction per request), `http` (the `POST /` endpoint, SSE streams
//! and health routes), `delivery` (messages to workers), `cron` (schedule expressions), `config`
//! (flags and environment).
{% else %}
//! Layout: `protocol` (wire records and requests, rendered from spec/), `store` (the
//! PostgreSQL store: a small connection pool, and `schema.sql`, whose server-side functions run
//! the protocol's transitions and internal rules, one call per request), `http` (the `POST /`
//! endpoint, SSE streams and health routes), `delivery` (messages to workers), `cron`
//! (schedule expressions), `config` (flags and environment).
{% endif %}
{% if c.jwt() %}
//! `auth` verifies the JWT every request carries and holds it to its id prefix.
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
{% else %}
mod nats;
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

/// Whether messages at `level` are written.
pub fn logs(level: Level) -> bool {
    level as u8 <= LOG_LEVEL.load(Ordering::Relaxed)
}

/// Writes one log line to stderr if its level is enabled.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        if $crate::logs($crate::Level::$level) {
            eprintln!("{} {}", stringify!($level).to_lowercase(), format_args!($($arg)*));
        }
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
