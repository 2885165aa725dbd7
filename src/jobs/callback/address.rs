//! Which addresses a completion callback may reach, judged twice: on the URL's text when a job
//! is submitted ([`CallbackUrl::parse`](super::url::CallbackUrl::parse)), and on every address
//! a host name resolves to when the callback is sent ([`PublicOnlyResolver`]), so that a name
//! that resolves to this machine or a private network is never contacted.
//!
//! What counts as public is a table, `address/special_purpose.tsv`: every row of the IANA IPv4
//! and IPv6 special-purpose address registries, the address-space defaults, multicast and
//! Azure's platform addresses, each with what a callback may do there. The tests walk it, so a
//! block that is missing is a row to add, and a rule that is wrong shows at its own row.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

/// Which callback addresses are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackPolicy {
    /// `https` to public hosts only.
    PublicHttps,
    /// Also `http`/`https` to `127.0.0.1` and `localhost`, and nothing else local or private
    /// (`ALLOW_INSECURE_CALLBACKS`, for local use).
    AllowLocal,
}

/// Whether `ip` is an address on the public internet, by the most specific block of
/// `address/special_purpose.tsv` that contains it: not this machine, not a private,
/// shared (carrier-grade NAT), link-local, multicast, documentation or reserved range, not a
/// protocol's anycast service, not Azure's platform addresses, and not one of those in IPv6
/// clothing (IPv4-mapped, NAT64, 6to4), whose IPv4 address is judged instead.
pub fn is_public(ip: IpAddr) -> bool {
    let table = special_purpose();
    match ip {
        IpAddr::V4(v4) => table.v4(v4) == Callback::Allow,
        IpAddr::V6(v6) => match table.v6(v6) {
            Callback::Allow => true,
            Callback::Refuse => false,
            Callback::Embedded(v4) => table.v4(v4) == Callback::Allow,
        },
    }
}

/// Every block with a rule of its own: the IANA IPv4 and IPv6 special-purpose address
/// registries row for row, the address-space defaults, multicast, and Azure's platform
/// addresses. A table rather than code, so that the next gap is a missing row, not a missing
/// idea; the file's header says how to read and extend it.
const SPECIAL_PURPOSE: &str = include_str!("address/special_purpose.tsv");

/// What a block's addresses are to a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callback {
    Allow,
    Refuse,
    /// The IPv4 address this IPv6 address carries, to be judged in its stead.
    Embedded(Ipv4Addr),
}

/// The `callback` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Allow,
    Refuse,
    /// The IPv4 address in the 32 bits after the prefix: the low 32 bits of a /96
    /// (IPv4-mapped, NAT64), bits 16 to 47 of 6to4's /16.
    Embedded,
}

/// The `reachable` column: what the registry says of the block, or that it says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reachable {
    True,
    False,
    NotApplicable,
    /// A terminated row, whose cells are empty.
    Deprecated,
    /// Not a row of the special-purpose registries.
    Unlisted,
}

/// One row of the table. The registry's columns are kept for the tests, which hold the rules
/// against them.
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))]
struct Block {
    /// The network, IPv4 addresses in the low 32 bits.
    network: u128,
    /// 32 for IPv4, 128 for IPv6.
    bits: u32,
    length: u32,
    rule: Rule,
    reachable: Reachable,
    name: String,
    source: String,
}

impl Block {
    fn mask(&self) -> u128 {
        let all = u128::MAX >> (128 - self.bits);
        if self.length == 0 {
            0
        } else {
            all & (all << (self.bits - self.length))
        }
    }

    fn contains(&self, address: u128) -> bool {
        address & self.mask() == self.network
    }

    fn parse(line: &str) -> Result<Self, String> {
        let fields: Vec<&str> = line.split('\t').collect();
        let [prefix, rule, reachable, name, _reference, source] = fields[..] else {
            return Err(format!("{} fields, expected 6", fields.len()));
        };
        let (address, length) = prefix
            .split_once('/')
            .ok_or_else(|| format!("{prefix:?} has no /length"))?;
        let (network, bits) = match address
            .parse::<IpAddr>()
            .map_err(|_| format!("{address:?} is not an address"))?
        {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let length: u32 = length
            .parse()
            .ok()
            .filter(|length| *length <= bits)
            .ok_or_else(|| format!("{prefix:?}: the length is not 0 to {bits}"))?;
        let rule = match rule {
            "allow" => Rule::Allow,
            "refuse" => Rule::Refuse,
            "embedded" if bits == 128 && length <= 96 => Rule::Embedded,
            _ => {
                return Err(format!(
                    "{prefix:?}: {rule:?} is not a callback rule for it"
                ))
            }
        };
        let reachable = match reachable {
            "True" => Reachable::True,
            "False" => Reachable::False,
            "N/A" => Reachable::NotApplicable,
            "deprecated" => Reachable::Deprecated,
            "-" => Reachable::Unlisted,
            _ => return Err(format!("{prefix:?}: {reachable:?} is not a reachability")),
        };
        let block = Self {
            network,
            bits,
            length,
            rule,
            reachable,
            name: name.to_owned(),
            source: source.to_owned(),
        };
        if block.network & !block.mask() != 0 {
            return Err(format!("{prefix:?} has host bits set"));
        }
        Ok(block)
    }
}

/// The table, most specific blocks first, so the first block that contains an address is the
/// one that decides.
struct SpecialPurpose {
    blocks: Vec<Block>,
}

impl SpecialPurpose {
    fn parse(text: &str) -> Result<Self, String> {
        let mut blocks: Vec<Block> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let block =
                Block::parse(line).map_err(|error| format!("line {}: {error}", number + 1))?;
            if blocks.iter().any(|seen| {
                (seen.bits, seen.network, seen.length) == (block.bits, block.network, block.length)
            }) {
                return Err(format!(
                    "line {}: a second row for the same block",
                    number + 1
                ));
            }
            blocks.push(block);
        }
        blocks.sort_by_key(|block| std::cmp::Reverse(block.length));
        Ok(Self { blocks })
    }

    /// The most specific block of this family that contains `address`.
    fn block(&self, bits: u32, address: u128) -> Option<&Block> {
        self.blocks
            .iter()
            .find(|block| block.bits == bits && block.contains(address))
    }

    fn v4(&self, ip: Ipv4Addr) -> Callback {
        match self.block(32, u32::from(ip).into()).map(|block| block.rule) {
            Some(Rule::Allow) => Callback::Allow,
            // Nothing matched only if the table lost its default row: fail closed.
            Some(Rule::Refuse | Rule::Embedded) | None => Callback::Refuse,
        }
    }

    fn v6(&self, ip: Ipv6Addr) -> Callback {
        let address = u128::from(ip);
        match self.block(128, address) {
            Some(block) if block.rule == Rule::Allow => Callback::Allow,
            Some(block) if block.rule == Rule::Embedded => {
                let shift = 96 - block.length;
                Callback::Embedded(Ipv4Addr::from((address >> shift) as u32))
            }
            _ => Callback::Refuse,
        }
    }
}

/// The table, read once. It is compiled in, and a unit test reads it, so it cannot fail here.
fn special_purpose() -> &'static SpecialPurpose {
    static TABLE: LazyLock<SpecialPurpose> = LazyLock::new(|| {
        SpecialPurpose::parse(SPECIAL_PURPOSE)
            .unwrap_or_else(|error| panic!("special_purpose.tsv: {error}"))
    });
    &TABLE
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
