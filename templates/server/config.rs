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
}

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Config {
{% for o in c.options %}
    /// {{ o.doc }}
    pub {{ o.field }}: {{ o.ty }},
{% endfor %}
}

/// Every flag this server takes.
const FLAGS: &[&str] = &[{% for o in c.options %}"{{ o.flag }}", {% endfor %}];

/// The `--help` text.
const HELP: &str = {{ c.help }};

impl Config {
    /// Reads the environment, then the command line. `Ok(None)` means `--help` was printed.
    pub fn load() -> Result<Option<Config>, String> {
        let mut config = Config {
{% for o in c.options %}
            {{ o.field }}: {{ o.default }},
{% endfor %}
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
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument '{arg}'; see --help"));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            if !FLAGS.contains(&name.as_str()) {
                return Err(format!("unknown option '--{name}'; see --help"));
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
{% if o.ty == "String" %}
                self.{{ o.field }} = value.to_string();
{% else if o.is_bool %}
                self.{{ o.field }} = match value {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(format!("{source}: expected true or false, got '{value}'")),
                };
{% else %}
                self.{{ o.field }} = value
                    .parse()
                    .map_err(|_| format!("{source}: expected an integer, got '{value}'"))?;
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
        }
    }

    /// The URL sent to workers in execute messages.
    fn server_url(&self) -> String {
        if self.server_url.is_empty() {
            format!("http://{}:{}", self.server_host, self.server_port)
        } else {
            self.server_url.clone()
        }
    }
}
