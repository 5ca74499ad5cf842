//! Configuration from flags and `RESONATE_*` environment variables (flags win), with the official
//! server's names and defaults. Rendered from spec/config.yaml.

use std::sync::atomic::AtomicBool;

/// What the running server shares between requests, rules and delivery.
pub struct Settings {
    /// ms between dispatches of a pending task (rule R6).
    pub retry_timeout: i64,
    /// Sent to workers in execute messages.
    pub server_url: String,
    /// Set by debug.start: background rules and delivery pause.
    pub paused: AtomicBool,
    /// Held by the background rules for each pass; debug.start waits for it, so that once it
    /// has answered no pass is under way.
    pub passing: tokio::sync::Mutex<()>,
    /// Most messages per address kept for another attempt after a failed delivery.
    pub retry_cap: i64,
{% if c.push %}
    /// ms a push may take before it counts as failed.
    pub push_timeout: i64,
{% endif %}
{% if c.https %}
    /// TLS for https:// pushes.
    pub tls: crate::tls::Tls,
{% endif %}
{% if c.retention %}
    /// ms after settlement a promise is deleted (rule R8); 0 keeps everything.
    pub retention: i64,
{% endif %}
}

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Config {
{% for o in c.options %}
    /// {{ o.doc }}
    pub {{ o.field }}: {{ o.ty }},
{% endfor %}
{% if c.https %}
    /// TLS for https:// pushes: the platform's roots plus --transports-http-push-ca-file.
    pub push_tls: crate::tls::Tls,
{% endif %}
}

/// Every flag this server takes.
const FLAGS: &[&str] = &[{% for o in c.options %}"{{ o.flag }}", {% endfor %}];

/// The `--help` text.
const HELP: &str = {{ c.help }};

/// The `--version` text.
const VERSION: &str = concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION"), " (Resonate protocol {{ c.spec.protocol.version }})");

