//! Pass-through servers: one upstream proxied as-is by pingora.

use super::*;

/// Where a pass-through request goes; decided in `request_filter`, used by pingora's proxy.
pub struct PassTarget {
    pub(super) addr: std::net::SocketAddr,
    pub(super) tls: bool,
    /// Host header (and SNI) for the upstream.
    pub(super) host: String,
    pub(super) path_and_query: String,
    /// Client headers that must not reach the upstream.
    pub(super) drop_headers: Vec<String>,
    /// Set on the upstream request (after dropping), e.g. the upstream's credentials.
    pub(super) headers: Vec<(String, String)>,
    pub(super) connect: std::time::Duration,
}

impl Gateway {
    /// Resolves a pass-through server's upstream for this request.
    pub(super) async fn pass_target(
        &self,
        routes: &Routes,
        upstream: &str,
        query: Option<&str>,
    ) -> std::result::Result<PassTarget, String> {
        let spec = routes
            .upstream(upstream)
            .ok_or_else(|| format!("upstream `{upstream}` is not in this snapshot"))?;
        if let Some(why) = routes.unhealthy(upstream) {
            return Err(unhealthy_message(upstream, why));
        }
        let mcp = spec
            .mcp
            .as_ref()
            .ok_or_else(|| format!("upstream `{upstream}` is not an MCP-over-HTTP server"))?;
        let url = reqwest::Url::parse(&mcp.url).map_err(|e| format!("upstream URL: {e}"))?;
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("upstream URL `{}` has no port", mcp.url))?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{host}` resolves to no address"))?;
        let mut path_and_query = url.path().to_string();
        if let Some(q) = query.or(url.query()) {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        Ok(PassTarget {
            addr,
            tls: url.scheme() == "https",
            host: host_header,
            path_and_query,
            drop_headers: Vec::new(),
            headers: spec
                .creds
                .current(self.upstreams.http())
                .await
                .map_err(|e| format!("credentials: {e}"))?
                .into_iter()
                .collect(),
            connect: spec
                .timeouts
                .connect
                .unwrap_or(crate::upstreams::DEFAULT_CONNECT_TIMEOUT),
        })
    }
}
