//! Diagrams of failing histories: each operation on a time axis, one line each, as
//! `|----put(v3)----|`.

use super::*;

/// Width of the time axis of a diagram, in characters.
pub(super) const DIAGRAM_WIDTH: usize = 100;

/// Draws `ops` (all on `key`) on one time axis, one line per operation in invocation
/// order: `|----put(v3)----|` spans the operation's interval (the label goes after the bar
/// when it does not fit inside); an indeterminate operation runs off the right edge as
/// `|-----put(v4)---->?`. Each line starts with the operation's id, client, node, outcome
/// and times in milliseconds.
pub fn render_diagram(key: &str, ops: &[Operation]) -> String {
    let mut ops: Vec<&Operation> = ops.iter().collect();
    ops.sort_by_key(|op| (op.invoke, op.id));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "key {key:?}: not linearizable; {} operations involved",
        ops.len()
    );
    if ops.is_empty() {
        return out;
    }
    let t0 = ops.iter().map(|op| op.invoke).min().unwrap_or(0);
    let t1 = ops
        .iter()
        .map(|op| match op.effective_complete() {
            u64::MAX => op.invoke,
            t => t,
        })
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let ms = |t: u64| t as f64 / 1e6;
    let _ = writeln!(
        out,
        "time axis: {:.3} ms .. {:.3} ms ({:.3} ms per column); `>?` = indeterminate, may take effect later",
        ms(t0),
        ms(t1),
        ms(t1 - t0) / (DIAGRAM_WIDTH - 1) as f64
    );
    let column = |t: u64| -> usize {
        let t = t.clamp(t0, t1);
        (((t - t0) as u128 * (DIAGRAM_WIDTH - 1) as u128) / (t1 - t0) as u128) as usize
    };
    for op in ops {
        let start = column(op.invoke);
        let label = op.command.label();
        let mut bar = vec![' '; DIAGRAM_WIDTH + 2];
        let end;
        match op.effective_complete() {
            u64::MAX => {
                end = DIAGRAM_WIDTH + 1;
                bar[start] = '|';
                for c in bar.iter_mut().take(DIAGRAM_WIDTH).skip(start + 1) {
                    *c = '-';
                }
                bar[DIAGRAM_WIDTH] = '>';
                bar[DIAGRAM_WIDTH + 1] = '?';
            }
            complete => {
                end = column(complete).max(start + 1);
                bar[start] = '|';
                for c in bar.iter_mut().take(end).skip(start + 1) {
                    *c = '-';
                }
                bar[end] = '|';
            }
        }
        let inside = end - start - 1;
        let mut line: String;
        if label.chars().count() + 2 <= inside {
            let offset = start + 1 + (inside - label.chars().count()) / 2;
            for (i, ch) in label.chars().enumerate() {
                bar[offset + i] = ch;
            }
            line = bar.into_iter().collect();
        } else {
            line = bar.into_iter().collect();
            line.truncate(end + 1);
            line.push(' ');
            line.push_str(&label);
        }
        let complete = match (op.outcome, op.complete) {
            (Outcome::Ok, Some(t)) => format!("{:>10.3}", ms(t)),
            _ => format!("{:>10}", "?"),
        };
        let _ = writeln!(
            out,
            "#{:<6} c{:<3} n{:<2} {:<4} {:>10.3} {} {}",
            op.id,
            op.client,
            op.node,
            op.outcome.name(),
            ms(op.invoke),
            complete,
            line.trim_end()
        );
    }
    out
}
