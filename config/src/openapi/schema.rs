//! `$ref`s and schemas of an OpenAPI document: references followed inside the document
//! (never fetched), schemas copied with their references expanded (recursion cut at a
//! fixed depth) and OpenAPI 3.0's dialect (`nullable`, boolean `exclusiveMinimum`) turned
//! into the JSON Schema 2020-12 that tool input schemas are.

use super::SpecError;
use serde_json::{Map, Value};

/// References followed in a row before giving up (a loop of `$ref`s).
const MAX_CHAIN: usize = 16;
/// References expanded inside one another in a schema; deeper ones accept anything, so a
/// recursive schema (a tree of categories) still makes a finite tool schema.
const MAX_EXPANSION: usize = 6;
/// Most nodes in one expanded schema (references can multiply a document's size).
const MAX_NODES: usize = 20_000;

/// Follows references in one document.
pub(super) struct Resolver<'a> {
    doc: &'a Value,
    /// OpenAPI 3.0: its schema dialect needs translating.
    legacy: bool,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(doc: &'a Value, legacy: bool) -> Resolver<'a> {
        Resolver { doc, legacy }
    }

    /// `v`, or what its `$ref` points at (through chains of references).
    pub(super) fn follow(&self, mut v: &'a Value, at: &str) -> Result<&'a Value, SpecError> {
        for _ in 0..MAX_CHAIN {
            let Some(r) = v.get("$ref").and_then(Value::as_str) else {
                return Ok(v);
            };
            v = self.target(r, at)?;
        }
        Err(SpecError::new(
            at,
            format!("more than {MAX_CHAIN} `$ref`s in a row (a loop?)"),
        ))
    }

    fn target(&self, r: &str, at: &str) -> Result<&'a Value, SpecError> {
        let Some(pointer) = r.strip_prefix('#') else {
            return Err(SpecError::new(
                at,
                format!("`$ref: {r}` points outside the document; only local references (`#/...`) are followed"),
            ));
        };
        let decoded = percent_decode(pointer);
        self.doc
            .pointer(&decoded)
            .ok_or_else(|| SpecError::new(at, format!("`$ref: {r}` points at nothing")))
    }

    /// A copy of schema `v` with references expanded and 3.0's dialect translated.
    pub(super) fn schema(&self, v: &'a Value, at: &str) -> Result<Value, SpecError> {
        let mut nodes = 0;
        self.expand(v, at, 0, &mut nodes)
    }

    fn expand(
        &self,
        v: &'a Value,
        at: &str,
        depth: usize,
        nodes: &mut usize,
    ) -> Result<Value, SpecError> {
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(SpecError::new(
                at,
                format!("the schema has more than {MAX_NODES} nodes once its `$ref`s are expanded"),
            ));
        }
        match v {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                    if depth >= MAX_EXPANSION {
                        let mut cut = Map::new();
                        cut.insert(
                            "description".into(),
                            format!("{r} (nested too deeply to expand here)").into(),
                        );
                        return Ok(Value::Object(cut));
                    }
                    let target = self.follow(v, at)?;
                    let mut out = self.expand(target, at, depth + 1, nodes)?;
                    // 3.1 allows keywords beside a reference (a description, say).
                    if let Value::Object(o) = &mut out {
                        for (k, x) in map.iter().filter(|(k, _)| *k != "$ref") {
                            o.insert(k.clone(), self.expand(x, at, depth, nodes)?);
                        }
                    }
                    return Ok(out);
                }
                let mut out = Map::new();
                for (k, x) in map {
                    // Examples and vendor extensions are not part of an input schema.
                    if k.starts_with("x-") || k == "example" || k == "xml" {
                        continue;
                    }
                    out.insert(k.clone(), self.expand(x, at, depth, nodes)?);
                }
                if self.legacy {
                    translate_legacy(&mut out);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .map(|x| self.expand(x, at, depth, nodes))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }
}

/// OpenAPI 3.0 schema keywords as JSON Schema 2020-12 has them.
fn translate_legacy(schema: &mut Map<String, Value>) {
    if schema.remove("nullable") == Some(Value::Bool(true)) {
        match schema.get_mut("type") {
            Some(Value::String(t)) => {
                let t = std::mem::take(t);
                schema.insert("type".into(), Value::Array(vec![t.into(), "null".into()]));
            }
            Some(_) => {}
            None => {}
        }
        if let Some(Value::Array(options)) = schema.get_mut("enum") {
            if !options.contains(&Value::Null) {
                options.push(Value::Null);
            }
        }
    }
    for (flag, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        match schema.get(flag) {
            Some(Value::Bool(true)) => {
                if let Some(b) = schema.remove(bound) {
                    schema.insert(flag.into(), b);
                } else {
                    schema.remove(flag);
                }
            }
            Some(Value::Bool(false)) => {
                schema.remove(flag);
            }
            _ => {}
        }
    }
}

/// A JSON pointer from a `$ref` fragment (`%7B` and friends decoded).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
