//! Cron expressions with the semantics of the `cron` crate 0.12 (Quartz flavour), std only.
//!
//! Accepted forms, fields separated by any run of whitespace:
//! - 5 fields: `minute hour day-of-month month day-of-week` (seconds are fixed at 0),
//! - 6 fields: `second minute hour day-of-month month day-of-week`,
//! - 7 fields: the 6-field form followed by `year` (1970-2100).
//!
//! Every field is a comma list of items; an item is `*`, a value `a`, a range `a-b`, or one of
//! those followed by a step `/n` (n >= 1). `a/n` means "from a to the field maximum, every n".
//! `?` means the same as `*` and is only allowed in the two day fields.
//! Months accept `JAN`-`DEC` and days of week `SUN`-`SAT` (also the full English names),
//! case-insensitively. Days of week use Quartz numbering: 1 = Sunday ... 7 = Saturday (0 is
//! invalid). A named value cannot carry a step on its own (`MON/2`), a named range can.
//!
//! A time matches when every field matches; in particular the day-of-month AND the
//! day-of-week must both match (no Vixie-cron OR rule). All times are UTC Unix milliseconds.

use std::collections::BTreeSet;

/// The allowed values of one field.
type Set = BTreeSet<u32>;

/// First year a 7-field expression may name (and the first year ever searched).
const MIN_YEAR: i64 = 1970;
/// Last year a 7-field expression may name; no occurrence is ever produced after it.
const MAX_YEAR: i64 = 2100;
/// Without a year field, the search gives up this many years after the starting year.
const HORIZON_YEARS: i64 = 5;

/// Month spellings in order: `|` separates months, spaces separate aliases of one month.
const MONTHS: &str = "jan january|feb february|mar march|apr april|may|jun june|jul july\
    |aug august|sep september|oct october|nov november|dec december";
/// Day-of-week spellings in the same format, starting at Sunday = 1.
const WEEKDAYS: &str = "sun sunday|mon monday|tue tues tuesday|wed wednesday\
    |thu thurs thursday|fri friday|sat saturday";

/// Static description of a field: its inclusive bounds, its names (the first name means
/// `lo`) and whether `?` is accepted.
struct Spec {
    lo: u32,
    hi: u32,
    names: &'static str,
    any: bool,
}

/// Field specs in the order of the 7-field form.
const SPECS: [Spec; 7] = [
    Spec::new(0, 59, "", false),
    Spec::new(0, 59, "", false),
    Spec::new(0, 23, "", false),
    Spec::new(1, 31, "", true),
    Spec::new(1, 12, MONTHS, false),
    Spec::new(1, 7, WEEKDAYS, true),
    Spec::new(MIN_YEAR as u32, MAX_YEAR as u32, "", false),
];

impl Spec {
    const fn new(lo: u32, hi: u32, names: &'static str, any: bool) -> Spec {
        Spec { lo, hi, names, any }
    }

    /// Parses a whole field (a comma list) into the set of values it allows.
    fn parse(&self, field: &str) -> Option<Set> {
        let mut set = Set::new();
        for item in field.split(',') {
            let (base, step) = match item.split_once('/') {
                Some((base, step)) => (base, Some(number(step).filter(|&n| n >= 1)?)),
                None => (item, None),
            };
            let (a, b) = self.bounds(base, step.is_some())?;
            set.extend((a..=b).step_by(step.unwrap_or(1) as usize));
        }
        Some(set)
    }

    /// Resolves the part of an item before `/` to an inclusive, in-bounds range.
    /// `stepped` says a step follows: then a single value `a` stands for `a` to the maximum.
    fn bounds(&self, base: &str, stepped: bool) -> Option<(u32, u32)> {
        if base == "*" || (self.any && base == "?") {
            return Some((self.lo, self.hi));
        }
        let (a, b) = match base.split_once('-') {
            Some((a, b)) => match (number(a), number(b)) {
                (Some(a), Some(b)) => (a, b),
                _ => (self.name(a)?, self.name(b)?),
            },
            None => match number(base) {
                Some(a) if stepped => (a, self.hi),
                Some(a) => (a, a),
                None if stepped => return None,
                None => (self.name(base)?, self.name(base)?),
            },
        };
        (self.lo <= a && a <= b && b <= self.hi).then_some((a, b))
    }

