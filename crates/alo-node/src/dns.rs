//! `--peers-dns`: the members are the addresses a DNS name resolves to.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};

use crate::members::MemberSource;

/// What `--peers-dns` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DnsName {
    /// `NAME:PORT`: every A (or, without any, AAAA) record of `NAME`, at `PORT`.
    Address {
        /// The name to resolve.
        name: Name,
        /// The peer port of every member.
        port: u16,
    },
    /// `_service._proto.NAME`: each SRV record's target, at the record's port.
    Srv(Name),
}

impl DnsName {
    /// Reads `NAME:PORT` or an SRV name (its first label starts with `_`).
    pub(crate) fn parse(text: &str) -> Result<DnsName, String> {
        let name = |text: &str| {
            Name::from_ascii(text).map_err(|e| format!("{text:?} is not a DNS name: {e}"))
        };
        if text.starts_with('_') {
            if text.contains(':') {
                return Err(format!(
                    "{text:?}: an SRV name gives no port, its records do"
                ));
            }
            return Ok(DnsName::Srv(name(text)?));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!(
                "{text:?}: give NAME:PORT (A/AAAA records, every member at PORT) or an SRV name such as _alo._tcp.NAME"
            ));
        };
        match port.parse::<u16>() {
            Ok(port) if port > 0 && !host.is_empty() => Ok(DnsName::Address {
                name: name(host)?,
                port,
            }),
            _ => Err(format!(
                "{text:?}: NAME:PORT needs a name and a port from 1 to 65535"
            )),
        }
    }
}

/// Resolves a [`DnsName`] to member URLs, `http://address:port`, on an interval.
pub(crate) struct DnsSource {
    name: DnsName,
    resolver: TokioResolver,
    interval: Duration,
}

impl DnsSource {
    /// A source for `name` (as `--peers-dns` gives it), asking `server` or, without one, the
    /// name servers of the system's configuration.
    pub(crate) fn new(
        name: &str,
        server: Option<SocketAddr>,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let name = DnsName::parse(name).map_err(|e| anyhow::anyhow!("--peers-dns {e}"))?;
        let mut builder = match server {
            Some(server) => {
                let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut name_server.connections {
                    connection.port = server.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![name_server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .context("reading the system's DNS configuration for --peers-dns")?,
        };
        // One address family per name: a dual-stack node listed under its IPv4 and its IPv6
        // address would be two members, one of them this node under another name.
        builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        let resolver = builder.build().context("setting up the DNS resolver")?;
        Ok(DnsSource {
            name,
            resolver,
            interval,
        })
    }

    /// The addresses of `name`, lowest first.
    async fn addresses(&self, name: &Name) -> anyhow::Result<Vec<IpAddr>> {
        let lookup = self
            .resolver
            .lookup_ip(name.clone())
            .await
            .with_context(|| format!("looking up {name}"))?;
        let mut addresses: Vec<IpAddr> = lookup.iter().collect();
        addresses.sort();
        Ok(addresses)
    }
}

impl MemberSource for DnsSource {
    async fn read(&mut self, fresh: bool) -> anyhow::Result<Vec<String>> {
        if fresh {
            self.resolver.clear_cache();
        }
        let url = |ip: IpAddr, port: u16| format!("http://{}", SocketAddr::new(ip, port));
        match &self.name {
            DnsName::Address { name, port } => {
                let addresses = self.addresses(name).await?;
                Ok(addresses.into_iter().map(|ip| url(ip, *port)).collect())
            }
            DnsName::Srv(name) => {
                let lookup = self
                    .resolver
                    .srv_lookup(name.clone())
                    .await
                    .with_context(|| format!("looking up the SRV records of {name}"))?;
                let mut members = Vec::new();
                for record in lookup.answers() {
                    let RData::SRV(srv) = &record.data else {
                        continue;
                    };
                    // A target of "." says the service is not offered there.
                    if srv.target.is_root() {
                        continue;
                    }
                    // A target is one node: if it has several addresses, the lowest names it,
                    // the same on every node.
                    let addresses = self.addresses(&srv.target).await?;
                    if let Some(ip) = addresses.first() {
                        members.push(url(*ip, srv.port));
                    }
                }
                Ok(members)
            }
        }
    }

    fn interval(&self) -> Option<Duration> {
        Some(self.interval)
    }

    fn may_start_without(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_an_address_name_with_a_port_or_an_srv_name() {
        assert_eq!(
            DnsName::parse("alo.default.svc:8001"),
            Ok(DnsName::Address {
                name: Name::from_ascii("alo.default.svc").unwrap(),
                port: 8001
            })
        );
        assert_eq!(
            DnsName::parse("_alo._tcp.alo.default.svc."),
            Ok(DnsName::Srv(
                Name::from_ascii("_alo._tcp.alo.default.svc.").unwrap()
            ))
        );
        for bad in [
            "alo",
            "alo:0",
            "alo:http",
            ":8001",
            "_alo._tcp.alo:8001",
            "a..b:1",
        ] {
            assert!(DnsName::parse(bad).is_err(), "{bad}");
        }
    }
}
