//! The client's address, as the sign-in rate limiter counts it and audit entries record it. The
//! only place that computes it: handlers take a [`ClientAddr`].
//!
//! The address is the TCP peer's, unless the peer is one of the configured `trusted_proxies`
//! (`kura.toml`, CIDR blocks; empty by default). Then `X-Forwarded-For` is walked from the right
//! (the entry the nearest proxy appended first): trusted addresses are skipped and the first
//! untrusted one is the client. Everything left of it was written by that client, so a client
//! can never choose its own address. The walk stops at the last trusted address it reached when
//! an entry is not an address, after [`MAX_HOPS`] entries, or when the header ends; a client
//! not behind a trusted proxy is never asked. `Forwarded` (RFC 7239) is not read: common proxies
//! pass it through from the client unchanged, so its right-most entry could be the client's own.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// The header trusted proxies set or append to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// Entries of `X-Forwarded-For` examined at most (a chain of proxies is short).
pub const MAX_HOPS: usize = 16;
/// Longest entry parsed: `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535` is 53.
const MAX_ENTRY: usize = 64;

/// The `trusted_proxies` of `kura.toml`: the proxies whose `X-Forwarded-For` is believed.
/// Parsed when the configuration is read; a value that is not a CIDR block or an address, has
/// bits set after its prefix, or trusts every address (`/0`) is refused, naming it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct TrustedProxies(Vec<IpNet>);

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;

    fn try_from(values: Vec<String>) -> Result<Self, String> {
        values
            .iter()
            .map(|v| parse_block(v))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

/// One block: `10.0.0.0/8`, `2001:db8::/32`, or an address alone (`/32`, `/128`).
fn parse_block(value: &str) -> Result<IpNet, String> {
    let text = value.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(format!(
                    "trusted_proxies: {value:?} is not a CIDR block or an IP address \
                     (e.g. \"10.0.0.0/8\", \"2001:db8::/32\", \"127.0.0.1\")"
                ))
            }
        },
    };
    if net.prefix_len() == 0 {
        return Err(format!(
            "trusted_proxies: {value:?} trusts every address: any client could then choose its \
             own address with X-Forwarded-For; list the proxies' addresses"
        ));
    }
    if net != net.trunc() {
        return Err(format!(
            "trusted_proxies: {value:?} has bits set after its prefix: write {} (the block) \
             or the address alone",
            net.trunc()
        ));
    }
    if let IpNet::V6(v6) = net {
        if v6.network().to_ipv4_mapped().is_some() {
            return Err(format!(
                "trusted_proxies: {value:?} is an IPv4-mapped IPv6 block: write the IPv4 block \
                 (Kura compares IPv4 clients as IPv4)"
            ));
        }
    }
    Ok(net)
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The configured blocks, as given.
    pub fn blocks(&self) -> &[IpNet] {
        &self.0
    }

    fn trusts(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client's address for a request from `peer` with these headers (the module's rule).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut current = peer.to_canonical();
        if !self.trusts(&current) {
            return current;
        }
        let mut hops = 0;
        // Several header lines are one list, in order: walk the last line first.
        for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            let Ok(text) = line.to_str() else {
                return current;
            };
            for entry in text.rsplit(',') {
                hops += 1;
                if hops > MAX_HOPS {
                    return current;
                }
                let Some(ip) = parse_entry(entry) else {
                    return current;
                };
                current = ip;
                if !self.trusts(&ip) {
                    return ip;
                }
            }
        }
        current
    }
}

