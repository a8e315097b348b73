//! Operators: the PD's plans to change a region's peers or leader, as
//! `GET /v1/admin/operators` shows them, and how they are shown here.
//!
//! An operator is a list of steps carried out one after the other, at most one operator
//! per region. The answer lists the operators in flight and a short history of ended
//! ones with their outcome. Steps are written compactly, `+peer 99@s4` (add peer 99 on
//! store 4), `leader s1→s2` (move the leadership from store 1 to store 2) and `-peer@s1`
//! (remove the peer on store 1), joined by arrows, the step in progress in brackets.
//! Ages are measured at the answer's `now_ms`.
//!
//! Unlike the other answers, this one is read into shapes of this tool's own rather than
//! the placement driver's `OperatorView` and `EndedOperatorView`
//! ([`tinykv::pd::operator`], [`tinykv::pd::coordinator`]), on purpose: an operator's
//! steps, kind and outcome grow with the scheduler, and the tool must still list the
//! operators of a newer server (mid rolling upgrade) rather than fail on the first step,
//! kind or outcome it does not know. So kinds and outcomes are plain strings and a step
//! of an unknown type reads as [`Step::Unknown`], shown as `?`.

use std::cmp::Reverse;

use serde::Deserialize;

use crate::format::{age, human_duration_ms};
use crate::table::{Column, Table};

/// How many ended operators the table shows at most (`--json` shows all).
pub const MAX_ENDED_SHOWN: usize = 20;

/// The answer of `GET /v1/admin/operators`.
#[derive(Debug, Clone, Deserialize)]
pub struct OperatorsAnswer {
    /// The PD's clock when it answered, in Unix milliseconds.
    pub now_ms: u64,
    /// The operators being carried out.
    pub in_flight: Vec<Operator>,
    /// Recently ended operators.
    pub ended: Vec<EndedOperator>,
}

/// An operator.
#[derive(Debug, Clone, Deserialize)]
pub struct Operator {
    /// The region it acts on.
    pub region_id: u64,
    /// Why it exists: `replica`, `offline`, `balance` or `admin`.
    pub kind: String,
    /// Which checker or scheduler made it, e.g. `balance-region`.
    pub desc: String,
    /// Its steps.
    pub steps: Vec<Step>,
    /// The index of the step in progress (the number of steps once all are done).
    pub current_step: usize,
    /// When it was created, in Unix milliseconds.
    pub created_at_ms: u64,
}

/// One step of an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// Add peer `peer_id` on `store_id`.
    AddPeer {
        /// The store receiving the peer.
        store_id: u64,
        /// The new peer's id.
        peer_id: u64,
    },
    /// Remove the region's peer on `store_id`.
    RemovePeer {
        /// The store losing its peer.
        store_id: u64,
    },
    /// Move the leadership from `from_store` to `to_store`.
    TransferLeader {
        /// The store of the current leader.
        from_store: u64,
        /// The store of the peer that should lead.
        to_store: u64,
    },
    /// Merge the region into its neighbour `target`.
    Merge {
        /// The neighbour it merges into.
        target: u64,
        /// The region's version when the merge was planned.
        version: u64,
    },
    /// A kind of step this tool does not know (a newer server).
    #[serde(other)]
    Unknown,
}

/// An operator that ended.
#[derive(Debug, Clone, Deserialize)]
pub struct EndedOperator {
    /// The operator as it was when it ended.
    pub operator: Operator,
    /// `finished`, `timed_out`, `stale`, `region_gone` or `cancelled`.
    pub outcome: String,
    /// Details, e.g. why it went stale.
    pub reason: Option<String>,
    /// When it ended, in Unix milliseconds.
    pub ended_at_ms: u64,
}

impl Step {
    /// The step written compactly: `+peer 99@s4`, `leader s1→s2`, `-peer@s1`,
    /// `merge→r7`.
    pub fn short_text(&self) -> String {
        match self {
            Step::AddPeer { store_id, peer_id } => format!("+peer {peer_id}@s{store_id}"),
            Step::RemovePeer { store_id } => format!("-peer@s{store_id}"),
            Step::TransferLeader {
                from_store,
                to_store,
            } => format!("leader s{from_store}→s{to_store}"),
            Step::Merge { target, .. } => format!("merge→r{target}"),
            Step::Unknown => "?".to_string(),
        }
    }
}

