//! The guard that keeps a tenant's webhook from pointing the control plane
//! at the platform's own network (metadata service, database, other
//! services): a URL is accepted only if its host is public.
//!
//! It judges the URL's text alone: names are not resolved, so DNS that
//! points a public name inside is not caught, nor is a redirect (delivery
//! follows none).

use std::net::IpAddr;

/// Whether `url` names a host outside loopback, private, link-local and
/// other non-public ranges (by IP literal or a local-only name).
pub fn is_public_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => is_public_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_public_ip(IpAddr::V6(ip)),
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

fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| !is_public_ip(IpAddr::V4(v4))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_public_url;

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
        ] {
            assert!(!is_public_url(url), "{url}");
        }
        for url in ["https://hooks.example.com/polybot", "https://8.8.8.8/x"] {
            assert!(is_public_url(url), "{url}");
        }
    }
}
