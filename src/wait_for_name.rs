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
}

/// One authoritative server: where it is and how it was named.
#[derive(Debug, Clone)]
struct Server {
    label: String,
    address: SocketAddr,
}

/// Waits, writing a line per change a person can follow (the init container's log).
pub async fn run(config: &Config, out: &mut impl std::io::Write) -> anyhow::Result<Outcome> {
    if config.names.is_empty() {
        bail!("no name to wait for");
    }
    let deadline = Instant::now() + config.timeout;
    let started = Instant::now();
    let system = system_resolver()?;
    let mut pending: Vec<(String, Vec<Server>)> = Vec::new();
    for name in &config.names {
        let servers = if config.servers.is_empty() {
            authoritative_servers(&system, name).await?
        } else {
            named_servers(&system, &config.servers).await?
        };
        let labels: Vec<&str> = servers.iter().map(|s| s.label.as_str()).collect();
        writeln!(out, "wait-for-name: {name}: asking {}", labels.join(", "))?;
        pending.push((name.clone(), servers));
    }
    let mut last_said: Vec<String> = vec![String::new(); pending.len()];
    loop {
        let mut still = Vec::new();
        for ((name, servers), said) in pending.into_iter().zip(last_said) {
            let missing = missing_at(&name, &servers).await;
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

/// The servers at which `name` does not answer yet, each with why.
async fn missing_at(name: &str, servers: &[Server]) -> Vec<String> {
    let mut missing = Vec::new();
    for server in servers {
        let answer = match direct_resolver(server.address) {
            Ok(resolver) => resolver.lookup_ip(fqdn(name)).await,
            Err(error) => {
                missing.push(format!("{}: {error:#}", server.label));
                continue;
            }
        };
        match answer {
            Ok(ips) if ips.iter().next().is_some() => {}
            Ok(_) => missing.push(format!("{}: no address", server.label)),
            Err(error) if error.is_no_records_found() => {
                missing.push(format!("{}: no record", server.label))
            }
            Err(error) => missing.push(format!("{}: {error}", server.label)),
        }
    }
    missing
}

/// The servers given by the user: addresses, with port 53 unless one is given, or host names.
async fn named_servers(system: &TokioResolver, given: &[String]) -> anyhow::Result<Vec<Server>> {
    let mut servers = Vec::new();
    for text in given {
        if let Ok(address) = text.parse::<SocketAddr>() {
            servers.push(Server {
                label: text.clone(),
                address,
            });
        } else if let Ok(ip) = text.parse::<IpAddr>() {
            servers.push(Server {
                label: text.clone(),
                address: SocketAddr::new(ip, 53),
            });
        } else {
            servers.extend(addresses_of(system, text).await?);
        }
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
            servers.extend(addresses_of(system, host.trim_end_matches('.')).await?);
        }
        return Ok(servers);
    }
    bail!("no zone above {name} has NS records (give --dns-server)")
}

/// Each address of a server's name, as a server on port 53.
async fn addresses_of(system: &TokioResolver, host: &str) -> anyhow::Result<Vec<Server>> {
    let ips = system
        .lookup_ip(fqdn(host))
        .await
        .with_context(|| format!("resolving the DNS server {host}"))?;
    Ok(ips
        .iter()
        .map(|ip| Server {
            label: format!("{host} ({ip})"),
            address: SocketAddr::new(ip, 53),
        })
        .collect())
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
    use super::*;

    #[test]
    fn enclosing_names_go_up_to_the_domain_below_the_top_level() {
        let names: Vec<&str> = enclosing_names("kafka-0.kafka.example.com").collect();
        assert_eq!(names, ["kafka.example.com", "example.com"]);
        let names: Vec<&str> = enclosing_names("kafka-0.example.com.").collect();
        assert_eq!(names, ["example.com"]);
        assert_eq!(enclosing_names("localhost").count(), 0);
        assert_eq!(enclosing_names("example.com").count(), 0);
    }
}
