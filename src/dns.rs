//! Resolvers without a cache, so a record that appears is seen at the next question and never
//! hidden behind a negative answer's TTL: the system's, or one that asks a single server.
//! `reconcile` checks advertised names with them; `wait-for-name` asks authoritative servers.

use std::net::SocketAddr;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{ResolverBuilder, TokioResolver};

/// The system's resolver (`/etc/resolv.conf`), without a cache.
pub fn system() -> anyhow::Result<TokioResolver> {
    let mut builder = TokioResolver::builder_tokio()
        .map_err(|error| anyhow::anyhow!("reading the system's resolver: {error}"))?;
    builder.options_mut().cache_size = 0;
    Ok(builder.build()?)
}

/// A resolver that asks `address` alone, over UDP then TCP: no cache, no hosts file.
pub fn asking(address: SocketAddr) -> ResolverBuilder<TokioRuntimeProvider> {
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
    builder.options_mut().cache_size = 0;
    builder.options_mut().use_hosts_file = ResolveHosts::Never;
    builder
}
