//! The checker's tests: hand-built histories, the shrinker, diagrams, and random small
//! histories cross-checked against brute force.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Builds histories by hand, times in milliseconds.
#[derive(Default)]
struct Builder {
    ops: Vec<Operation>,
}

impl Builder {
    fn op(
        &mut self,
        client: u64,
        command: Command,
        outcome: Outcome,
        invoke: u64,
        complete: Option<u64>,
    ) -> &mut Self {
        self.ops.push(Operation {
            id: self.ops.len(),
            client,
            node: 1,
            key: "k".into(),
            command,
            outcome,
            invoke: invoke * 1_000_000,
            complete: complete.map(|t| t * 1_000_000),
            note: String::new(),
        });
        self
    }

    fn put(&mut self, client: u64, value: &str, invoke: u64, complete: u64) -> &mut Self {
        self.op(
            client,
            Command::Put(value.into()),
            Outcome::Ok,
            invoke,
            Some(complete),
        )
    }

    fn put_info(&mut self, client: u64, value: &str, invoke: u64) -> &mut Self {
        self.op(
            client,
            Command::Put(value.into()),
            Outcome::Info,
            invoke,
            None,
        )
    }

    fn delete(&mut self, client: u64, invoke: u64, complete: u64) -> &mut Self {
        self.op(client, Command::Delete, Outcome::Ok, invoke, Some(complete))
    }

    fn get(&mut self, client: u64, read: Option<&str>, invoke: u64, complete: u64) -> &mut Self {
        self.op(
            client,
            Command::Get(read.map(String::from)),
            Outcome::Ok,
            invoke,
            Some(complete),
        )
    }

    fn verdict(&self) -> KeyVerdict {
        check_key(&self.ops, CheckConfig::default())
    }

    fn is_linearizable(&self) -> bool {
        match self.verdict() {
            KeyVerdict::Linearizable => true,
            KeyVerdict::NotLinearizable(_) => false,
            KeyVerdict::Unknown { states } => panic!("gave up after {states} states"),
        }
    }

