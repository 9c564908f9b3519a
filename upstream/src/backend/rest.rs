//! Discovery for REST upstreams: declared tools (`rest`) are listed as written; an OpenAPI
//! upstream's document is fetched (or taken inline) at every listing and converted (see
//! `switchboard_config::openapi`). Liveness is an HTTP answer, any status, from the API's
//! base URL. A REST API gives no word of changes: the refresh interval lists again.

use super::{Changes, Checked, Discovery, Listing};
use crate::body::{success_body, within};
use crate::client::{McpHttp, UpstreamError};
use crate::credentials::Credentials;
use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;
use switchboard_config::kinds::rest::RestUpstream;
use switchboard_config::kinds::upstream::OpenApiUpstream;
use switchboard_config::Catalog;

/// Largest OpenAPI document read.
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// What a REST upstream is described by.
#[derive(Debug, Clone)]
pub enum Described {
    Declared(RestUpstream),
    OpenApi(OpenApiUpstream),
}

/// Keeps a REST or OpenAPI upstream's catalog.
pub struct RestDiscovery {
    http: McpHttp,
    described: Described,
    creds: Credentials,
    timeout: Duration,
    /// The base URL of the last listing (liveness checks it).
    base_url: Option<String>,
}

impl RestDiscovery {
    pub fn new(
        http: McpHttp,
        described: Described,
        creds: Credentials,
        timeout: Duration,
    ) -> RestDiscovery {
        let base_url = match &described {
            Described::Declared(r) => Some(r.base_url.clone()),
            Described::OpenApi(o) => o.base_url.clone(),
        };
        RestDiscovery {
            http,
            described,
            creds,
            timeout,
            base_url,
        }
    }
}

/// An OpenAPI document from `url` (http, https or a file on this machine), as JSON or YAML.
pub async fn fetch_document(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<Value, UpstreamError> {
    let refused = |reason: String| UpstreamError::Unusable {
        url: url.to_string(),
        reason,
    };
    let bytes = if url.starts_with("file:") {
        let path = url::Url::parse(url)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| refused("not a file path on this machine".into()))?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| refused(format!("cannot read the OpenAPI document: {e}")))?;
        // Read at most one byte past the limit (a device or a huge file is refused, not
        // read whole).
        let mut read = Vec::new();
        use tokio::io::AsyncReadExt;
        file.take(MAX_DOCUMENT_BYTES as u64 + 1)
            .read_to_end(&mut read)
            .await
            .map_err(|e| refused(format!("cannot read the OpenAPI document: {e}")))?;
        if read.len() > MAX_DOCUMENT_BYTES {
            return Err(refused(format!(
                "the OpenAPI document is larger than {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        bytes::Bytes::from(read)
    } else {
        within(url, timeout, async {
            let resp = http
                .get(url)
                .header(
                    "accept",
                    "application/json, application/yaml;q=0.9, */*;q=0.5",
                )
                .send()
                .await
                .map_err(|e| UpstreamError::unreachable(url, &e))?;
            success_body(resp, url, MAX_DOCUMENT_BYTES).await
        })
        .await?
    };
    parse_document(&bytes).map_err(refused)
}

/// A document's bytes as JSON or YAML.
pub fn parse_document(bytes: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Ok(v),
        Err(json) => serde_yaml::from_slice::<Value>(bytes).map_err(|yaml| {
            format!("the OpenAPI document is neither JSON ({json}) nor YAML ({yaml})")
        }),
    }
}

#[async_trait]
impl Discovery for RestDiscovery {
    async fn list(&mut self) -> Result<Listing, UpstreamError> {
        let (tools, bindings, protocol_version) = match &self.described {
            Described::Declared(rest) => {
                let (tools, bindings) = rest.bindings();
                (tools, bindings, "rest".to_string())
            }
            Described::OpenApi(api) => {
                let doc = match (&api.spec, &api.spec_url) {
                    (Some(doc), _) => doc.clone(),
                    (None, Some(url)) => {
                        let http = self.http.http_for(&self.creds)?;
                        fetch_document(&http, url, self.timeout).await?
                    }
                    (None, None) => {
                        return Err(UpstreamError::CatalogRefused {
                            reason: "no OpenAPI document: set specUrl or spec".into(),
                        })
                    }
                };
                let converted =
                    switchboard_config::openapi::convert(&doc, api, api.spec_url.as_deref())
                        .map_err(|e| UpstreamError::CatalogRefused {
                            reason: format!("the OpenAPI document cannot be used: {e}"),
                        })?;
                for skipped in &converted.skipped {
                    tracing::info!(operation = %skipped, "OpenAPI operation left out");
                }
                (converted.tools, converted.bindings, converted.version)
            }
        };
        self.base_url = Some(bindings.base_url.clone());
        let catalog = Catalog {
            protocol_version: protocol_version.clone(),
            tools,
            rest: Some(bindings),
            ..Catalog::default()
        };
        Listing {
            catalog,
            protocol_version,
        }
        .checked()
    }

    async fn check(&mut self, limit: Duration) -> Result<Checked, UpstreamError> {
        let Some(url) = self.base_url.clone() else {
            return Ok(Checked::Relist);
        };
        let http = self.http.http_for(&self.creds)?;
        // Any answer, whatever its status, says the API is there.
        within(&url, limit, async {
            http.get(&url)
                .send()
                .await
                .map_err(|e| UpstreamError::unreachable(&url, &e))
        })
        .await
        .map(|_| Checked::Alive)
    }

    fn changes(&mut self) -> Option<Changes> {
        None
    }

    fn reset(&mut self) {}
}
