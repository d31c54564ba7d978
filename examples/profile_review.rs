//! Runs `admission::review` on one body N times, for profilers (callgrind, perf).
//!
//! Usage: profile_review BODY [N] [patched|unchanged|opted-out]
//!
//! `unchanged` reviews the pod as the webhook's own patch leaves it (the reinvocation);
//! `opted-out` the pod labelled `kafka-listener-injector.io/inject: "false"`. Both bodies are
//! derived once, before the loop, as `tests/allocations.rs` derives them.
use kafka_listener_injector::inject::Defaults;
use kafka_listener_injector::webhook::admission;

#[path = "../tests/common/review_bodies.rs"]
mod review_bodies;
use review_bodies::{already_injected, opted_out};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: profile_review BODY [N] [patched|unchanged|opted-out]";
    let body = std::fs::read(args.next().expect(usage)).unwrap();
    let n: u32 = args.next().map_or(10_000, |n| n.parse().unwrap());
    let defaults = Defaults {
        domain: Some("kafka.example.com".into()),
        ..Default::default()
    };
    let body = match args.next().as_deref() {
        None | Some("patched") => body,
        Some("unchanged") => already_injected(&body, &defaults),
        Some("opted-out") => opted_out(&body),
        Some(_) => panic!("{usage}"),
    };
    let started = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(admission::review(&body, &defaults).unwrap());
    }
    println!("{:?} per review", started.elapsed() / n);
}