    fn failure(&self) -> Failure {
        match self.verdict() {
            KeyVerdict::NotLinearizable(failure) => *failure,
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}

#[test]
fn an_empty_history_and_a_sequential_one_pass() {
    assert!(Builder::default().is_linearizable());
    assert!(Builder::default()
        .get(1, None, 0, 1)
        .put(1, "a", 2, 3)
        .get(2, Some("a"), 4, 5)
        .put(2, "b", 6, 7)
        .get(1, Some("b"), 8, 9)
        .delete(1, 10, 11)
        .get(2, None, 12, 13)
        .is_linearizable());
}

#[test]
fn concurrent_writes_may_be_read_in_either_order() {
    // Two overlapping puts; a read after both may see either, but two later sequential
    // reads must agree.
    for last in ["a", "b"] {
        assert!(Builder::default()
            .put(1, "a", 0, 10)
            .put(2, "b", 1, 11)
            .get(3, Some(last), 12, 13)
            .get(3, Some(last), 14, 15)
            .is_linearizable());
    }
    assert!(!Builder::default()
        .put(1, "a", 0, 10)
        .put(2, "b", 1, 11)
        .get(3, Some("a"), 12, 13)
        .get(3, Some("b"), 14, 15)
        .is_linearizable());
    // Reads overlapping the writes may see the old or new values, in a consistent
    // order.
    assert!(Builder::default()
        .put(1, "a", 0, 10)
        .get(2, None, 1, 3)
        .get(3, Some("a"), 2, 4)
        .put(4, "b", 5, 20)
        .get(2, Some("b"), 6, 7)
        .get(3, Some("a"), 6, 8)
        .is_linearizable());
    // ... but once a read has seen the newer value, a later read cannot see the older.
    assert!(!Builder::default()
        .put(1, "a", 0, 1)
        .put(4, "b", 5, 20)
        .get(2, Some("b"), 6, 7)
        .get(3, Some("a"), 8, 9)
        .is_linearizable());
}

#[test]
fn a_stale_read_after_a_completed_write_fails() {
    let history = {
        let mut b = Builder::default();
        b.put(1, "a", 0, 1)
            .put(1, "b", 2, 3)
            .get(2, Some("b"), 3, 4)
            .get(2, Some("a"), 5, 6)
            .get(3, Some("b"), 7, 8);
        b
    };
    let failure = history.failure();
    assert_eq!(failure.key, "k");
    assert_eq!(failure.checked, 5);
    // The prefix ends with the stale read; the earlier read of "b" is not needed.
    let labels: Vec<String> = failure.ops.iter().map(|op| op.command.label()).collect();
    assert_eq!(labels, ["put(a)", "put(b)", "get=a"]);
    assert!(failure.diagram.contains("|--"), "{}", failure.diagram);
    assert!(failure.diagram.contains("get=a"), "{}", failure.diagram);
}

#[test]
fn a_stale_read_among_many_writes_is_explained_by_three_operations() {
    let mut b = Builder::default();
    for i in 0..30 {
        b.put(1 + i % 3, &format!("v{i}"), 10 * i, 10 * i + 5);
        b.get(4, Some(&format!("v{i}")), 10 * i + 6, 10 * i + 8);
    }
    b.get(5, Some("v3"), 400, 401);
    b.put(1, "late", 402, 403);
    let failure = b.failure();
    assert_eq!(failure.checked, 62);
    let labels: Vec<String> = failure.ops.iter().map(|op| op.command.label()).collect();
    assert_eq!(labels.len(), 3, "{}", failure.diagram);
    assert_eq!(labels[0], "put(v3)");
    assert!(labels[1].starts_with("put(v"), "{}", failure.diagram);
    assert_eq!(labels[2], "get=v3");
}

#[test]
fn a_read_of_a_value_never_written_fails() {
    let mut b = Builder::default();
    b.put(1, "a", 0, 1).get(2, Some("zzz"), 0, 5);
    let failure = b.failure();
    assert!(failure
        .ops
        .iter()
        .any(|op| op.command == Command::Get(Some("zzz".into()))));
    assert!(!Builder::default().get(1, Some("x"), 0, 1).is_linearizable());
}

#[test]
fn an_indeterminate_write_may_or_may_not_take_effect() {
    // It did: a later read sees it, even long after it timed out.
    assert!(Builder::default()
        .put(1, "a", 0, 1)
        .put_info(2, "b", 2)
        .get(3, Some("b"), 50, 51)
        .is_linearizable());
    // It did not: later reads keep seeing the earlier value.
    assert!(Builder::default()
        .put(1, "a", 0, 1)
        .put_info(2, "b", 2)
        .get(3, Some("a"), 50, 51)
        .get(3, Some("a"), 52, 53)
        .is_linearizable());
    // It took effect late: first the old value, then the new one.
    assert!(Builder::default()
        .put(1, "a", 0, 1)
        .put_info(2, "b", 2)
        .get(3, Some("a"), 50, 51)
        .get(3, Some("b"), 52, 53)
        .is_linearizable());
    // But it cannot take effect before it was invoked ...
    assert!(!Builder::default()
        .put(1, "a", 0, 1)
        .get(3, Some("b"), 2, 3)
        .put_info(2, "b", 4)
        .is_linearizable());
    // ... nor twice.
    assert!(!Builder::default()
        .put_info(2, "b", 0)
        .get(3, Some("b"), 2, 3)
        .put(1, "a", 4, 5)
        .get(3, Some("b"), 6, 7)
        .is_linearizable());
    // A pending operation (never completed) is indeterminate too.
    assert!(Builder::default()
        .op(2, Command::Put("b".into()), Outcome::Ok, 0, None)
        .get(3, Some("b"), 2, 3)
        .is_linearizable());
}

#[test]
fn failed_operations_are_ignored() {
    assert!(Builder::default()
        .put(1, "a", 0, 1)
        .op(2, Command::Put("b".into()), Outcome::Fail, 2, Some(3))
        .op(
            2,
            Command::Get(Some("junk".into())),
            Outcome::Fail,
            2,
            Some(3)
        )
        .get(3, Some("a"), 4, 5)
        .is_linearizable());
    // A failed write is not a source of values.
    assert!(!Builder::default()
        .op(2, Command::Put("b".into()), Outcome::Fail, 0, Some(1))
        .get(3, Some("b"), 2, 3)
        .is_linearizable());
}

#[test]
fn deletes_reset_the_register() {
    assert!(Builder::default()
        .put(1, "a", 0, 1)
        .delete(2, 2, 3)
        .get(1, None, 4, 5)
        .put(1, "b", 6, 7)
        .get(2, Some("b"), 8, 9)
        .is_linearizable());
    // A read after a completed delete cannot see the deleted value.
    assert!(!Builder::default()
        .put(1, "a", 0, 1)
        .delete(2, 2, 3)
        .get(1, Some("a"), 4, 5)
        .is_linearizable());
    // Concurrent with the delete it may see either.
    for read in [Some("a"), None] {
        assert!(Builder::default()
            .put(1, "a", 0, 1)
            .delete(2, 2, 10)
            .get(1, read, 4, 5)
            .is_linearizable());
    }
    // An indeterminate delete may explain an absent read.
    assert!(Builder::default()
        .put(1, "a", 0, 1)
        .op(2, Command::Delete, Outcome::Info, 2, None)
        .get(1, None, 40, 41)
        .is_linearizable());
}

#[test]
fn keys_are_checked_independently() {
    let mut history = History::default();
    let mut b = Builder::default();
    b.put(1, "a", 0, 1).get(2, Some("a"), 2, 3);
    history.ops.extend(b.ops.clone());
    let mut other = Builder::default();
    other.put(1, "x", 0, 1).get(2, None, 2, 3);
    for mut op in other.ops {
        op.key = "other".into();
        op.id += 100;
        history.ops.push(op);
    }
    let report = check(&history, CheckConfig::default());
    assert_eq!(report.keys, 2);
    assert_eq!(report.checked_ops, 4);
    assert_eq!(report.verdict(), Verdict::Fail);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].key, "other");
    let jsonl = history.to_jsonl();
    assert_eq!(jsonl.lines().count(), 4);
    let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(first["op"], "put");
    assert_eq!(first["outcome"], "ok");
}

