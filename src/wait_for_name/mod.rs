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
    run_with(&crate::dns::system()?, config, out).await
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

/// A resolver that asks one server directly: no recursion, no cache, no hosts file.
fn direct_resolver(address: SocketAddr) -> anyhow::Result<TokioResolver> {
    let mut builder = crate::dns::asking(address);
    let options = builder.options_mut();
    options.recursion_desired = false;
    options.attempts = 1;
    options.timeout = Duration::from_secs(2);
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests;
