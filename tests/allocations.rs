//! Heap allocations per review (dhat's counting allocator) on the real review bodies, for the
//! three paths: patched, already injected (the reinvocation), and skipped (opted out). Counts, not
//! times, so the figures do not depend on the machine; `make bench` prints them. The test fails if
//! a path stops giving its answer, or allocates beyond today's counts (76 / 58 / 7 for the
//! small review): the ceilings leave room for a dependency's change, not for a `String` per field.

use kafka_listener_injector::inject::Defaults;
use kafka_listener_injector::webhook::admission;

#[path = "common/review_bodies.rs"]
mod review_bodies;
use review_bodies::{already_injected, opted_out};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Allocations and bytes of one review (after a first one, for lazy statics and thread-locals).
fn count(body: &[u8], defaults: &Defaults, expected_outcome: &str) -> (u64, u64) {
    let _ = admission::review(body, defaults);
    let before = dhat::HeapStats::get();
    let reviewed = admission::review(body, defaults).unwrap();
    let after = dhat::HeapStats::get();
    assert_eq!(reviewed.outcome.as_str(), expected_outcome);
    (
        after.total_blocks - before.total_blocks,
        after.total_bytes - before.total_bytes,
    )
}

#[test]
fn allocations_per_review() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let defaults = Defaults {
        domain: Some("kafka.example.com".into()),
        ..Defaults::default()
    };
    for (name, body) in [
        (
            "small 3.4 KB",
            &include_bytes!("../bench/fixtures/review-small.json")[..],
        ),
        (
            "20 KB",
            &include_bytes!("../bench/fixtures/review-20k.json")[..],
        ),
        (
            "4-container",
            &include_bytes!("../bench/fixtures/review-4-containers.json")[..],
        ),
    ] {
        let patched = count(body, &defaults, "patched");
        let unchanged = count(&already_injected(body, &defaults), &defaults, "unchanged");
        let skipped = count(&opted_out(body), &defaults, "skipped");
        eprintln!(
            "{name}: patched {} allocations ({} bytes), already injected {} ({} bytes), opted out {} ({} bytes)",
            patched.0, patched.1, unchanged.0, unchanged.1, skipped.0, skipped.1
        );
        // Strings borrow from the body: the count does not grow with the pod's size.
        // The 20 KB review maps EXTERNAL to SSL with no keystore, an effectiveness finding whose
        // sentence costs about 15 allocations of its own.
        assert!(patched.0 <= 95, "{name}: patched took {}", patched.0);
        assert!(
            unchanged.0 <= 70,
            "{name}: already injected took {}",
            unchanged.0
        );
        assert!(skipped.0 <= 16, "{name}: opted out took {}", skipped.0);
    }
}