#[test]
fn a_bounded_search_gives_up_with_unknown() {
    // Twelve indeterminate writes, each read by one of twelve concurrent reads: many
    // orders to try before the impossible last read is refuted.
    let mut b = Builder::default();
    for i in 0..12 {
        b.put_info(i, &format!("v{i}"), i);
        b.get(20 + i, Some(&format!("v{i}")), 50 + i, 90);
    }
    b.get(99, Some("never"), 100, 101);
    match check_key(&b.ops, CheckConfig { max_states: 50 }) {
        KeyVerdict::Unknown { states } => assert!(states > 50),
        other => panic!("expected unknown, got {other:?}"),
    }
    let history = History { ops: b.ops.clone() };
    let report = check(&history, CheckConfig { max_states: 50 });
    assert_eq!(report.verdict(), Verdict::Unknown);
}

#[test]
fn unobserved_indeterminate_writes_cost_nothing() {
    // Forty timed-out writes nobody read, around a stale read: refuted at once, and
    // the explanation does not drag them along.
    let mut b = Builder::default();
    b.put(1, "a", 0, 1).put(1, "b", 2, 3);
    for i in 0..40 {
        b.put_info(10 + i, &format!("lost{i}"), 4 + i);
        b.op(10 + i, Command::Delete, Outcome::Info, 4 + i, None);
    }
    b.get(2, Some("a"), 100, 101);
    match check_key(&b.ops, CheckConfig { max_states: 1000 }) {
        KeyVerdict::NotLinearizable(failure) => {
            assert_eq!(failure.ops.len(), 3, "{}", failure.diagram)
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // A read of absent makes the deletes observable: then they count, and explain it.
    let mut b = Builder::default();
    b.put(1, "a", 0, 1);
    for i in 0..40 {
        b.op(10 + i, Command::Delete, Outcome::Info, 4 + i, None);
    }
    b.get(2, None, 100, 101);
    assert_eq!(
        check_key(&b.ops, CheckConfig { max_states: 1000 }),
        KeyVerdict::Linearizable
    );
}

/// Whether `ops` is linearizable, by trying every subset of the indeterminate writes
/// and every order: only for a handful of operations.
fn brute_force(ops: &[Operation]) -> bool {
    let ops: Vec<&Operation> = ops.iter().filter(|op| relevant(op)).collect();
    let info: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].effective_complete() == u64::MAX)
        .collect();
    (0..1u32 << info.len()).any(|mask| {
        let chosen: Vec<&Operation> = (0..ops.len())
            .filter(|i| match info.iter().position(|j| j == i) {
                Some(bit) => mask & (1 << bit) != 0,
                None => true,
            })
            .map(|i| ops[i])
            .collect();
        permutations_ok(&chosen, &mut Vec::new(), &mut vec![false; chosen.len()])
    })
}

