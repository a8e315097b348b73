//! Micro-benchmarks of the storage path under the raftstore: `cargo bench -p tinykv-actors`.
//!
//! - `engine/write_100_puts/{no_sync,sync}`: one atomic batch of 100 puts of 128-byte
//!   values, buffered (how the apply writer writes) or fsynced (how the raft-log writer
//!   writes). Their difference is the price of one fsync on this disk.
//! - `engine/get_hit`: a point read of one of 10,000 existing keys.
//! - `raft_log_writer/{1,64}_tasks`: the group-commit actor on its own, driven through an
//!   actix `System` without a store: N regions each hand it one synced log append (one
//!   256-byte entry) at the same time, and the time runs until every `Persisted` is back.
//!   With 64 tasks the writer folds them into a few fsyncs, which is the point of it.
//!
//! Each benchmark runs on a fresh fjall database in a temporary directory. They are kept
//! short (10 samples, a few seconds each) and are not part of `make test`.

use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use tinykv_actors::alive_pair;
use tinykv_actors::engine::{Cf, Engine, Mutation};
use tinykv_actors::keys::raft_log_key;
use tinykv_actors::msg::{Persisted, WriteTask};
use tinykv_actors::RaftLogWriter;

const VALUE: [u8; 128] = [b'v'; 128];

fn puts(batch: u64, n: u64) -> Vec<Mutation> {
    (0..n)
        .map(|i| Mutation::Put {
            cf: Cf::Default,
            key: format!("bench-{:010}", batch * n + i).into_bytes(),
            value: VALUE.to_vec(),
        })
        .collect()
}

fn engine_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(dir.path().join("db")).expect("open engine");
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(100));
    for (name, sync) in [("no_sync", false), ("sync", true)] {
        let mut batch = 0u64;
        group.bench_function(format!("write_100_puts/{name}"), |b| {
            b.iter_batched(
                || {
                    batch += 1;
                    puts(batch, 100)
                },
                |mutations| engine.write(&mutations, sync).expect("write"),
                BatchSize::SmallInput,
            )
        });
    }

    const KEYS: u64 = 10_000;
    for chunk in 0..KEYS / 1000 {
        let mutations: Vec<Mutation> = (0..1000)
            .map(|i| Mutation::Put {
                cf: Cf::Write,
                key: format!("get-{:06}", chunk * 1000 + i).into_bytes(),
                value: VALUE.to_vec(),
            })
            .collect();
        engine.write(&mutations, false).expect("load");
    }
    group.throughput(Throughput::Elements(1));
    let mut next = 0u64;
    group.bench_function("get_hit", |b| {
        b.iter_batched(
            || {
                // A cheap permutation of the key space (7919 is prime to 10,000).
                next = (next + 7919) % KEYS;
                format!("get-{next:06}").into_bytes()
            },
            |key| {
                let value = engine.get(Cf::Write, &key).expect("get");
                black_box(value).expect("key exists")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Forwards `Persisted` acknowledgements to the benchmark.
struct Acks(tokio::sync::mpsc::UnboundedSender<u64>);

impl Actor for Acks {
    type Context = Context<Self>;
}

impl Handler<Persisted> for Acks {
    type Result = ();

    fn handle(&mut self, msg: Persisted, _: &mut Context<Self>) {
        let _ = self.0.send(msg.ready_number);
    }
}

fn raft_log_writer_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(dir.path().join("db")).expect("open engine");
    let system = actix_rt::System::new();
    let (token, _watch) = alive_pair();
    let (tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let (writer, notify) = system.block_on(async move {
        let writer = RaftLogWriter::new(engine, 4 << 20, token).start();
        let notify = Acks(tx).start().recipient::<Persisted>();
        (writer, notify)
    });

    let mut group = c.benchmark_group("raft_log_writer");
    let mut index = 0u64;
    for regions in [1u64, 64] {
        group.throughput(Throughput::Elements(regions));
        group.bench_function(format!("{regions}_tasks"), |b| {
            b.iter_custom(|iters| {
                system.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        index += 1;
                        for region in 1..=regions {
                            writer.do_send(WriteTask {
                                region_id: region,
                                ready_number: index,
                                mutations: vec![Mutation::Put {
                                    cf: Cf::Raft,
                                    key: raft_log_key(region, index),
                                    value: vec![b'e'; 256],
                                }],
                                must_sync: true,
                                last_index: Some(index),
                                notify: Some(notify.clone()),
                                flushed: None,
                            });
                        }
                        for _ in 0..regions {
                            acks.recv().await.expect("writer acknowledges");
                        }
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = engine_benches, raft_log_writer_benches
}
criterion_main!(benches);