    /// The value of a month or weekday name (case-insensitive), if this field has names.
    fn name(&self, text: &str) -> Option<u32> {
        let index = self.names.split('|').position(|aliases| {
            aliases
                .split_whitespace()
                .any(|alias| alias.eq_ignore_ascii_case(text))
        })?;
        Some(self.lo + index as u32)
    }
}

/// A plain decimal number (digits only: no sign, no spaces).
fn number(text: &str) -> Option<u32> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Cron {
    seconds: Set,
    minutes: Set,
    hours: Set,
    days: Set,
    months: Set,
    weekdays: Set,
    years: Set,
    /// True for the 7-field form: search up to `MAX_YEAR` instead of `HORIZON_YEARS` ahead.
    has_year: bool,
}

impl Cron {
    /// Parses 5 fields (minute hour day-of-month month day-of-week; seconds = 0 is implied),
    /// 6 fields (seconds first) or 7 fields (seconds first, year last).
    /// Returns None for anything invalid.
    pub fn parse(expr: &str) -> Option<Cron> {
        let mut fields: Vec<&str> = expr.split_whitespace().collect();
        let has_year = fields.len() == 7;
        match fields.len() {
            5 => fields.insert(0, "0"),
            6 | 7 => {}
            _ => return None,
        }
        if !has_year {
            fields.push("*");
        }
        let sets: Vec<Set> = fields
            .iter()
            .zip(&SPECS)
            .map(|(f, s)| s.parse(f))
            .collect::<Option<_>>()?;
        let [seconds, minutes, hours, days, months, weekdays, years] =
            <[Set; 7]>::try_from(sets).ok()?;
        Some(Cron {
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays,
            years,
            has_year,
        })
    }

    /// The first occurrence strictly after `after_ms` (Unix ms, UTC), or None if there is none
    /// (e.g. a year field entirely in the past, or Feb 30).
    ///
    /// The search keeps a broken-down time `[year, month, day, hour, minute, second]` and fixes
    /// it from the largest unit down: a unit is moved to its next allowed value (resetting all
    /// smaller units), or, when none is left, the next larger unit is incremented. So the cost
    /// is a few steps per month searched, never one per second.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = after_ms.div_euclid(1000) + 1;
        let (year, month, day) = civil_from_days(start.div_euclid(86_400));
        let secs = start.rem_euclid(86_400);
        let mut t = [year, month, day, secs / 3600, secs / 60 % 60, secs % 60];
        let last_year = if self.has_year {
            MAX_YEAR
        } else {
            (year.max(MIN_YEAR) + HORIZON_YEARS).min(MAX_YEAR)
        };
        'search: while t[0] <= last_year {
            for unit in 0..6 {
                match self.first_allowed(unit, &t) {
                    Some(value) if value == t[unit] => continue,
                    Some(value) => set_unit(&mut t, unit, value),
                    None if unit == 0 => return None,
                    None => {
                        let carried = t[unit - 1] + 1;
                        set_unit(&mut t, unit - 1, carried);
                    }
                }
                continue 'search;
            }
            let days = days_from_civil(t[0], t[1], t[2]);
            return Some((days * 86_400 + t[3] * 3600 + t[4] * 60 + t[5]) * 1000);
        }
        None
    }

    /// The smallest allowed value of `unit` that is >= its current value in `t`, given the
    /// larger units. Days must match both the day-of-month and day-of-week sets and exist in
    /// the month (so a value past the month's end yields None, carrying into the month).
    fn first_allowed(&self, unit: usize, t: &[i64; 6]) -> Option<i64> {
        let from = t[unit].clamp(0, i64::from(u32::MAX)) as u32;
        let first = |set: &Set| set.range(from..).next().map(|&v| i64::from(v));
        match unit {
            0 => first(&self.years),
            1 => first(&self.months),
            2 => (t[2]..=days_in_month(t[0], t[1])).find(|&d| self.day_matches(t[0], t[1], d)),
            3 => first(&self.hours),
            4 => first(&self.minutes),
            _ => first(&self.seconds),
        }
    }

    /// Whether a calendar day matches both day fields.
    fn day_matches(&self, year: i64, month: i64, day: i64) -> bool {
        self.days.contains(&(day as u32))
            && self
                .weekdays
                .contains(&weekday(days_from_civil(year, month, day)))
    }
}

/// Sets `t[unit]` to `value` and resets every smaller unit to its minimum.
fn set_unit(t: &mut [i64; 6], unit: usize, value: i64) {
    t[unit] = value;
    for (smaller, slot) in t.iter_mut().enumerate().skip(unit + 1) {
        *slot = if smaller < 3 { 1 } else { 0 };
    }
}

