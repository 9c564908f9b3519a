//! Turns YAML files into typed resources, strictly: unknown fields, wrong types and unknown
//! kinds are errors that name the file, document, line and field path.

use crate::diagnostic::Diagnostic;
use crate::object::{Kind, Object, Resource, API_VERSION};
use crate::positions::{index_documents, DocumentSpan, PathIndex};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;

/// Where a parsed resource came from, so later (semantic) errors can point back at it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<str>,
    pub document: usize,
    pub index: Arc<PathIndex>,
}

impl Origin {
    /// A diagnostic about `field` of this resource, positioned when the field (or its nearest
    /// parent) exists in the source.
    pub fn diagnostic(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        let pos = self.index.locate(field);
        Diagnostic {
            file: self.file.to_string(),
            document: Some(self.document),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// A resource and, when it was read from a file, where.
#[derive(Debug, Clone)]
pub struct Located {
    pub resource: Resource,
    pub origin: Option<Origin>,
}

impl Located {
    /// A diagnostic about `field` of this resource (unpositioned for stored resources).
    pub fn diagnostic(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        match &self.origin {
            Some(origin) => origin.diagnostic(field, message),
            None => Diagnostic {
                file: String::new(),
                document: None,
                line: None,
                column: None,
                field: field.to_string(),
                message: format!(
                    "{} (in stored {} `{}`)",
                    message.into(),
                    self.resource.kind(),
                    self.resource.name()
                ),
            },
        }
    }
}

/// Just enough of a document to pick its schema, read leniently.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    api_version: Option<serde_yaml::Value>,
    #[serde(default)]
    kind: Option<serde_yaml::Value>,
}

/// Largest YAML source read (one file, or one apply's text): far beyond any real
/// configuration, and small enough that parsing it cannot exhaust memory.
pub const MAX_SOURCE_BYTES: usize = 16 << 20;

/// Parses every document of one file; returns what parsed and every error found. Sources
/// larger than [`MAX_SOURCE_BYTES`] or nested deeper than
/// [`crate::positions::MAX_NESTING`] are refused before anything walks them.
pub fn parse_source(file: &str, text: &str) -> (Vec<Located>, Vec<Diagnostic>) {
    let file: Arc<str> = Arc::from(file);
    if text.len() > MAX_SOURCE_BYTES {
        let d = Diagnostic {
            file: file.to_string(),
            document: None,
            line: None,
            column: None,
            field: String::new(),
            message: format!(
                "the source is {} bytes; at most {MAX_SOURCE_BYTES} are read",
                text.len()
            ),
        };
        return (Vec::new(), vec![d]);
    }
    let spans = match index_documents(text) {
        Ok(spans) => spans,
        Err(e) => {
            let d = Diagnostic {
                file: file.to_string(),
                document: Some(e.document),
                line: Some(e.position.line),
                column: Some(e.position.column),
                field: String::new(),
                message: format!("YAML syntax error: {}", e.message),
            };
            return (Vec::new(), vec![d]);
        }
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for (doc, span) in spans.iter().enumerate() {
        if !span.has_content {
            continue;
        }
        let end_line = spans
            .get(doc + 1)
            .map(|next| next.start_line.saturating_sub(1))
            .unwrap_or(lines.len());
        let start = span.start_line.saturating_sub(1).min(lines.len());
        let end = end_line.clamp(start, lines.len());
        let doc_text = lines[start..end].join("\n");
        let origin = Origin {
            file: file.clone(),
            document: doc,
            index: Arc::new(span.index.clone()),
        };
        match parse_document(&doc_text, span, &origin) {
            Ok(resource) => parsed.push(Located {
                resource,
                origin: Some(origin),
            }),
            Err(d) => errors.push(d),
        }
    }
    (parsed, errors)
}

fn parse_document(
    text: &str,
    span: &DocumentSpan,
    origin: &Origin,
) -> Result<Resource, Diagnostic> {
    let line_offset = span.start_line.saturating_sub(1);
    let head: Head = serde_yaml::from_str(text).map_err(|e| {
        let mut d = serde_diagnostic(origin, "", &e, line_offset);
        d.message = format!(
            "a resource must be a mapping with apiVersion, kind, metadata and spec ({})",
            d.message
        );
        d
    })?;
    if let Some(v) = &head.api_version {
        if v.as_str() != Some(API_VERSION) {
            return Err(origin.diagnostic(
                "apiVersion",
                format!(
                    "unsupported apiVersion {}, expected `{API_VERSION}`",
                    show(v)
                ),
            ));
        }
    }
    let kind: Kind = match &head.kind {
        None => return Err(origin.diagnostic("kind", "missing field `kind`")),
        Some(v) => v
            .as_str()
            .and_then(|s| s.parse().ok().filter(|k: &Kind| k.as_str() == s))
            .ok_or_else(|| {
                origin.diagnostic(
                    "kind",
                    format!(
                        "unknown kind {}, expected one of {}",
                        show(v),
                        Kind::ALL.map(|k| k.as_str()).join(", ")
                    ),
                )
            })?,
    };
    fn typed<S: DeserializeOwned>(
        text: &str,
        origin: &Origin,
        line_offset: usize,
    ) -> Result<Object<S>, Diagnostic> {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            serde_diagnostic(origin, &path, e.inner(), line_offset)
        })
    }
    Ok(match kind {
        Kind::Upstream => Resource::Upstream(typed(text, origin, line_offset)?),
        Kind::VirtualServer => Resource::VirtualServer(typed(text, origin, line_offset)?),
        Kind::Prompt => Resource::Prompt(typed(text, origin, line_offset)?),
        Kind::Resource => Resource::Resource(typed(text, origin, line_offset)?),
        Kind::AuthProvider => Resource::AuthProvider(typed(text, origin, line_offset)?),
        Kind::RateLimitPolicy => Resource::RateLimitPolicy(typed(text, origin, line_offset)?),
        Kind::Secret => Resource::Secret(typed(text, origin, line_offset)?),
        Kind::OperatorToken => Resource::OperatorToken(typed(text, origin, line_offset)?),
    })
}

/// A serde_yaml error as a diagnostic: its message without the embedded path and position
/// (we report both separately, with the position made file-absolute).
fn serde_diagnostic(
    origin: &Origin,
    path: &str,
    err: &serde_yaml::Error,
    line_offset: usize,
) -> Diagnostic {
    let mut message = err.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    // serde_yaml prefixes the path it knows, which for unknown fields is the parent's.
    let mut candidate = path;
    while !candidate.is_empty() {
        if let Some(rest) = message.strip_prefix(&format!("{candidate}: ")) {
            message = rest.to_string();
            break;
        }
        candidate = match candidate.rfind(['.', '[']) {
            Some(i) => &candidate[..i],
            None => "",
        };
    }
    let mut d = origin.diagnostic(path, message);
    if let Some(loc) = err.location() {
        d.line = Some(loc.line() + line_offset);
        d.column = Some(loc.column());
    }
    d
}

fn show(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => format!("`{s}`"),
        other => serde_yaml::to_string(other)
            .map(|s| format!("`{}`", s.trim_end()))
            .unwrap_or_else(|_| "(unprintable)".to_string()),
    }
}
