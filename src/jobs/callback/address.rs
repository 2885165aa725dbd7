//! Which addresses a completion callback may reach, judged twice: on the URL's text when a job
//! is submitted ([`CallbackUrl::parse`](crate::jobs::CallbackUrl::parse)), and on every address
//! a host name resolves to when the callback is sent ([`PublicOnlyResolver`]), so that a name
//! that resolves to this machine or a private network is never contacted.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use crate::jobs::request::CallbackPolicy;

/// Whether `ip` is an address on the public internet: not this machine, not a private,
/// shared (carrier-grade NAT), link-local, multicast, documentation or reserved range, and not
/// one of those in IPv6 clothing (IPv4-mapped, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network", including the unspecified address
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved and broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    // IPv4 addresses carried inside IPv6 reach the IPv4 address: judge that one.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let embedded = |high: u16, low: u16| Ipv4Addr::from(((high as u32) << 16) | low as u32);
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(segments[6], segments[7])); // NAT64
    }
    if segments[0] == 0x2002 {
        return is_public_v4(embedded(segments[1], segments[2])); // 6to4
    }
    let refused = segments[..6] == [0; 6] // unspecified, loopback, IPv4-compatible
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed locally)
        || (segments[0] & 0xff00) == 0xff00 // multicast
        || segments[..4] == [0x100, 0, 0, 0] // discard-only
        || segments[..2] == [0x2001, 0xdb8] // documentation
        || segments[..2] == [0x2001, 0]; // Teredo: an IPv4 address in disguise
    !refused
}

/// Whether a host name (as written in a URL, already lower-cased by the URL parser) names this
/// machine: `localhost` and its subdomains (RFC 6761), with or without the trailing dot of a
/// fully qualified name.
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost")
}

/// Looks a host name up; injectable so tests can make any name resolve anywhere.
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> + Send + Sync,
>;

/// The system resolver, through tokio.
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|address| address.ip())
                .collect())
        })
    })
}

/// Why a callback host was not connected to.
#[derive(Debug, thiserror::Error)]
pub enum RefusedHost {
    #[error("the callback host resolves to a local or private address")]
    NotPublic,
    #[error("the callback host does not resolve")]
    Unresolved(#[source] io::Error),
}

/// The callback client's DNS resolver: every address a name resolves to must be public, or
/// the connection is not made at all (checking only the first address would let a name that
/// answers with one public and one private address through, and the connector tries them in
/// turn). Under [`CallbackPolicy::AllowLocal`], `localhost` resolves to `127.0.0.1` and nothing
/// else.
#[derive(Clone)]
pub struct PublicOnlyResolver {
    policy: CallbackPolicy,
    lookup: Lookup,
}

impl PublicOnlyResolver {
    pub fn new(policy: CallbackPolicy, lookup: Lookup) -> Self {
        Self { policy, lookup }
    }

    /// The addresses `host` may be reached at, or why it may not be reached.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, RefusedHost> {
        if self.policy == CallbackPolicy::AllowLocal && host.eq_ignore_ascii_case("localhost") {
            return Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        }
        if is_localhost_name(host) {
            return Err(RefusedHost::NotPublic);
        }
        let addresses = (self.lookup)(host.to_owned())
            .await
            .map_err(RefusedHost::Unresolved)?;
        if addresses.is_empty() {
            return Err(RefusedHost::Unresolved(io::Error::new(
                io::ErrorKind::NotFound,
                "no addresses",
            )));
        }
        if !addresses.iter().all(|ip| is_public(*ip)) {
            return Err(RefusedHost::NotPublic);
        }
        Ok(addresses)
    }
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = this.addresses(&host).await.map_err(|refused| {
                tracing::warn!(reason = %refused, "callback host refused");
                Box::new(refused) as Box<dyn std::error::Error + Send + Sync>
            })?;
            let sockets: reqwest::dns::Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(sockets)
        })
    }
}

#[cfg(test)]
mod tests;