fn permutations_ok(ops: &[&Operation], order: &mut Vec<usize>, used: &mut [bool]) -> bool {
    if order.len() == ops.len() {
        let mut register: Option<&String> = None;
        return order.iter().all(|&i| match &ops[i].command {
            Command::Get(v) => v.as_ref() == register,
            Command::Put(v) => {
                register = Some(v);
                true
            }
            Command::Delete => {
                register = None;
                true
            }
            Command::Cas { expected, new } => {
                let holds = expected.as_ref() == register;
                if holds {
                    register = Some(new);
                }
                holds
            }
            Command::CasFailed { expected } => expected.as_ref() != register,
        });
    }
    for i in 0..ops.len() {
        // Next may be any unused operation that no other unused one entirely precedes.
        let blocked = (0..ops.len())
            .any(|j| !used[j] && j != i && ops[j].effective_complete() < ops[i].invoke);
        if used[i] || blocked {
            continue;
        }
        used[i] = true;
        order.push(i);
        let ok = permutations_ok(ops, order, used);
        order.pop();
        used[i] = false;
        if ok {
            return true;
        }
    }
    false
}

#[test]
fn the_search_agrees_with_brute_force_on_small_random_histories() {
    let mut rng = StdRng::seed_from_u64(42);
    let (mut legal, mut illegal) = (0, 0);
    for _ in 0..3000 {
        let mut b = Builder::default();
        for client in 0..rng.gen_range(1..7u64) {
            let invoke = rng.gen_range(0..20);
            let complete = invoke + rng.gen_range(0..10);
            let value = |rng: &mut StdRng| format!("v{}", rng.gen_range(0..3));
            let (command, outcome) = match rng.gen_range(0..11) {
                0..=2 => {
                    let read = rng.gen_bool(0.75).then(|| value(&mut rng));
                    (Command::Get(read), Outcome::Ok)
                }
                3..=4 => (Command::Put(value(&mut rng)), Outcome::Ok),
                5 => (Command::Put(value(&mut rng)), Outcome::Info),
                6 => (Command::Delete, Outcome::Ok),
                7 => (Command::Delete, Outcome::Info),
                8 | 9 => {
                    let expected = rng.gen_bool(0.75).then(|| value(&mut rng));
                    let new = value(&mut rng);
                    let outcome = if rng.gen_bool(0.7) {
                        Outcome::Ok
                    } else {
                        Outcome::Info
                    };
                    (Command::Cas { expected, new }, outcome)
                }
                _ => {
                    let expected = rng.gen_bool(0.75).then(|| value(&mut rng));
                    (Command::CasFailed { expected }, Outcome::Ok)
                }
            };
            b.op(client, command, outcome, invoke, Some(complete));
        }
        let expected = brute_force(&b.ops);
        assert_eq!(b.is_linearizable(), expected, "{:#?}", b.ops);
        if expected {
            legal += 1;
        } else {
            illegal += 1;
            // The explanation is itself a history without a linearization.
            let failure = b.failure();
            assert!(!brute_force(&failure.ops), "{}", failure.diagram);
            assert!(failure.ops.len() <= failure.checked);
        }
    }
    assert!(
        legal > 300 && illegal > 300,
        "{legal} legal, {illegal} illegal"
    );
}

