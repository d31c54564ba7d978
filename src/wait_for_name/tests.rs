//! The wait against fake DNS servers on loopback: what it asks, of whom, and when it stops.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, NS};
use hickory_resolver::proto::rr::{Name, Record};

use super::*;

/// What the fake server answers a question with.
enum Reply {
    NoSuchName,
    NoData,
    Address(Ipv4Addr),
    NameServer(&'static str),
}

/// A DNS server on loopback UDP answering each question with `reply(name, type, how many
/// address questions came before)`. Keeps every question asked, and whether any asked for
/// recursion.
async fn fake_dns(
    reply: impl Fn(&str, RecordType, usize) -> Reply + Send + 'static,
) -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<String>>>,
    Arc<AtomicBool>,
) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recursion_asked = Arc::new(AtomicBool::new(false));
    let (asked_here, recursion_here) = (asked.clone(), recursion_asked.clone());
    let address_questions = AtomicUsize::new(0);
    tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        loop {
            let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
                return;
            };
            let query = Message::from_vec(&buffer[..length]).unwrap();
            if query.metadata.recursion_desired {
                recursion_here.store(true, Ordering::SeqCst);
            }
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.authoritative = true;
            for question in &query.queries {
                answer.add_query(question.clone());
                let name = question.name().to_utf8();
                let kind = question.query_type();
                asked_here.lock().unwrap().push(format!("{name} {kind}"));
                let before = if kind == RecordType::A {
                    address_questions.fetch_add(1, Ordering::SeqCst)
                } else {
                    0
                };
                let data = match reply(name.trim_end_matches('.'), kind, before) {
                    Reply::NoSuchName => {
                        answer.metadata.response_code = ResponseCode::NXDomain;
                        continue;
                    }
                    Reply::NoData => continue,
                    Reply::Address(ip) if kind == RecordType::A => RData::A(A(ip)),
                    Reply::NameServer(host) if kind == RecordType::NS => {
                        RData::NS(NS(Name::from_ascii(host).unwrap()))
                    }
                    Reply::Address(_) | Reply::NameServer(_) => continue,
                };
                answer.add_answer(Record::from_rdata(question.name().clone(), 60, data));
            }
            socket
                .send_to(&answer.to_vec().unwrap(), peer)
                .await
                .unwrap();
        }
    });
    (address, asked, recursion_asked)
}

/// An authoritative server for the broker's name: "no such name" for the first `missing`
/// questions for its address, then the address.
async fn authority(missing: usize) -> (SocketAddr, Arc<AtomicBool>) {
    let (address, _, recursion_asked) = fake_dns(move |_, _, before| {
        if before < missing {
            Reply::NoSuchName
        } else {
            Reply::Address(Ipv4Addr::new(10, 77, 2, 13))
        }
    })
    .await;
    (address, recursion_asked)
}

#[tokio::test]
async fn the_zone_servers_come_from_the_nearest_ns_records_never_asking_for_the_name() {
    let (resolver_address, asked, _) = fake_dns(|name, kind, _| match (name, kind) {
        ("example.com", RecordType::NS) => Reply::NameServer("ns1.example.net."),
        ("ns1.example.net", RecordType::A) => Reply::Address(Ipv4Addr::new(192, 0, 2, 53)),
        ("kafka.example.com", _) | ("ns1.example.net", _) => Reply::NoData,
        _ => Reply::NoSuchName,
    })
    .await;
    let system = direct_resolver(resolver_address).unwrap();
    let servers = authoritative_servers(&system, "kafka-3.kafka.example.com")
        .await
        .unwrap();
    let found: Vec<(String, Vec<SocketAddr>)> = servers
        .into_iter()
        .map(|s| (s.label, s.addresses))
        .collect();
    assert_eq!(
        found,
        [(
            "ns1.example.net".to_owned(),
            vec!["192.0.2.53:53".parse().unwrap()]
        )]
    );
    let asked = asked.lock().unwrap();
    assert!(
        asked.iter().all(|q| !q.starts_with("kafka-3.")),
        "the system's resolver was asked about the broker's own name: {asked:?}"
    );
    assert_eq!(asked[0], "kafka.example.com. NS", "{asked:?}");
}

