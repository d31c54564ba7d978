//! The webhook's per-review work on real review bodies: parse, decide, patch, serialize.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_listener_injector::inject::Defaults;
use kafka_listener_injector::webhook::admission;
use std::hint::black_box;

const BODIES: [(&str, &[u8]); 3] = [
    (
        "small pod (3.4 KB)",
        include_bytes!("../bench/fixtures/review-small.json"),
    ),
    (
        "20 KB pod, managedFields, 40 env",
        include_bytes!("../bench/fixtures/review-20k.json"),
    ),
    (
        "4-container pod",
        include_bytes!("../bench/fixtures/review-4-containers.json"),
    ),
];

fn review(c: &mut Criterion) {
    let defaults = Defaults {
        domain: Some("kafka.example.com".into()),
        ..Defaults::default()
    };
    let mut group = c.benchmark_group("review");
    for (name, body) in BODIES {
        // Measure the real path: each body must be patched, not skipped or denied.
        let reviewed = admission::review(body, &defaults).unwrap();
        assert_eq!(
            reviewed.outcome.as_str(),
            "patched",
            "{name}: {}",
            reviewed.reason.as_str()
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| admission::review(black_box(body), &defaults).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, review);
criterion_main!(benches);
