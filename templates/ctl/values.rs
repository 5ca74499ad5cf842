//! How people write values and how the wire carries them: durations (`1h30m`, `500ms`), instants
//! (Unix ms or `+1h` from now), JSON or `@file` payloads (base64 of their JSON in a value's `data`,
//! as the SDKs encode them), `KEY=VALUE` tags, and times shown back in UTC.

use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `90s`, `1m`, `1h30m`, `2d`, `500ms` or a bare number of milliseconds -> milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a duration (write 500ms, 30s, 5m, 1h30m, 2d, or plain milliseconds)");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let (mut total, mut rest) = (0i64, text);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        total = n.checked_mul(scale).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Milliseconds -> the shortest of `1h30m`, `45s`, `250ms`.
pub fn format_duration(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", format_duration(-ms));
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    let mut rest = ms / 1_000;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// `1795677882860` (Unix ms) or `+1h` (from now) -> Unix ms.
pub fn parse_instant(text: &str, now: i64) -> Result<i64, String> {
    match text.strip_prefix('+') {
        Some(d) => Ok(now.saturating_add(parse_duration(d)?)),
        None => text.trim().parse().map_err(|_| format!("{text:?} is not an instant (Unix milliseconds, or +DURATION from now)")),
    }
}

/// Unix ms -> `2026-11-26T06:24:42.862Z`.
pub fn format_instant(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1_000 % 60, rem % 1_000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// Unix ms -> `2026-11-26T06:24:42.862Z (in 59m58s)` or `(3s ago)`.
pub fn format_instant_relative(ms: i64, now: i64) -> String {
    // To the nearest second: a deadline set an hour out reads "in 1h", not "in 59m59s".
    let delta = (ms - now + 500).div_euclid(1_000) * 1_000;
    let when = if delta == 0 {
        "now".to_string()
    } else if delta >= 0 {
        format!("in {}", format_duration(delta))
    } else {
        format!("{} ago", format_duration(-delta))
    };
    format!("{} ({when})", format_instant(ms))
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Count in 400-year eras starting on March 1st, so the leap day ends a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A payload as written on the command line: JSON, `@FILE` (its contents), `@-` (standard input);
/// text that is not JSON is taken as a JSON string.
pub fn read_payload(text: &str) -> Result<Value, String> {
    let contents = match text.strip_prefix('@') {
        Some("-") => {
            let mut buf = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf).map_err(|e| format!("cannot read standard input: {e}"))?;
            buf
        }
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
        None => text.to_string(),
    };
    Ok(serde_json::from_str(&contents).unwrap_or(Value::String(contents)))
}

/// A JSON value as a promise's param or value: `{"data": base64(JSON)}`, the SDKs' encoding.
pub fn encode_value(value: &Value) -> Value {
    json!({ "data": base64_encode(value.to_string().as_bytes()) })
}

/// A value's `data` decoded for people: its JSON when it is base64 JSON, its text when it is
/// base64 text, else as stored. `None` for an empty value.
pub fn decode_value(value: &Value) -> Option<Value> {
    let data = value.get("data")?.as_str()?;
    let Some(bytes) = base64_decode(data) else {
        return Some(Value::String(data.to_string()));
    };
    match serde_json::from_slice(&bytes) {
        Ok(json) => Some(json),
        Err(_) => Some(match String::from_utf8(bytes) {
            Ok(text) => Value::String(text),
            Err(_) => Value::String(data.to_string()),
        }),
    }
}

/// The same record with every `param`, `value` and `promiseParam` shown decoded (`decode_value`),
/// for people and agents; `--json` prints the wire form instead.
pub fn decoded(record: &Value) -> Value {
    match record {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let is_value = matches!(k.as_str(), "param" | "value" | "promiseParam") && v.is_object();
                let v = match (is_value, is_value.then(|| decode_value(v)).flatten()) {
                    (true, Some(data)) => {
                        let mut shown = v.clone();
                        shown["data"] = data;
                        shown
                    }
                    _ => decoded(v),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(decoded).collect()),
        other => other.clone(),
    }
}

/// `KEY=VALUE` -> (key, value); the value may contain `=`.
pub fn parse_pair(text: &str, what: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not {what}")),
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, padded or not; `None` when it is not base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("2d"), Ok(172_800_000));
        assert_eq!(parse_duration("1500"), Ok(1_500));
        for bad in ["", "h", "1x", "1.5h", "ms", "1h 30m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(5_400_000), "1h30m");
        assert_eq!(format_duration(250), "250ms");
    }

    #[test]
    fn instants_are_absolute_or_from_now() {
        assert_eq!(parse_instant("+1m", 1_000), Ok(61_000));
        assert_eq!(parse_instant("1795677882860", 0), Ok(1_795_677_882_860));
        assert!(parse_instant("soon", 0).is_err());
        assert_eq!(format_instant(1_795_674_282_862), "2026-11-26T06:24:42.862Z");
        assert_eq!(format_instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_instant(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn values_are_base64_json_like_the_sdks_write_them() {
        // As the SDKs write them (spec/README.md, "How the SDKs use it"): {"func":"foo"} and "done".
        assert_eq!(encode_value(&json!({"func": "foo"})), json!({"data": "eyJmdW5jIjoiZm9vIn0="}));
        assert_eq!(encode_value(&json!("done")), json!({"data": "ImRvbmUi"}));
        assert_eq!(decode_value(&json!({"data": "e30="})), Some(json!({})));
        assert_eq!(decode_value(&json!({})), None);
        assert_eq!(read_payload("{\"a\": 1}"), Ok(json!({"a": 1})));
        assert_eq!(read_payload("hello"), Ok(json!("hello")));
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)), Some(bytes));
        }
        assert_eq!(base64_decode("not base64!"), None);
    }

    #[test]
    fn shown_records_have_their_values_decoded() {
        let promise = json!({"id": "p", "param": {"data": "eyJmdW5jIjoiZm9vIn0=", "headers": {"h": "v"}}, "value": {}});
        let shown = decoded(&json!({"promise": promise}));
        assert_eq!(shown["promise"]["param"], json!({"data": {"func": "foo"}, "headers": {"h": "v"}}));
        assert_eq!(shown["promise"]["value"], json!({}));
    }
}
