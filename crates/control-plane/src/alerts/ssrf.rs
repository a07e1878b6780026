//! The guard that keeps a webhook from pointing the control plane at the
//! platform's own network (metadata service, database, other services).
//!
//! Two checks: when a channel is saved, [`is_public_url`] refuses a URL whose
//! literal host is not public (an early, named 422); at delivery,
//! [`resolve_target`] resolves the host through a [`Resolve`] and refuses it
//! unless *every* address is globally routable ([`is_global`]). Delivery then
//! connects to exactly the addresses that were checked (the notifier pins
//! them), so a DNS answer that changes between the check and the connection
//! (rebinding) cannot redirect it; redirects are not followed.
//!
//! Building the HTTP request is not here (`notify` does it).

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;

/// The longest webhook URL a channel may hold.
pub const MAX_URL_LEN: usize = 2048;

/// Resolves a host name to addresses. Production uses [`SystemResolver`];
/// tests inject fixed answers.
pub trait Resolve: Send + Sync + fmt::Debug {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// Which addresses delivery may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// Only globally routable addresses: what the control plane always uses.
    Global,
    /// Any address. Only for tests whose receivers listen on loopback; no
    /// flag or variable selects it.
    AnyAddress,
}

/// A webhook's host, resolved and checked: connect only to `addrs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedTarget {
    /// The URL's host name; `None` when the URL holds an IP literal (no
    /// resolution, nothing to pin).
    pub domain: Option<String>,
    pub addrs: Vec<SocketAddr>,
}

/// Resolves `url`'s host and checks every address against `targets`. The
/// error says why, without the URL (it may hold a token).
pub async fn resolve_target(
    url: &reqwest::Url,
    resolver: &dyn Resolve,
    targets: Targets,
) -> Result<CheckedTarget, String> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "the webhook URL has no port".to_owned())?;
    let (domain, addrs) = match url.host() {
        Some(url::Host::Ipv4(ip)) => (None, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        Some(url::Host::Ipv6(ip)) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Some(url::Host::Domain(name)) => {
            let addrs = resolver
                .resolve(name, port)
                .await
                .map_err(|e| format!("the webhook host does not resolve ({e})"))?;
            (Some(name.to_owned()), addrs)
        }
        None => return Err("the webhook URL has no host".to_owned()),
    };
    if addrs.is_empty() {
        return Err("the webhook host resolves to no address".to_owned());
    }
    if targets == Targets::Global
        && let Some(bad) = addrs.iter().find(|a| !is_global(a.ip()))
    {
        return Err(format!(
            "the webhook host resolves to {}, which is not a public address",
            bad.ip()
        ));
    }
    Ok(CheckedTarget { domain, addrs })
}

/// Whether `url` names a host outside loopback, private, link-local and
/// other non-public ranges (by IP literal or a local-only name). The save-time
/// check: names are judged by their text here, and resolved at delivery.
pub fn is_public_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => is_global(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_global(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            !(name == "localhost"
                || name.ends_with(".localhost")
                || name.ends_with(".local")
                || name.ends_with(".internal")
                || !name.contains('.'))
        }
        None => false,
    }
}