/// The steps joined by arrows, the one at `current_step` (if any is left) in brackets.
pub fn render_steps(steps: &[Step], current_step: usize) -> String {
    let texts: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            if i == current_step {
                format!("[{}]", step.short_text())
            } else {
                step.short_text()
            }
        })
        .collect();
    if texts.is_empty() {
        "-".to_string()
    } else {
        texts.join(" → ")
    }
}

/// `operators`: the in-flight table, then the most recently ended operators.
pub fn render_operators(answer: &OperatorsAnswer) -> String {
    let mut out = String::new();
    if answer.in_flight.is_empty() {
        out.push_str("no operators in flight\n");
    } else {
        out.push_str(&format!("in flight: {}\n", answer.in_flight.len()));
        let mut table = Table::new(vec![
            Column::right("REGION"),
            Column::left("DESC"),
            Column::left("KIND"),
            Column::left("STEPS"),
            Column::right("AGE"),
        ]);
        for operator in &answer.in_flight {
            table.push_row(vec![
                operator.region_id.to_string(),
                operator.desc.clone(),
                operator.kind.clone(),
                render_steps(&operator.steps, operator.current_step),
                human_duration_ms(answer.now_ms.saturating_sub(operator.created_at_ms)),
            ]);
        }
        out.push_str(&table.render());
    }
    out.push('\n');
    out.push_str(&render_ended(&answer.ended, answer.now_ms));
    out
}

