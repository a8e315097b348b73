//! Small formatters shared by the views: byte sizes, durations and ages, dates, key
//! bounds, optional numbers, the JSON names of the server's enums and text from the
//! server made safe for a terminal.
//!
//! Every age shown is a difference of two timestamps taken from the same answer (the
//! server's `now_ms` minus an event's time), never the local clock, so ages are right even
//! when this machine's clock is not. An answer without `now_ms` has its times shown as
//! UTC dates ([`utc_time`]).

/// Units of [`human_bytes`] above bytes, each 1024 times the previous one.
const BYTE_UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// A byte count for people: `512 B`, `1.5 KiB`, `12.3 GiB` (binary units, one decimal).
pub fn human_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // 1023.95 and above would print as "1024.0": move to the next unit instead.
    while value >= 1023.95 && unit + 1 < BYTE_UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", BYTE_UNITS[unit])
}

/// An optional byte count: [`human_bytes`], or `-` when unknown.
pub fn optional_bytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".to_string(), human_bytes)
}

/// An optional number, or `-` when unknown.
pub fn optional_number(number: Option<u64>) -> String {
    number.map_or_else(|| "-".to_string(), |n| n.to_string())
}

/// A duration in milliseconds for people: `0.4s`, `59.9s`, `3m07s`, `2h05m`, `3d04h`.
pub fn human_duration_ms(ms: u64) -> String {
    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    if ms < MINUTE {
        // Tenths, truncated, so that 59_999 ms stays below a minute ("59.9s").
        format!("{}.{}s", ms / 1000, ms % 1000 / 100)
    } else if ms < HOUR {
        format!("{}m{:02}s", ms / MINUTE, ms % MINUTE / 1000)
    } else if ms < DAY {
        format!("{}h{:02}m", ms / HOUR, ms % HOUR / MINUTE)
    } else {
        format!("{}d{:02}h", ms / DAY, ms % DAY / HOUR)
    }
}

/// How long before `now_ms` something happened at `then_ms`: `0.4s ago` (an event
/// stamped after `now_ms` counts as just now).
pub fn age(now_ms: u64, then_ms: u64) -> String {
    format!("{} ago", human_duration_ms(now_ms.saturating_sub(then_ms)))
}

/// A time in Unix milliseconds as a UTC date to the second: `2025-06-01 12:34:56 UTC`
/// (the number itself if it is out of range).
pub fn utc_time(ms: u64) -> String {
    let Some(time) = i64::try_from(ms / 1000)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
    else {
        return format!("{ms} ms");
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// Text from the server (a token's name, a key prefix) as shown: control characters and
/// the bidirectional overrides escaped (`\u{1b}`), so that none can move the cursor,
/// recolour or reorder the terminal; `-` for the empty string.
pub fn printable(text: &str) -> String {
    if text.is_empty() {
        return "-".to_string();
    }
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}')
                || matches!(c, '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A region's start key as shown: the percent-encoded key, or `-inf` when unbounded.
pub fn start_bound(start_key: &str) -> String {
    if start_key.is_empty() {
        "-inf".to_string()
    } else {
        start_key.to_string()
    }
}

/// A region's end key as shown: the percent-encoded key, or `+inf` when unbounded.
pub fn end_bound(end_key: &str) -> String {
    if end_key.is_empty() {
        "+inf".to_string()
    } else {
        end_key.to_string()
    }
}

/// How the API spells `value` (a unit enum such as a role or an operator outcome): its
/// JSON string, so the tool shows exactly what `--json` would.
pub fn json_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

/// `key=count` pairs joined by spaces, or `none` when there are none.
pub fn counts_list<'a>(counts: impl IntoIterator<Item = (&'a String, &'a u64)>) -> String {
    let pairs: Vec<String> = counts
        .into_iter()
        .map(|(key, count)| format!("{key}={count}"))
        .collect();
    if pairs.is_empty() {
        "none".to_string()
    } else {
        pairs.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn byte_counts_use_binary_units_with_one_decimal() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(13_207_024_435), "12.3 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(optional_bytes(None), "-");
        assert_eq!(optional_bytes(Some(2048)), "2.0 KiB");
    }

    #[test]
    fn durations_pick_a_unit_by_size() {
        assert_eq!(human_duration_ms(0), "0.0s");
        assert_eq!(human_duration_ms(400), "0.4s");
        assert_eq!(human_duration_ms(59_999), "59.9s");
        assert_eq!(human_duration_ms(60_000), "1m00s");
        assert_eq!(human_duration_ms(187_500), "3m07s");
        assert_eq!(human_duration_ms(2 * 3_600_000 + 5 * 60_000), "2h05m");
        assert_eq!(human_duration_ms(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
    }

    #[test]
    fn ages_count_back_from_the_answer_time() {
        assert_eq!(age(1_764_000_000_000, 1_763_999_999_600), "0.4s ago");
        assert_eq!(age(1_764_000_000_000, 1_763_999_880_000), "2m00s ago");
        assert_eq!(age(1_000, 5_000), "0.0s ago");
    }

    #[test]
    fn dates_are_utc_and_text_is_terminal_safe() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(1_764_000_000_999), "2025-11-24 16:00:00 UTC");
        assert_eq!(utc_time(u64::MAX), format!("{} ms", u64::MAX));
        assert_eq!(printable("app/ é"), "app/ é");
        assert_eq!(printable("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\u{a}");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(printable(""), "-");
    }

    #[test]
    fn bounds_counts_and_optional_numbers() {
        assert_eq!(
            (start_bound(""), end_bound("")),
            ("-inf".into(), "+inf".into())
        );
        assert_eq!(
            (start_bound("a%20b"), end_bound("m")),
            ("a%20b".into(), "m".into())
        );
        let counts: BTreeMap<String, u64> =
            [("timed_out".to_string(), 1), ("finished".to_string(), 7)].into();
        assert_eq!(counts_list(&counts), "finished=7 timed_out=1");
        assert_eq!(counts_list(&BTreeMap::new()), "none");
        assert_eq!(
            (optional_number(Some(8)), optional_number(None)),
            ("8".into(), "-".into())
        );
    }
}