impl Config {
    /// Reads the environment, then the command line. `Ok(None)` means `--help` or `--version`
    /// was printed.
    pub fn load() -> Result<Option<Config>, String> {
        let mut config = Config {
{% for o in c.options %}
            {{ o.field }}: {{ o.default }},
{% endfor %}
{% if c.https %}
            push_tls: crate::tls::Tls::default(),
{% endif %}
        };
{% for o in c.options %}
        if let Ok(v) = std::env::var("{{ o.env }}") {
            config.set("{{ o.flag }}", &v, "{{ o.env }}")?;
        }
{% endfor %}
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                print!("{HELP}");
                return Ok(None);
            }
            if arg == "-V" || arg == "--version" {
                println!("{VERSION}");
                return Ok(None);
            }
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument '{arg}': options start with --; see --help"));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            if !FLAGS.contains(&name.as_str()) {
                return Err(match suggestion(&name) {
                    Some(flag) => format!("unknown option '--{name}'; did you mean --{flag}? (see --help)"),
                    None => format!("unknown option '--{name}'; see --help"),
                });
            }
            let value = match inline {
                Some(v) => v,
                None if config.is_bool(&name) => "true".to_string(),
                None => args
                    .next()
                    .ok_or_else(|| format!("--{name} needs a value; see --help"))?,
            };
            config.set(&name, &value, &format!("--{name}"))?;
        }
{% if c.https %}
        // Read now, so a CA file that cannot be used stops the server before it starts.
        config.push_tls = crate::tls::Tls::load(&config.transports_http_push_ca_file)?;
{% endif %}
        Ok(Some(config))
    }

    fn is_bool(&self, name: &str) -> bool {
        matches!(name, {% for o in c.options %}{% if o.is_bool %}"{{ o.flag }}" | {% endif %}{% endfor %}"")
    }

    /// Sets one option from its text; `source` names the flag or variable in errors.
    fn set(&mut self, name: &str, value: &str, source: &str) -> Result<(), String> {
        match name {
{% for o in c.options %}
            "{{ o.flag }}" => {
{% if o.is_url %}
                if !value.is_empty() && !is_url(value) {
                    return Err(format!(
{% if c.nats() %}
                        "{source}: expected a nats:// URL that workers can reach, such as \
                         nats://nats.example.com:4222, got '{value}'"
{% else %}
                        "{source}: expected an http:// or https:// URL that workers can reach, such as \
                         http://resonate.example.com:8001, got '{value}'"
{% endif %}
                    ));
                }
                self.{{ o.field }} = value.to_string();
{% else if o.ty == "String" %}
                self.{{ o.field }} = value.to_string();
{% else if o.is_duration %}
                self.{{ o.field }} = duration_ms(value).ok_or_else(|| {
                    format!("{source}: expected a duration such as 7d, 12h, 30m, 10s, 500ms or 1h30m, got '{value}'")
                })?;
{% else if o.is_bool %}
                self.{{ o.field }} = match value {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(format!("{source}: expected true or false, got '{value}'")),
                };
{% else if o.ty == "u16" %}
                self.{{ o.field }} = value
                    .parse()
                    .map_err(|_| format!("{source}: expected a port number from 0 to 65535, got '{value}'"))?;
{% else %}
                self.{{ o.field }} = value
                    .parse()
                    .map_err(|_| format!("{source}: expected a whole number, got '{value}'"))?;
{% endif %}
{% if let Some(min) = o.min %}
                if self.{{ o.field }} < {{ min }} {
                    return Err(format!("{source}: must be at least {{ min }}, got {value}"));
                }
{% endif %}
            }
{% endfor %}
            _ => return Err(format!("unknown option '{source}'; see --help")),
        }
        Ok(())
    }

    /// The run-time settings these options give.
    pub fn settings(&self) -> Settings {
        Settings {
            retry_timeout: self.tasks_retry_timeout,
            server_url: self.server_url(),
            paused: AtomicBool::new(false),
            passing: tokio::sync::Mutex::new(()),
            retry_cap: self.messages_retry_cap,
{% if c.push %}
            push_timeout: self.transports_http_push_request_timeout,
{% endif %}
{% if c.https %}
            tls: self.push_tls.clone(),
{% endif %}
{% if c.retention %}
            retention: self.retention,
{% endif %}
        }
    }

    /// The URL sent to workers in execute messages.
    fn server_url(&self) -> String {
        if self.server_url.is_empty() {
{% if c.nats() %}
            self.nats_url.clone()
{% else %}
            format!("http://{}:{}", self.server_host, self.server_port)
{% endif %}
        } else {
            self.server_url.clone()
        }
    }
{% if c.sqlite() %}

    /// A SQLite file serves one server process: the store, as it opens the file, takes
    /// `<path>-lock` for as long as the process runs (a lock the kernel drops when the process
    /// ends, however it ends), so a second server on the same file is refused at start-up instead
    /// of racing the first for the file's one writer and delivering its messages twice. An
    /// existing file must be a SQLite database.
    pub fn claim_sqlite_file(&self) -> Result<(), String> {
        use std::io::Read;
        static LOCK: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
        let path = &self.storage_sqlite_path;
        if path == ":memory:" || path.starts_with("file:") {
            return Ok(());
        }
        let change = "give --storage-sqlite-path (RESONATE_STORAGE__SQLITE__PATH) another file";
        if std::path::Path::new(path).is_dir() {
            return Err(format!("--storage-sqlite-path: '{path}' is a directory, not a database file; {change}"));
        }
        if let Ok(mut file) = std::fs::File::open(path) {
            let mut header = Vec::new();
            let _ = file.by_ref().take(16).read_to_end(&mut header);
            if !header.is_empty() && header != b"SQLite format 3\0" {
                return Err(format!(
                    "--storage-sqlite-path: '{path}' exists but is not a SQLite database; {change}, \
                     or a path where a new database may be created"
                ));
            }
        }
        let lock_path = format!("{path}-lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("--storage-sqlite-path: cannot create '{lock_path}' beside the database: {e}"))?;
        match lock.try_lock() {
            Ok(()) => {
                let _ = LOCK.set(lock);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                "--storage-sqlite-path: '{path}' is in use by another server process (it holds \
                 '{lock_path}'); a SQLite file serves one process. Stop the other server, or {change}; \
                 for several servers on one database use postgres-http or mysql-http"
            )),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(format!("--storage-sqlite-path: cannot lock '{lock_path}': {e}"))
            }
        }
    }
{% endif %}
}

