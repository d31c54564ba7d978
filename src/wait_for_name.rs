//! `wait-for-name`: hold a broker until the names it will advertise answer at their zone's
//! authoritative DNS servers. The webhook adds it as the pod's last init container when it is
//! given `--wait-for-name-image`.
//!
//! Why: a broker registers in Kafka's metadata as soon as it starts, and a new broker usually
//! starts before its load balancer and DNS record exist. A client that reads the metadata and
//! looks the name up in that window gets "no such name", and its resolver keeps that answer for
//! the zone's negative TTL (up to 900 s on Route 53): the broker stays unreachable for that
//! client long after the record appears. The readiness gate cannot help, since registration does
//! not wait for readiness. This wait asks the authoritative servers directly, with recursion off
//! and nothing cached, so no resolver anywhere learns the name's absence from it; and it waits
//! for every one of them, since a client's resolver may ask any.
//!
//! It never holds a broker down for good: after `--timeout` it lets the broker start, saying why.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::time::Instant;

/// What to wait for, and how long.
#[derive(Debug, Clone)]
pub struct Config {
    /// The advertised DNS names.
    pub names: Vec<String>,
    /// The authoritative servers to ask (`IP`, `IP:PORT` or a host name); empty: each name's
    /// zone's NS records, found through the system's resolver.
    pub servers: Vec<String>,
    pub timeout: Duration,
    pub interval: Duration,
}

/// How the wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every name answers at every authoritative server.
    Answered,
    /// The time ran out; these names were still missing somewhere.
    TimedOut(Vec<String>),
    /// No authoritative server could be found or heard from (why): waiting longer would only
    /// delay the broker.
    Unreachable(String),
}

/// How long the wait goes on while no server answers at all (not even "no such name").
const UNHEARD_LIMIT: Duration = Duration::from_secs(60);

/// One authoritative server: how it was named and its addresses (a name server's name usually
/// has an IPv4 and an IPv6 address, of which a pod may reach only one).
#[derive(Debug, Clone)]
struct Server {
    label: String,
    addresses: Vec<SocketAddr>,
}

impl Server {
    /// Its name, with its addresses when it was given by name.
    fn describe(&self) -> String {
        if self.label.parse::<SocketAddr>().is_ok() || self.label.parse::<IpAddr>().is_ok() {
            return self.label.clone();
        }
        let addresses: Vec<String> = self.addresses.iter().map(|a| a.ip().to_string()).collect();
        format!("{} ({})", self.label, addresses.join(", "))
    }
}

/// Waits, writing a line per change a person can follow (the init container's log).
pub async fn run(config: &Config, out: &mut impl std::io::Write) -> anyhow::Result<Outcome> {
    if config.names.is_empty() {
        bail!("no name to wait for");
    }
    run_with(&system_resolver()?, config, out).await
}

/// [`run`], finding servers through `system`.
async fn run_with(
    system: &TokioResolver,
    config: &Config,
    out: &mut impl std::io::Write,
) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + config.timeout;
    let started = Instant::now();
    let mut pending: Vec<(String, Vec<Server>)> = Vec::new();
    for name in &config.names {
        let servers = if config.servers.is_empty() {
            authoritative_servers(system, name).await
        } else {
            named_servers(system, &config.servers).await
        };
        let servers = match servers {
            Ok(servers) => servers,
            Err(error) => {
                let why = format!("finding the DNS servers to ask for {name}: {error:#}");
                writeln!(out, "wait-for-name: {why}; starting the broker anyway")?;
                return Ok(Outcome::Unreachable(why));
            }
        };
        let labels: Vec<String> = servers.iter().map(Server::describe).collect();
        writeln!(out, "wait-for-name: {name}: asking {}", labels.join(", "))?;
        pending.push((name.clone(), servers));
    }
    let mut last_said: Vec<String> = vec![String::new(); pending.len()];
    let mut heard_from_any = false;
    loop {
        let mut still = Vec::new();
        for ((name, servers), said) in pending.into_iter().zip(last_said) {
            let (missing, heard) = missing_at(&name, &servers).await;
            heard_from_any |= heard;
            if missing.is_empty() {
                writeln!(
                    out,
                    "wait-for-name: {name} answers at every authoritative server ({} s)",
                    started.elapsed().as_secs()
                )?;
                continue;
            }
            let text = missing.join("; ");
            if text != said {
                writeln!(out, "wait-for-name: {name}: not yet: {text}")?;
            }
            still.push(((name, servers), text));
        }
        if still.is_empty() {
            return Ok(Outcome::Answered);
        }
        (pending, last_said) = still.into_iter().unzip();
        if !heard_from_any && started.elapsed() >= UNHEARD_LIMIT.min(config.timeout) {
            let why = format!(
                "no DNS server answered at all in {} s (a NetworkPolicy that blocks DNS from this pod? give --dns-server)",
                started.elapsed().as_secs()
            );
            writeln!(out, "wait-for-name: {why}; starting the broker anyway")?;
            return Ok(Outcome::Unreachable(why));
        }
        if Instant::now() + config.interval > deadline {
            let names: Vec<String> = pending.into_iter().map(|(name, _)| name).collect();
            writeln!(
                out,
                "wait-for-name: {} still missing after {} s; starting the broker anyway: a client that looks a missing name up now may keep the negative answer for the zone's negative TTL",
                names.join(", "),
                config.timeout.as_secs()
            )?;
            return Ok(Outcome::TimedOut(names));
        }
        tokio::time::sleep(config.interval).await;
    }
}

