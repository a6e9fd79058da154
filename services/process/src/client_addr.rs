//! Which address a request came from, for throttling and logs: the TCP
//! peer, unless the peer is a proxy we trust (by default only loopback),
//! in which case the address that proxy put last in `X-Forwarded-For`.
//!
//! The last hop, not the first: the edge proxy appends the address it saw
//! to whatever `X-Forwarded-For` the client sent, so only the entry it
//! added is true; a client can write anything before it.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// The peers whose `X-Forwarded-For` is believed: addresses or networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl Default for TrustedProxies {
    /// Loopback only: `127.0.0.0/8, ::1/128`.
    fn default() -> Self {
        "127.0.0.0/8,::1/128".parse().expect("a valid default")
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of addresses (`172.18.0.1`) or networks
    /// (`172.16.0.0/12`); empty for none.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "{item:?} is neither an address nor a network: write them as \
                             127.0.0.1 or 172.16.0.0/12, separated by commas"
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl TrustedProxies {
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|net| net.contains(&peer))
    }

    /// The client's address: `peer`, or, when `peer` is trusted, the last
    /// valid address in `forwarded_for`.
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer.to_canonical();
        }
        forwarded_for
            .and_then(|value| value.rsplit(',').next())
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
            .map_or(peer, |ip| ip.to_canonical())
    }

    /// The client's address for a poem request; `None` when it came over
    /// a unix socket and carries no trusted `X-Forwarded-For`.
    pub fn client_of(&self, req: &poem::Request) -> Option<IpAddr> {
        let forwarded_for = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        req.remote_addr()
            .as_socket_addr()
            .map(|peer| self.client(peer.ip(), forwarded_for))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = TrustedProxies::default();
        assert_eq!(
            trusted.client(ip("192.0.2.7"), Some("10.0.0.1")),
            ip("192.0.2.7")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_client_in_its_last_hop() {
        let trusted = TrustedProxies::default();
        assert_eq!(
            trusted.client(ip("127.0.0.1"), Some("6.6.6.6, 192.0.2.7")),
            ip("192.0.2.7")
        );
        assert_eq!(trusted.client(ip("::1"), None), ip("::1"));
        assert_eq!(
            trusted.client(ip("127.0.0.1"), Some("garbage")),
            ip("127.0.0.1")
        );
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), Some("192.0.2.7")),
            ip("192.0.2.7"),
            "an IPv4-mapped loopback peer is loopback"
        );
    }

    #[test]
    fn networks_and_addresses_parse_and_mistakes_are_named() {
        let trusted: TrustedProxies = "172.16.0.0/12, 10.1.2.3".parse().unwrap();
        assert!(trusted.trusts(ip("172.18.0.1")));
        assert!(trusted.trusts(ip("10.1.2.3")));
        assert!(!trusted.trusts(ip("127.0.0.1")));
        let none: TrustedProxies = "".parse().unwrap();
        assert!(!none.trusts(ip("127.0.0.1")));
        let error = "10.0.0.0/99".parse::<TrustedProxies>().unwrap_err();
        assert!(error.contains("10.0.0.0/99"), "{error}");
    }
}