/// The flag most like an unknown one: one that has it as a whole word (`port` for
/// `server-port`), else one a typo or two away.
fn suggestion(unknown: &str) -> Option<&'static str> {
    let word = |flag: &str| flag.split('-').any(|w| w == unknown) || flag.ends_with(&format!("-{unknown}"));
    if let Some(flag) = FLAGS.iter().find(|f| !unknown.is_empty() && word(f)) {
        return Some(flag);
    }
    FLAGS
        .iter()
        .map(|f| (edit_distance(f, unknown), *f))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, f)| f)
}

/// Levenshtein distance between two short ASCII strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
{% if c.has_urls() %}

{% if c.nats() %}
/// An absolute `nats://` URL with a host and no spaces.
fn is_url(text: &str) -> bool {
    let rest = text.strip_prefix("nats://");
{% else %}
/// An absolute `http://` or `https://` URL with a host and no spaces.
fn is_url(text: &str) -> bool {
    let rest = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://"));
{% endif %}
    let host = rest.and_then(|r| r.split(['/', '?', '#']).next()).unwrap_or_default();
    !host.is_empty() && !host.starts_with(':') && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}
{% endif %}
{% if c.has_durations() %}

/// Milliseconds in a duration written as a sum of `<number><unit>` terms, units `d`, `h`, `m`,
/// `s` and `ms` (`7d`, `1h30m`); a bare number is milliseconds. None if malformed or too long.
fn duration_ms(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return (ms >= 0).then_some(ms);
    }
    if text.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "d" => 86_400_000,
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return None,
        };
        rest = &rest[unit..];
        total = total.checked_add(number.checked_mul(scale)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::duration_ms;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("7d"), Some(7 * 86_400_000));
        assert_eq!(duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(duration_ms("500ms"), Some(500));
        assert_eq!(duration_ms("10s"), Some(10_000));
        assert_eq!(duration_ms("250"), Some(250));
        assert_eq!(duration_ms("0"), Some(0));
        for bad in ["", "-1", "d", "7x", "1h30", "ms", "99999999999999d", "1.5h"] {
            assert_eq!(duration_ms(bad), None, "{bad}");
        }
    }
}
{% endif %}

#[cfg(test)]
mod flag_tests {
    use super::*;

    #[test]
    fn an_unknown_flag_gets_the_nearest_one() {
        let flag = FLAGS[0];
        let last_word = flag.rsplit('-').next().unwrap();
        assert_eq!(suggestion(last_word), Some(flag), "a word of the flag");
        let mut typo: Vec<char> = flag.chars().collect();
        typo.swap(1, 2);
        assert_eq!(suggestion(&typo.into_iter().collect::<String>()), Some(flag), "two letters swapped");
        assert_eq!(suggestion("nothing-like-it"), None);
        assert_eq!(suggestion(""), None);
    }
{% if c.has_urls() %}

    #[test]
    fn urls_need_a_scheme_and_a_host() {
{% if c.nats() %}
        for good in ["nats://127.0.0.1:4222", "nats://nats.example.com"] {
            assert!(is_url(good), "{good}");
        }
        for bad in ["not a url", "127.0.0.1:4222", "nats://", "nats://:4222", "http://x", "nats://a b"] {
            assert!(!is_url(bad), "{bad}");
        }
{% else %}
        for good in ["http://localhost:8001", "https://resonate.example.com", "http://10.0.0.1:8001/base"] {
            assert!(is_url(good), "{good}");
        }
        for bad in ["not a url", "localhost:8001", "http://", "http:///x", "http://:8001", "ftp://x", "http://a b"] {
            assert!(!is_url(bad), "{bad}");
        }
{% endif %}
    }
{% endif %}
}