/// Quartz weekday (1 = Sunday ... 7 = Saturday) of a day counted from 1970-01-01 (a Thursday).
fn weekday(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32 + 1
}

/// Number of days in a month (1-12) of the proleptic Gregorian calendar.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 => 28 + i64::from(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)),
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date. Years are counted from March so the
/// leap day falls at the end; a 400-year era has exactly 146097 days.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of `days_from_civil`: (year, month, day) of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date-time, via the module's own conversion (checked below).
    fn ms(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> i64 {
        (days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s) * 1000
    }

    fn next(expr: &str, after_ms: i64) -> Option<i64> {
        Cron::parse(expr)
            .unwrap_or_else(|| panic!("should parse: {expr}"))
            .next_after(after_ms)
    }

    #[test]
    fn civil_conversions_match_python_datetime() {
        assert_eq!(ms(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(ms(2000, 2, 29, 12, 34, 56), 951_827_696_000);
        assert_eq!(ms(2026, 11, 30, 9, 0, 0), 1_796_029_200_000);
        assert_eq!(ms(2028, 2, 29, 0, 0, 0), 1_835_395_200_000);
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!((1..=days_in_month(y, m)).contains(&d));
        }
        assert_eq!(
            weekday(days_from_civil(2026, 11, 30)),
            2,
            "2026-11-30 is a Monday"
        );
        assert_eq!(weekday(0), 5, "1970-01-01 is a Thursday");
    }

    #[test]
    fn every_minute_and_strictly_after() {
        let t = ms(2026, 1, 1, 0, 0, 0);
        assert_eq!(next("* * * * *", t), Some(t + 60_000));
        assert_eq!(next("* * * * *", t - 1), Some(t));
        assert_eq!(next("* * * * *", t + 1), Some(t + 60_000));
        assert_eq!(next("* * * * * *", t), Some(t + 1000));
    }

    #[test]
    fn known_pairs_from_python() {
        assert_eq!(
            next("*/15 * * * *", 1_704_067_650_000),
            Some(1_704_068_100_000)
        );
        assert_eq!(
            next("0 9 * * 2", 1_795_564_800_000),
            Some(1_796_029_200_000)
        );
        assert_eq!(
            next("0 9 * * MON-FRI", 1_795_773_600_000),
            Some(1_796_029_200_000)
        );
        assert_eq!(
            next("0 0 1 jan *", 1_767_225_599_000),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            next("0 0 1 jan *", 1_767_225_600_000),
            Some(1_798_761_600_000)
        );
        assert_eq!(
            next("0 0 29 2 *", 1_709_251_200_000),
            Some(1_835_395_200_000)
        );
        assert_eq!(
            next("0 0 13 * FRI", ms(2026, 3, 14, 0, 0, 0)),
            Some(1_794_528_000_000)
        );
        assert_eq!(
            next("0 0 0 1 1 ? 2030", ms(2026, 5, 5, 0, 0, 0)),
            Some(1_893_456_000_000)
        );
    }

    #[test]
    fn weekday_numbering_is_quartz() {
        let monday = next("0 9 * * 2", ms(2026, 11, 25, 0, 0, 0)).unwrap();
        assert_eq!(monday, ms(2026, 11, 30, 9, 0, 0));
        assert_eq!(weekday(monday.div_euclid(86_400_000)), 2);
        let sunday = next("0 0 * * SUN", ms(2026, 11, 25, 0, 0, 0)).unwrap();
        assert_eq!(sunday, ms(2026, 11, 29, 0, 0, 0));
        assert_eq!(
            next("0 0 * * 7", ms(2026, 11, 25, 0, 0, 0)),
            Some(ms(2026, 11, 28, 0, 0, 0))
        );
    }

    #[test]
    fn rollovers() {
        assert_eq!(
            next("30 23 * * *", ms(2026, 12, 31, 23, 45, 0)),
            Some(ms(2027, 1, 1, 23, 30, 0))
        );
        assert_eq!(
            next("0 0 31 * *", ms(2026, 3, 31, 0, 0, 0)),
            Some(ms(2026, 5, 31, 0, 0, 0))
        );
        assert_eq!(
            next("0 12 1 */3 *", ms(2026, 11, 2, 0, 0, 0)),
            Some(ms(2027, 1, 1, 12, 0, 0))
        );
        assert_eq!(
            next("0 0 * JAN,jul ?", ms(2026, 7, 31, 0, 0, 0)),
            Some(ms(2027, 1, 1, 0, 0, 0))
        );
    }

    #[test]
    fn six_and_seven_fields() {
        let t = ms(2026, 6, 1, 10, 2, 3);
        assert_eq!(next("0 */5 * * * *", t), Some(ms(2026, 6, 1, 10, 5, 0)));
        assert_eq!(
            next("10-20/5 * * * * *", t),
            Some(ms(2026, 6, 1, 10, 2, 10))
        );
        assert_eq!(next("0 0 0 1 1 ? 2020", t), None);
        assert_eq!(
            next("0 0 0 1 1 ? 2020,2027-2030", t),
            Some(ms(2027, 1, 1, 0, 0, 0))
        );
        assert_eq!(next("* * * * * * 2100", ms(2101, 1, 1, 0, 0, 0)), None);
    }

    #[test]
    fn impossible_dates_give_none() {
        assert_eq!(next("0 0 30 2 *", 0), None);
        assert_eq!(next("0 0 0 31 4 ? *", 0), None);
        assert_eq!(
            next("0 0 29 2 *", ms(2097, 3, 1, 0, 0, 0)),
            None,
            "2100 is not a leap year"
        );
        assert_eq!(next("* * * * *", i64::MAX), None, "far future is past 2100");
        assert_eq!(
            next("0 0 1 1 *", i64::MIN),
            Some(0),
            "search starts at 1970"
        );
    }

    #[test]
    fn whitespace_and_case() {
        let t = ms(2026, 1, 1, 0, 0, 0);
        assert_eq!(next("  0\t9 *   * mon-fri \n", t), next("0 9 * * 2-6", t));
        assert_eq!(next("0 0 1 Jan,JUL *", t), next("0 0 1 1,7 *", t));
        assert_eq!(next("0 0 * * Tues-Thursday", t), next("0 0 * * 3-5", t));
        assert_eq!(next("0 0 * * MON-FRI/2", t), next("0 0 * * 2,4,6", t));
    }

    #[test]
    fn invalid_expressions() {
        for expr in [
            "",
            "every minute",
            "0 * * * 0",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "* * * *",
            "* * * * * * * *",
            "1,,2 * * * *",
            ",1 * * * *",
            "1- * * * *",
            "-1 * * * *",
            "+5 * * * *",
            "*/ * * * *",
            "1/2/3 * * * *",
            "? * * * *",
            "* * * ? 1",
            "* * * * MON/2",
            "* * * * 2-FRI",
            "* * * * FOO",
            "0 0 0 * * * 1969",
            "0 0 0 * * * 2101",
            "0 0 0 * * * ?",
            "99999999999 * * * *",
            "* * * JAN-DEC-1 *",
        ] {
            assert!(Cron::parse(expr).is_none(), "should be rejected: {expr:?}");
        }
    }

    /// Compares every occurrence over two years against a brute-force minute-by-minute scan.
    #[test]
    fn agrees_with_brute_force() {
        let (start, end) = (ms(2027, 1, 1, 0, 0, 0), ms(2029, 1, 1, 0, 0, 0));
        for text in [
            "*/7 3,15 * * *",
            "0 0 13 * FRI",
            "30 6 */10 2-4 MON",
            "0 0 29 2 ?",
            "59 23 31 * *",
        ] {
            let cron = Cron::parse(text).unwrap();
            let expected: Vec<i64> = (start / 60_000..end / 60_000)
                .map(|minute| minute * 60_000)
                .filter(|&t| {
                    let (y, mo, d) = civil_from_days(t.div_euclid(86_400_000));
                    let minute_of_day = t.rem_euclid(86_400_000) / 60_000;
                    cron.minutes.contains(&((minute_of_day % 60) as u32))
                        && cron.hours.contains(&((minute_of_day / 60) as u32))
                        && cron.months.contains(&(mo as u32))
                        && cron.day_matches(y, mo, d)
                })
                .collect();
            let mut got = Vec::new();
            let mut t = start - 1;
            while let Some(n) = cron.next_after(t).filter(|&n| n < end) {
                got.push(n);
                t = n;
            }
            assert!(!expected.is_empty(), "{text}");
            assert_eq!(got, expected, "{text}");
        }
    }
}