#[test]
fn the_recorder_stamps_a_monotonic_history() {
    let recorder = Recorder::new();
    let put = recorder.invoke(1, 2, "k", Command::Put("a".into()));
    recorder.ok(put);
    let get = recorder.invoke(1, 3, "k", Command::Get(None));
    recorder.ok_read(get, Some("a".into()));
    let lost = recorder.invoke(2, 1, "k", Command::Put("b".into()));
    recorder.info(lost, "timeout");
    let refused = recorder.invoke(2, 1, "k", Command::Delete);
    recorder.fail(refused, "connection refused");
    let pending = recorder.invoke(3, 1, "k", Command::Delete);
    let history = recorder.history();
    assert_eq!(history.ops.len(), 5);
    assert!(history.ops[put].complete.unwrap() <= history.ops[get].invoke);
    assert_eq!(history.ops[get].command, Command::Get(Some("a".into())));
    assert_eq!(history.ops[pending].outcome, Outcome::Info);
    assert_eq!(history.count(Outcome::Info), 2);
    assert_eq!(history.count(Outcome::Fail), 1);
    assert_eq!(
        check(&history, CheckConfig::default()).verdict(),
        Verdict::Pass
    );
}

#[test]
fn the_diagram_draws_intervals_on_one_axis() {
    let mut b = Builder::default();
    b.put(1, "v1", 0, 100)
        .put_info(2, "v2", 50)
        .get(3, Some("v3"), 90, 95);
    let diagram = render_diagram("k", &b.ops);
    let lines: Vec<&str> = diagram.lines().collect();
    assert_eq!(lines.len(), 5, "{diagram}");
    assert!(
        lines[2].contains("|") && lines[2].contains("put(v1)"),
        "{diagram}"
    );
    assert!(lines[2].ends_with('|'), "the label fits inside: {diagram}");
    assert!(
        lines[3].ends_with(">?"),
        "indeterminate runs off: {diagram}"
    );
    assert!(
        lines[4].ends_with("get=v3"),
        "a short bar is labelled after: {diagram}"
    );
    // Bars line up with time: the first starts at column 0 of the axis.
    let bar_start = |line: &str| line.find('|').unwrap();
    assert!(bar_start(lines[2]) < bar_start(lines[3]));
    assert!(bar_start(lines[3]) < bar_start(lines[4]));
}

