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
    /// Most messages per address kept for another attempt after a failed delivery.
    pub retry_cap: i64,
{% if c.push %}
    /// ms a push may take before it counts as failed.
    pub push_timeout: i64,
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
            retry_cap: self.messages_retry_cap,
{% if c.push %}
            push_timeout: self.transports_http_push_request_timeout,
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
}
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