/// The ended operators, most recent first, at most [`MAX_ENDED_SHOWN`].
fn render_ended(ended: &[EndedOperator], now_ms: u64) -> String {
    if ended.is_empty() {
        return "no operators ended recently\n".to_string();
    }
    let mut recent: Vec<&EndedOperator> = ended.iter().collect();
    recent.sort_by_key(|item| Reverse(item.ended_at_ms));
    let hidden = recent.len().saturating_sub(MAX_ENDED_SHOWN);
    recent.truncate(MAX_ENDED_SHOWN);
    let mut table = Table::new(vec![
        Column::right("REGION"),
        Column::left("DESC"),
        Column::left("OUTCOME"),
        Column::left("REASON"),
        Column::right("ENDED"),
    ]);
    for item in recent {
        table.push_row(vec![
            item.operator.region_id.to_string(),
            item.operator.desc.clone(),
            item.outcome.clone(),
            item.reason.clone().unwrap_or_else(|| "-".to_string()),
            age(now_ms, item.ended_at_ms),
        ]);
    }
    let mut out = format!("recently ended (most recent first):\n{}", table.render());
    if hidden > 0 {
        out.push_str(&format!("({hidden} older not shown; --json shows all)\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// An operator as the sample answer shows it, on `region_id`, created at `created_at_ms`.
    fn operator_sample(region_id: u64, created_at_ms: u64) -> Value {
        json!({"region_id":region_id,"kind":"balance","desc":"balance-region","epoch_conf_ver":3,
            "epoch_version":2,"steps":[{"type":"add_peer","store_id":4,"peer_id":99},
            {"type":"transfer_leader","from_store":1,"to_store":2},
            {"type":"remove_peer","store_id":1}],
            "current_step":1,"created_at_ms":created_at_ms,"timeout_ms":60000})
    }

    #[test]
    fn steps_are_compact_with_the_current_one_in_brackets() {
        let steps = [
            Step::AddPeer {
                store_id: 4,
                peer_id: 99,
            },
            Step::TransferLeader {
                from_store: 1,
                to_store: 2,
            },
            Step::RemovePeer { store_id: 1 },
        ];
        assert_eq!(
            render_steps(&steps, 1),
            "+peer 99@s4 → [leader s1→s2] → -peer@s1"
        );
        assert_eq!(
            render_steps(&steps, 0),
            "[+peer 99@s4] → leader s1→s2 → -peer@s1"
        );
        assert_eq!(
            render_steps(&steps, 3),
            "+peer 99@s4 → leader s1→s2 → -peer@s1"
        );
        assert_eq!(render_steps(&[], 0), "-");
        let merge: Step =
            serde_json::from_value(json!({"type":"merge","target":3,"version":9})).unwrap();
        assert_eq!(merge.short_text(), "merge→r3");
        let unknown: Step = serde_json::from_value(json!({"type":"scatter","to":3})).unwrap();
        assert_eq!(unknown, Step::Unknown);
    }

    /// The tool keeps its own steps (to read a newer server's), so it checks that it
    /// knows every step this server sends: a new kind of step fails to compile here.
    #[test]
    fn every_step_this_server_sends_is_known() {
        use tinykv::pd::Step as ServerStep;
        let steps = [
            ServerStep::AddPeer {
                store_id: 4,
                peer_id: 99,
            },
            ServerStep::RemovePeer { store_id: 1 },
            ServerStep::TransferLeader {
                from_store: 1,
                to_store: 2,
            },
            ServerStep::Merge {
                target: 3,
                version: 9,
            },
        ];
        for step in steps {
            let expected = match step {
                ServerStep::AddPeer { store_id, peer_id } => Step::AddPeer { store_id, peer_id },
                ServerStep::RemovePeer { store_id } => Step::RemovePeer { store_id },
                ServerStep::TransferLeader {
                    from_store,
                    to_store,
                } => Step::TransferLeader {
                    from_store,
                    to_store,
                },
                ServerStep::Merge { target, version } => Step::Merge { target, version },
            };
            let read: Step = serde_json::from_value(serde_json::to_value(step).unwrap()).unwrap();
            assert_eq!(read, expected);
        }
    }

    #[test]
    fn operators_show_in_flight_then_recently_ended() {
        let now = 1_764_000_000_000u64;
        let answer: OperatorsAnswer = serde_json::from_value(json!({"now_ms":now,
            "in_flight":[operator_sample(5, now - 1000)],
            "ended":[
                {"operator":operator_sample(6, now - 9000),"outcome":"finished","reason":null,
                 "ended_at_ms":now - 5000},
                {"operator":operator_sample(7, now - 9000),"outcome":"stale",
                 "reason":"epoch changed","ended_at_ms":now - 400}]}))
        .unwrap();
        let text = render_operators(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10, "{text}");
        assert_eq!(lines[0], "in flight: 1");
        assert!(lines[1].starts_with("REGION  DESC            KIND     STEPS"));
        assert_eq!(
            lines[3],
            "     5  balance-region  balance  +peer 99@s4 → [leader s1→s2] → -peer@s1  1.0s"
        );
        assert_eq!(lines[4], "");
        assert_eq!(lines[5], "recently ended (most recent first):");
        assert!(lines[8].starts_with("     7  balance-region  stale     epoch changed"));
        assert!(lines[8].ends_with("0.4s ago"), "{text}");
        assert!(lines[9].starts_with("     6") && lines[9].contains("finished  -"));
    }

    #[test]
    fn only_the_most_recent_ended_operators_are_listed() {
        let now = 1_000_000u64;
        let ended: Vec<Value> = (0..25u64)
            .map(|i| {
                json!({"operator":operator_sample(i, 0),"outcome":"finished",
                "reason":null,"ended_at_ms":now - 1000 * i})
            })
            .collect();
        let answer: OperatorsAnswer =
            serde_json::from_value(json!({"now_ms":now,"in_flight":[],"ended":ended})).unwrap();
        let text = render_operators(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "no operators in flight");
        // Blank, title, headers, dashes, 20 rows, footnote.
        assert_eq!(lines.len(), 1 + 1 + 1 + 2 + MAX_ENDED_SHOWN + 1, "{text}");
        assert!(lines[5].starts_with("     0") && lines[5].ends_with("0.0s ago"));
        assert!(lines[24].starts_with("    19"), "{text}");
        assert_eq!(lines[25], "(5 older not shown; --json shows all)");
    }
}
