//! Runs `admission::review` on one body N times, for profilers (callgrind, perf).
//!
//! Usage: profile_review BODY [N]
fn main() {
    let mut args = std::env::args().skip(1);
    let body = std::fs::read(args.next().expect("usage: profile_review BODY [N]")).unwrap();
    let n: u32 = args.next().map_or(10_000, |n| n.parse().unwrap());
    let defaults = kafka_listener_injector::inject::Defaults {
        domain: Some("kafka.example.com".into()),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            kafka_listener_injector::webhook::admission::review(&body, &defaults).unwrap(),
        );
    }
    println!("{:?} per review", started.elapsed() / n);
}