/// The servers at which `name` does not answer yet, each with why, and whether any server
/// answered at all (an address or "no such name"). A server answers when any of its addresses
/// gives the name's address.
async fn missing_at(name: &str, servers: &[Server]) -> (Vec<String>, bool) {
    let mut missing = Vec::new();
    let mut heard = false;
    for server in servers {
        let mut why = Vec::new();
        for &address in &server.addresses {
            let answer = match direct_resolver(address) {
                Ok(resolver) => resolver.lookup_ip(fqdn(name)).await,
                Err(error) => {
                    why.push(format!("{error:#}"));
                    continue;
                }
            };
            match answer {
                Ok(ips) if ips.iter().next().is_some() => {
                    heard = true;
                    why.clear();
                    break;
                }
                Ok(_) => {
                    heard = true;
                    why.push("no address".to_owned());
                }
                Err(error) if error.is_no_records_found() => {
                    heard = true;
                    why.push("no record".to_owned());
                }
                Err(error) => why.push(error.to_string()),
            }
        }
        if !why.is_empty() {
            // "no record" says more than an address this pod cannot reach.
            let said = why.iter().find(|w| *w == "no record").unwrap_or(&why[0]);
            missing.push(format!("{}: {said}", server.label));
        }
    }
    (missing, heard)
}

/// The servers given by the user: addresses, with port 53 unless one is given, or host names.
async fn named_servers(system: &TokioResolver, given: &[String]) -> anyhow::Result<Vec<Server>> {
    let mut servers = Vec::new();
    for text in given {
        let address = text.parse::<SocketAddr>().ok().or_else(|| {
            text.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        servers.push(match address {
            Some(address) => Server {
                label: text.clone(),
                addresses: vec![address],
            },
            None => server_named(system, text).await?,
        });
    }
    Ok(servers)
}

/// The authoritative servers of the zone that holds `name`: the NS records of its nearest
/// enclosing name that has them. The name itself is never asked about through the system's
/// resolver, which would cache its absence.
async fn authoritative_servers(system: &TokioResolver, name: &str) -> anyhow::Result<Vec<Server>> {
    for zone in enclosing_names(name) {
        let answer = match system.lookup(fqdn(zone), RecordType::NS).await {
            Ok(answer) => answer,
            Err(error) if error.is_no_records_found() => continue,
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("looking up the NS records of {zone} (give --dns-server to skip this)")
                })
            }
        };
        let hosts: Vec<String> = answer
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::NS(ns) => Some(ns.0.to_utf8()),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            continue;
        }
        let mut servers = Vec::new();
        for host in hosts {
            servers.push(server_named(system, host.trim_end_matches('.')).await?);
        }
        return Ok(servers);
    }
    bail!("no zone above {name} has NS records (give --dns-server)")
}

/// A server by its name: its addresses on port 53, IPv4 first.
async fn server_named(system: &TokioResolver, host: &str) -> anyhow::Result<Server> {
    let ips = system
        .lookup_ip(fqdn(host))
        .await
        .with_context(|| format!("resolving the DNS server {host}"))?;
    let mut addresses: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, 53)).collect();
    addresses.sort_by_key(|address| address.is_ipv6());
    Ok(Server {
        label: host.to_owned(),
        addresses,
    })
}

/// The names above `name`, nearest first, down to (not including) the top-level domain.
pub fn enclosing_names(name: &str) -> impl Iterator<Item = &str> {
    let name = name.trim_end_matches('.');
    let dots = name.match_indices('.').map(|(i, _)| i).collect::<Vec<_>>();
    let keep = dots.len().saturating_sub(1);
    dots.into_iter().take(keep).map(move |i| &name[i + 1..])
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn system_resolver() -> anyhow::Result<TokioResolver> {
    let mut builder = TokioResolver::builder_tokio()
        .map_err(|error| anyhow::anyhow!("reading the system's resolver: {error}"))?;
    builder.options_mut().cache_size = 0;
    Ok(builder.build()?)
}

/// A resolver that asks one server directly: no recursion, no cache, no hosts file.
fn direct_resolver(address: SocketAddr) -> anyhow::Result<TokioResolver> {
    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
        .into_iter()
        .map(|mut c| {
            c.port = address.port();
            c
        })
        .collect();
    let config = ResolverConfig::from_parts(
        None,
        Vec::new(),
        vec![NameServerConfig::new(address.ip(), true, connections)],
    );
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    let options = builder.options_mut();
    options.cache_size = 0;
    options.recursion_desired = false;
    options.use_hosts_file = ResolveHosts::Never;
    options.attempts = 1;
    options.timeout = Duration::from_secs(2);
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
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
}