/// Whether `ip` is globally routable: not in any special-purpose range of
/// the IANA IPv4 and IPv6 registries. IPv6 forms that embed or tunnel to an
/// IPv4 address (IPv4-compatible, NAT64, 6to4, Teredo) are refused outright,
/// because where they lead depends on a gateway's network; IPv4-mapped
/// addresses are judged by the IPv4 address they hold.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_global_v4(v4),
            None => is_global_v6(v6),
        },
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                  // "this network"
        || a == 10                            // private
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || a == 127                           // loopback
        || (a == 169 && b == 254)             // link-local (cloud metadata)
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)     // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)     // documentation
        || (a == 192 && b == 88 && c == 99)   // 6to4 relay anycast
        || (a == 192 && b == 168)             // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100)  // documentation
        || (a == 203 && b == 0 && c == 113)   // documentation
        || a >= 224) // multicast, reserved 240/4, broadcast
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Global unicast is 2000::/3; everything else (loopback, unspecified,
    // IPv4-compatible ::/96, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, discard
    // 100::/64, unique local fc00::/7, link-local fe80::/10, site-local
    // fec0::/10, multicast ff00::/8) is outside it.
    let global_unicast = s[0] & 0xe000 == 0x2000;
    // 2001::/23: IETF protocol assignments (Teredo 2001::/32, ORCHID, …).
    let protocol_assignments = s[0] == 0x2001 && s[1] < 0x0200;
    let documentation = (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] & 0xfff0) == 0x3ff0;
    let six_to_four = s[0] == 0x2002;
    global_unicast && !protocol_assignments && !documentation && !six_to_four
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_into_the_platforms_own_network_are_not_public() {
        for url in [
            "http://127.0.0.1/hook",
            "http://localhost:8080/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.5/",
            "http://192.168.1.1/",
            "http://172.16.0.1/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://metadata.google.internal/",
            "http://db/",
            "http://100.64.0.1/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://198.18.0.1/",
            "http://240.0.0.1/",
        ] {
            assert!(!is_public_url(url), "{url}");
        }
        for url in ["https://hooks.example.com/polybot", "https://8.8.8.8/x"] {
            assert!(is_public_url(url), "{url}");
        }
    }

    #[test]
    fn every_reserved_range_and_embedded_form_is_refused() {
        let refused = [
            ("0.0.0.0", "this network"),
            ("0.1.2.3", "this network"),
            ("10.1.2.3", "private"),
            ("100.64.0.1", "shared address space"),
            ("100.127.255.254", "shared address space"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("169.254.169.254", "link-local (metadata)"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "IETF protocol assignments"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4 relay anycast"),
            ("192.168.0.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
            ("::ffff:169.254.169.254", "IPv4-mapped metadata"),
            ("::ffff:10.0.0.1", "IPv4-mapped private"),
            ("::127.0.0.1", "IPv4-compatible loopback"),
            ("::8.8.8.8", "IPv4-compatible (deprecated)"),
            ("64:ff9b::7f00:1", "NAT64 of loopback"),
            ("64:ff9b::808:808", "NAT64 (reaches through a gateway)"),
            ("64:ff9b:1::a00:1", "local-use NAT64"),
            ("2002:7f00:1::1", "6to4 of loopback"),
            ("2002:808:808::1", "6to4"),
            ("2001:0:4136:e378::1", "Teredo"),
            ("2001:10::1", "ORCHID"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("100::1", "discard"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "multicast"),
        ];
        for (ip, why) in refused {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(!is_global(parsed), "{ip} ({why}) must be refused");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.254",
            "::ffff:8.8.8.8",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(is_global(parsed), "{ip} is public");
        }
    }

    #[derive(Debug)]
    struct Fixed(Vec<IpAddr>);

    impl Resolve for Fixed {
        fn resolve<'a>(
            &'a self,
            _host: &'a str,
            port: u16,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>> {
            let addrs = self.0.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
            Box::pin(async move { Ok(addrs) })
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn a_name_is_refused_unless_every_address_it_resolves_to_is_public() {
        let url = reqwest::Url::parse("https://hooks.example.com/polybot").unwrap();
        let one_inside = Fixed(vec![ip("8.8.8.8"), ip("127.0.0.1")]);
        let err = resolve_target(&url, &one_inside, Targets::Global)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "the webhook host resolves to 127.0.0.1, which is not a public address"
        );
        let none = Fixed(vec![]);
        assert_eq!(
            resolve_target(&url, &none, Targets::Global)
                .await
                .unwrap_err(),
            "the webhook host resolves to no address"
        );
        let public = Fixed(vec![ip("8.8.8.8"), ip("2606:4700:4700::1111")]);
        let checked = resolve_target(&url, &public, Targets::Global)
            .await
            .unwrap();
        assert_eq!(checked.domain.as_deref(), Some("hooks.example.com"));
        assert_eq!(
            checked.addrs,
            vec![
                "8.8.8.8:443".parse().unwrap(),
                "[2606:4700:4700::1111]:443".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn localhost_through_the_system_resolver_is_refused() {
        let url = reqwest::Url::parse("http://localhost:9/hook").unwrap();
        let err = resolve_target(&url, &SystemResolver, Targets::Global)
            .await
            .unwrap_err();
        assert!(err.contains("is not a public address"), "{err}");
    }
}
