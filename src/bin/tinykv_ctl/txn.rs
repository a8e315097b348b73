//! Transactions' state as an operator sees it: garbage collection's safe point
//! (`GET /v1/txn/safe-point`) and the locks of a key range (`GET /v1/txn/locks`).
//!
//! A timestamp is shown with the wall-clock time it encodes (its physical part, the
//! high bits above the 18 logical ones), so that an operator sees at a glance how old a
//! safe point or a lock is. Locks older than their TTL belong to transactions whose
//! coordinator went away; a reader, or the next garbage-collection round, resolves them.
//!
//! The answers are read into the server's own types: [`SafePointView`] of the placement
//! driver's views and [`LocksView`] of the transaction endpoints.

use tinykv::api::txn::LocksView;
use tinykv::pd::views::SafePointView;

use crate::format::{age, human_duration_ms, printable, utc_time};
use crate::table::{Column, Table};

/// Bits of a timestamp below its physical part.
const LOGICAL_BITS: u32 = 18;

/// The current time in Unix milliseconds, to measure ages against.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The physical time of a timestamp, in Unix milliseconds.
fn physical_ms(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// `txn safe-point`, measured at `now_ms`.
pub fn render_safe_point(answer: &SafePointView, now_ms: u64) -> String {
    if answer.safe_point == 0 {
        return "no safe point yet: nothing has been garbage-collected\n".to_string();
    }
    let at = physical_ms(answer.safe_point);
    format!(
        "safe point {} ({}, {}): versions older than the newest one at it are collected\n",
        answer.safe_point,
        utc_time(at),
        age(now_ms, at)
    )
}

/// `txn locks`, ages measured at `now_ms`.
pub fn render_locks(answer: &LocksView, now_ms: u64) -> String {
    if answer.locks.is_empty() {
        return "no locks\n".to_string();
    }
    let mut table = Table::new(vec![
        Column::left("KEY"),
        Column::left("PRIMARY"),
        Column::right("START_TS"),
        Column::right("AGE"),
        Column::left("STATE"),
    ]);
    for lock in &answer.locks {
        let started = physical_ms(lock.start_ts);
        let expired = started.saturating_add(lock.ttl_ms) <= now_ms;
        table.push_row(vec![
            key_text(&lock.key),
            key_text(&lock.primary),
            lock.start_ts.to_string(),
            human_duration_ms(now_ms.saturating_sub(started)),
            if expired { "expired" } else { "live" }.to_string(),
        ]);
    }
    table.render()
}

fn key_text(key: &serde_json::Value) -> String {
    match key {
        serde_json::Value::String(text) => printable(text),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinykv::api::txn::LockView;

    #[test]
    fn a_safe_point_and_locks_show_their_times() {
        let now_ms = 1_700_000_600_000;
        let safe = SafePointView {
            safe_point: 1_700_000_000_000 << LOGICAL_BITS,
        };
        let text = render_safe_point(&safe, now_ms);
        assert!(
            text.contains("2023-11-14") && text.contains("10m"),
            "{text}"
        );
        assert!(
            render_safe_point(&SafePointView { safe_point: 0 }, now_ms).contains("no safe point")
        );
        let locks = LocksView {
            encoding: "utf8".into(),
            locks: vec![
                LockView {
                    key: serde_json::json!("a"),
                    primary: serde_json::json!("p"),
                    start_ts: (now_ms - 1_000) << LOGICAL_BITS,
                    ttl_ms: 3_000,
                },
                LockView {
                    key: serde_json::json!({"base64": "/w=="}),
                    primary: serde_json::json!("p"),
                    start_ts: (now_ms - 60_000) << LOGICAL_BITS,
                    ttl_ms: 3_000,
                },
            ],
        };
        let table = render_locks(&locks, now_ms);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[2].contains("live") && lines[3].contains("expired"),
            "{table}"
        );
        assert!(lines[3].contains("base64"), "{table}");
        assert_eq!(
            render_locks(
                &LocksView {
                    locks: vec![],
                    encoding: "utf8".into()
                },
                now_ms
            ),
            "no locks\n"
        );
    }
}
