//! Origin and Host checks against DNS rebinding and cross-site requests from browsers, for
//! every MCP listener: the data plane's and the stdio bridge's. A
//! request with an `Origin` is refused (403) unless the origin is allowed: listed in
//! `--allowed-origins`, or, with no list, a loopback host or a host a virtual server claims
//! (`hosts`). An origin on "the same host as the request" is not enough: under DNS rebinding
//! the attacker's page names its own domain in both `Origin` and `Host`. On a loopback
//! listener the `Host` must also name this machine (or a host a virtual server claims), so a
//! web page whose domain resolves to 127.0.0.1 cannot reach it.

/// What this listener accepts.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Exact origins (`https://app.example.com`), or `*` for any.
    pub allowed_origins: Vec<String>,
    /// The listener is on a loopback address: check `Host` too.
    pub loopback: bool,
}

/// The host part of a `Host` header or an origin's authority (no port, no brackets).
fn host_of(authority: &str) -> &str {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl OriginPolicy {
    /// Why the request must be refused, if it must.
    pub fn check(
        &self,
        origin: Option<&str>,
        host: Option<&str>,
        claimed: &dyn Fn(&str) -> bool,
    ) -> Result<(), String> {
        let host = host.map(host_of);
        if self.loopback {
            match host {
                Some(h) if is_loopback(h) || claimed(h) => {}
                Some(h) => {
                    return Err(format!(
                        "Host `{h}` is not this machine; refused (DNS-rebinding protection on a loopback listener)"
                    ))
                }
                None => return Err("a Host header is required".into()),
            }
        }
        let Some(origin) = origin.filter(|o| *o != "null") else {
            return match origin {
                Some(_) if !self.allowed_origins.iter().any(|a| a == "*") => {
                    Err("Origin `null` is not allowed".into())
                }
                _ => Ok(()),
            };
        };
        if self.allowed_origins.iter().any(|a| a == "*" || a == origin) {
            return Ok(());
        }
        if self.allowed_origins.is_empty() {
            let origin_host = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest.split('/').next().unwrap_or(rest));
            let origin_host = host_of(origin_host);
            if is_loopback(origin_host) || claimed(origin_host) {
                return Ok(());
            }
        }
        Err(format!(
            "Origin `{origin}` is not allowed (list it in --allowed-origins)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listeners_refuse_foreign_hosts_and_origins() {
        let p = OriginPolicy {
            allowed_origins: vec![],
            loopback: true,
        };
        let none = |_: &str| false;
        assert!(p.check(None, Some("127.0.0.1:8080"), &none).is_ok());
        assert!(p.check(None, Some("localhost"), &none).is_ok());
        assert!(p.check(None, Some("[::1]:8080"), &none).is_ok());
        assert!(p.check(None, Some("evil.example:8080"), &none).is_err());
        assert!(p
            .check(None, Some("mcp.example"), &|h| h == "mcp.example")
            .is_ok());
        assert!(p
            .check(Some("http://localhost:3000"), Some("127.0.0.1:8080"), &none)
            .is_ok());
        assert!(p
            .check(Some("https://evil.example"), Some("127.0.0.1:8080"), &none)
            .is_err());
        assert!(p
            .check(Some("null"), Some("127.0.0.1:8080"), &none)
            .is_err());
    }

    #[test]
    fn listed_origins_and_claimed_hosts_pass_elsewhere() {
        let open = OriginPolicy::default();
        let none = |_: &str| false;
        // DNS rebinding: the page's own domain in Origin and Host alike.
        assert!(open
            .check(
                Some("http://rebound.example:8080"),
                Some("rebound.example:8080"),
                &none
            )
            .is_err());
        assert!(open
            .check(Some("https://gw.example"), Some("gw.example"), &|h| h
                == "gw.example")
            .is_ok());
        assert!(open
            .check(Some("https://evil.example"), Some("gw.example"), &none)
            .is_err());
        assert!(
            open.check(None, Some("rebound.example"), &none).is_ok(),
            "no browser"
        );
        let listed = OriginPolicy {
            allowed_origins: vec!["https://app.example".into()],
            loopback: false,
        };
        assert!(listed
            .check(Some("https://app.example"), Some("gw.example"), &none)
            .is_ok());
        assert!(listed
            .check(Some("https://gw.example"), Some("gw.example"), &none)
            .is_err());
        let any = OriginPolicy {
            allowed_origins: vec!["*".into()],
            loopback: false,
        };
        assert!(any.check(Some("https://x.example"), None, &none).is_ok());
    }
}