/// An `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`) or
/// in brackets (`[::1]`); IPv4-mapped IPv6 is taken as IPv4. Anything else (`unknown`, an
/// obfuscated RFC 7239 name, a zone id, an empty entry) is None.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let s = entry.trim_matches([' ', '\t']);
    if s.is_empty() || s.len() > MAX_ENTRY {
        return None;
    }
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// The calling client's address (see the module comment); `.0.to_string()` is what audit
/// entries record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| ApiError::Internal("the connection's address is unknown".into()))?;
        Ok(ClientAddr(
            app.config.trusted_proxies.client_ip(peer, &parts.headers),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies::try_from(blocks.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(
                X_FORWARDED_FOR,
                HeaderValue::from_str(l).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    const CLIENT: &str = "203.0.113.5";

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        let h = xff(&["198.51.100.7"]);
        assert_eq!(none.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn a_client_not_behind_a_trusted_proxy_cannot_choose_its_address() {
        let p = proxies(&["10.0.0.0/8"]);
        // A direct client claims to be someone else, and to come through the proxy.
        for header in ["198.51.100.7", "198.51.100.7, 10.0.0.2", "10.0.0.2"] {
            let got = p.client_ip(ip(CLIENT), &xff(&[header]));
            assert_eq!(got, ip(CLIENT), "{header}");
        }
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "192.0.2.10"]);
        // nginx's $proxy_add_x_forwarded_for: whatever the client sent, then its address.
        let h = xff(&["198.51.100.7, 10.9.9.9, 203.0.113.5"]);
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &h),
            ip(CLIENT),
            "the client's own entries (even one naming a trusted proxy) are left of it"
        );
        // Two proxies: the inner one appended the outer one's address.
        let h = xff(&["203.0.113.5, 192.0.2.10"]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip(CLIENT));
        // Several header lines are one list in order.
        let h = xff(&["198.51.100.7", "203.0.113.5", "192.0.2.10"]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip(CLIENT));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_itself_the_client() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // Only trusted hops: the left-most one reached.
        let h = xff(&["10.0.0.3, 10.0.0.2"]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.3"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        for (header, want) in [
            ("unknown", "10.0.0.1"),
            ("", "10.0.0.1"),
            ("203.0.113.5,", "10.0.0.1"),
            ("203.0.113.5, garbage, 10.0.0.2", "10.0.0.2"),
            ("203.0.113.5, 10.0.0.2 10.0.0.3", "10.0.0.1"),
            ("203.0.113.5, _hidden", "10.0.0.1"),
            ("203.0.113.5, fe80::1%eth0", "10.0.0.1"),
            ("203.0.113.5, 999.1.1.1", "10.0.0.1"),
            ("203.0.113.5, 10.0.0.0/8", "10.0.0.1"),
            ("garbage, 203.0.113.5", CLIENT),
        ] {
            assert_eq!(p.client_ip(peer, &xff(&[header])), ip(want), "{header:?}");
        }
        // A line that is not visible ASCII is garbage too.
        let mut h = xff(&["203.0.113.5"]);
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes("203.0.113.6\u{e9}".as_bytes()).unwrap(),
        );
        assert_eq!(p.client_ip(peer, &h), peer);
    }

    #[test]
    fn ipv6_ports_brackets_and_whitespace() {
        let p = proxies(&["2001:db8:a::/48", "10.0.0.0/8"]);
        let peer = ip("2001:db8:a::1");
        for (header, want) in [
            ("2001:db8:ff::7", "2001:db8:ff::7"),
            ("[2001:db8:ff::7]", "2001:db8:ff::7"),
            ("[2001:db8:ff::7]:4431", "2001:db8:ff::7"),
            ("203.0.113.5:4431", CLIENT),
            ("\t 203.0.113.5  ", CLIENT),
            ("203.0.113.5,2001:db8:a::2", CLIENT),
            ("::ffff:203.0.113.5", CLIENT),
            ("2001:db8:ff::7 , 10.0.0.2 ,2001:db8:a::2", "2001:db8:ff::7"),
        ] {
            assert_eq!(p.client_ip(peer, &xff(&[header])), ip(want), "{header:?}");
        }
        // A dual-stack listener sees an IPv4 proxy as IPv4-mapped IPv6: still trusted.
        let h = xff(&[CLIENT]);
        assert_eq!(p.client_ip(ip("::ffff:10.0.0.1"), &h), ip(CLIENT));
        // And an untrusted mapped peer is recorded as IPv4.
        assert_eq!(
            p.client_ip(ip("::ffff:198.51.100.7"), &h),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn long_headers_cost_little_and_choose_nothing() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        // Thousands of client-written entries, then the proxy's: the proxy's entry wins.
        let mut long = vec!["198.51.100.7"; 5000].join(", ");
        long.push_str(", 203.0.113.5");
        assert_eq!(p.client_ip(peer, &xff(&[&long])), ip(CLIENT));
        // One huge entry is garbage, not parsed.
        let huge = "1".repeat(100_000);
        assert_eq!(p.client_ip(peer, &xff(&[&huge])), peer);
        // More trusted hops than MAX_HOPS: the walk stops at the last one examined, never
        // reaching the client-written entry beyond.
        let mut hops: Vec<String> = vec!["198.51.100.7".into()];
        hops.extend((1..=MAX_HOPS + 4).rev().map(|i| format!("10.0.1.{i}")));
        let got = p.client_ip(peer, &xff(&[&hops.join(",")]));
        assert_eq!(got, ip(&format!("10.0.1.{MAX_HOPS}")));
    }

    #[test]
    fn blocks_are_checked_when_the_configuration_is_read() {
        let c: crate::config::ServerConfig = toml::from_str(
            "trusted_proxies = [\"10.0.0.0/8\", \" 127.0.0.1 \", \"2001:db8::/32\", \"::1\"]",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown: Vec<String> = c
            .trusted_proxies
            .blocks()
            .iter()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(
            shown,
            ["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32", "::1/128"]
        );
        let empty: crate::config::ServerConfig =
            toml::from_str("").unwrap_or_else(|e| panic!("{e}"));
        assert!(empty.trusted_proxies.is_empty(), "none by default");
        for bad in [
            "10.0.0/8",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "0.0.0.0/0",
            "::/0",
            "localhost",
            "::ffff:10.0.0.0/104",
            "",
        ] {
            let text = format!("trusted_proxies = [\"127.0.0.1\", {bad:?}]");
            match toml::from_str::<crate::config::ServerConfig>(&text) {
                Ok(_) => panic!("{bad:?} was accepted"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
                    assert!(e.contains("trusted_proxies"), "{bad:?}: {e}");
                }
            }
        }
        assert!(
            toml::from_str::<crate::config::ServerConfig>("trusted_proxies = \"10.0.0.0/8\"")
                .is_err(),
            "a list, not a string"
        );
    }
}