fn config(servers: &[SocketAddr], timeout: Duration) -> Config {
    Config {
        names: vec!["kafka-3.kafka.example.com".into()],
        servers: servers.iter().map(ToString::to_string).collect(),
        timeout,
        interval: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn waits_until_the_name_answers_asking_without_recursion() {
    let (server, recursion_asked) = authority(3).await;
    let mut out = Vec::new();
    let outcome = run(&config(&[server], Duration::from_secs(20)), &mut out)
        .await
        .unwrap();
    let log = String::from_utf8(out).unwrap();
    assert_eq!(outcome, Outcome::Answered, "{log}");
    assert!(
        log.contains(&format!("not yet: {server}: no record")),
        "{log}"
    );
    assert!(
        log.contains("kafka-3.kafka.example.com answers at every authoritative server"),
        "{log}"
    );
    assert_eq!(log.matches("not yet").count(), 1, "said once: {log}");
    assert!(!recursion_asked.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_server_answers_through_any_of_its_addresses() {
    let (answering, _) = authority(0).await;
    let (silent, _) = authority(usize::MAX).await;
    let server = Server {
        label: "ns1.example.net".into(),
        addresses: vec![silent, answering],
    };
    assert!(
        missing_at("kafka-3.kafka.example.com", std::slice::from_ref(&server))
            .await
            .0
            .is_empty()
    );
    let only_silent = Server {
        addresses: vec![silent],
        ..server
    };
    assert_eq!(
        missing_at("kafka-3.kafka.example.com", &[only_silent]).await,
        (vec!["ns1.example.net: no record".to_owned()], true)
    );
}

#[tokio::test]
async fn every_server_must_answer_and_the_time_runs_out_without_an_error() {
    let (answering, _) = authority(0).await;
    let (lagging, _) = authority(usize::MAX).await;
    let mut out = Vec::new();
    let outcome = run(
        &config(&[answering, lagging], Duration::from_millis(300)),
        &mut out,
    )
    .await
    .unwrap();
    let log = String::from_utf8(out).unwrap();
    assert_eq!(
        outcome,
        Outcome::TimedOut(vec!["kafka-3.kafka.example.com".into()]),
        "{log}"
    );
    assert!(
        log.contains(&format!("not yet: {lagging}: no record")),
        "{log}"
    );
    assert!(!log.contains(&format!("{answering}: no record")), "{log}");
    assert!(log.contains("starting the broker anyway"), "{log}");
}

#[test]
fn enclosing_names_go_up_to_the_domain_below_the_top_level() {
    let names: Vec<&str> = enclosing_names("kafka-0.kafka.example.com").collect();
    assert_eq!(names, ["kafka.example.com", "example.com"]);
    let names: Vec<&str> = enclosing_names("kafka-0.example.com.").collect();
    assert_eq!(names, ["example.com"]);
    assert_eq!(enclosing_names("localhost").count(), 0);
    assert_eq!(enclosing_names("example.com").count(), 0);
}

#[tokio::test]
async fn servers_that_never_answer_end_the_wait_early_with_the_reason() {
    // A UDP port nobody answers on: every question times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let mut out = Vec::new();
    let outcome = run(&config(&[address], Duration::from_secs(3)), &mut out)
        .await
        .unwrap();
    let log = String::from_utf8(out).unwrap();
    assert!(
        matches!(&outcome, Outcome::Unreachable(why) if why.contains("no DNS server answered at all")),
        "{outcome:?}: {log}"
    );
    assert!(log.contains("starting the broker anyway"), "{log}");
}

#[tokio::test]
async fn a_zone_whose_servers_cannot_be_found_lets_the_broker_start() {
    let (resolver_address, _, _) = fake_dns(|_, _, _| Reply::NoSuchName).await;
    let system = direct_resolver(resolver_address).unwrap();
    let mut out = Vec::new();
    let outcome = run_with(&system, &config(&[], Duration::from_secs(60)), &mut out)
        .await
        .unwrap();
    let log = String::from_utf8(out).unwrap();
    assert!(
        matches!(&outcome, Outcome::Unreachable(why) if why.contains("no zone above kafka-3.kafka.example.com has NS records")),
        "{outcome:?}: {log}"
    );
}