/// A random linearizable history: `clients` clients each run operations back to back,
/// each taking effect at a random instant of its interval; with `cas`, some of them
/// compare-and-sets (that win or lose).
fn random_history(seed: u64, clients: u64, ops: usize, cas: bool) -> Vec<Operation> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clock = vec![0u64; clients as usize];
    let mut planned = Vec::new();
    for i in 0..ops {
        let client = rng.gen_range(0..clients);
        let invoke = clock[client as usize] + rng.gen_range(0..5);
        let complete = invoke + rng.gen_range(1..40);
        clock[client as usize] = complete;
        let at = rng.gen_range(invoke..=complete);
        let command = match rng.gen_range(0..if cas { 12 } else { 10 }) {
            0..=4 => Command::Get(None),
            5..=8 => Command::Put(format!("c{client}-{i}")),
            9 => Command::Delete,
            // Filled in below, from the register at the instant it takes effect.
            _ => Command::Cas {
                expected: None,
                new: format!("c{client}-{i}"),
            },
        };
        let wins = rng.gen_bool(0.6);
        planned.push((at, i, client, (command, wins), invoke, complete));
    }
    planned.sort_by_key(|p| (p.0, p.1));
    let mut register: Option<String> = None;
    let mut history = Vec::new();
    for (_, i, client, (command, wins), invoke, complete) in planned {
        let command = match command {
            Command::Cas { new, .. } if wins => {
                let expected = register.replace(new.clone());
                Command::Cas { expected, new }
            }
            Command::Cas { .. } => Command::CasFailed {
                expected: Some(format!("never-{i}")),
            },
            Command::Get(_) => Command::Get(register.clone()),
            Command::Put(v) => {
                register = Some(v.clone());
                Command::Put(v)
            }
            Command::Delete => {
                register = None;
                Command::Delete
            }
            other => other,
        };
        history.push(Operation {
            id: i,
            client,
            node: 0,
            key: "k".into(),
            command,
            outcome: Outcome::Ok,
            invoke: invoke * 1_000_000,
            complete: Some(complete * 1_000_000),
            note: String::new(),
        });
    }
    history.sort_by_key(|op| op.id);
    history
}

#[test]
fn histories_with_compare_and_sets_are_checked() {
    for seed in 0..5 {
        let mut ops = random_history(seed, 4, 60, true);
        assert!(ops
            .iter()
            .any(|op| matches!(op.command, Command::CasFailed { .. })));
        assert_eq!(
            check_key(&ops, CheckConfig::default()),
            KeyVerdict::Linearizable,
            "seed {seed}"
        );
        // A compare-and-set said to have won from a value the key never held there.
        let cas = ops
            .iter()
            .rposition(|op| matches!(op.command, Command::Cas { .. }))
            .unwrap();
        if let Command::Cas { expected, .. } = &mut ops[cas].command {
            *expected = Some("bogus".into());
        }
        assert!(
            matches!(
                check_key(&ops, CheckConfig::default()),
                KeyVerdict::NotLinearizable(_)
            ),
            "seed {seed}: the bogus compare-and-set is not caught"
        );
    }
}

#[test]
fn two_hundred_concurrent_operations_on_one_key_check_quickly() {
    for seed in 0..5 {
        let mut ops = random_history(seed, 6, 200, false);
        let started = Instant::now();
        assert_eq!(
            check_key(&ops, CheckConfig::default()),
            KeyVerdict::Linearizable,
            "seed {seed}"
        );
        // Some writes time out: still linearizable, still quick.
        for op in ops
            .iter_mut()
            .filter(|op| op.command.is_write())
            .step_by(10)
        {
            op.outcome = Outcome::Info;
        }
        assert_eq!(
            check_key(&ops, CheckConfig::default()),
            KeyVerdict::Linearizable,
            "seed {seed} with indeterminate writes"
        );
        // A read of a value never written somewhere in the middle: caught.
        let middle = ops
            .iter()
            .position(|op| !op.command.is_write() && op.id > 100)
            .unwrap();
        ops[middle].command = Command::Get(Some("bogus".into()));
        let KeyVerdict::NotLinearizable(failure) = check_key(&ops, CheckConfig::default()) else {
            panic!("seed {seed}: the bogus read is not caught");
        };
        assert!(failure.ops.len() < ops.len(), "the explanation is shrunk");
        assert!(failure.ops.iter().any(|op| op.id == ops[middle].id));
        let elapsed = started.elapsed();
        assert!(
            elapsed.as_secs() < 10,
            "seed {seed}: checking took {elapsed:?}"
        );
    }
}
