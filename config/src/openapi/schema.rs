//! `$ref`s and schemas of an OpenAPI document: references followed inside the document
//! (never fetched), schemas copied with their references expanded (a reference to a schema
//! already being expanded, i.e. recursion, is cut there) and OpenAPI 3.0's dialect
//! (`nullable`, boolean `exclusiveMinimum`) turned into the JSON Schema 2020-12 that tool
//! input schemas are.

use super::SpecError;
use serde_json::{Map, Value};
use std::cell::Cell;

/// References followed in a row before giving up (a loop of `$ref`s).
const MAX_CHAIN: usize = 16;
/// References expanded inside one another; deeper ones accept anything (no tool schema
/// could nest deeper and still travel in a catalog).
const MAX_EXPANSION: usize = 16;
/// Most nodes in one expanded schema (references can multiply a document's size).
const MAX_NODES: usize = 20_000;
/// Most nodes in all the schemas of one document together.
const MAX_TOTAL_NODES: usize = 1_000_000;

/// Keywords whose value maps names to schemas (the names are not keywords).
const SCHEMA_MAPS: [&str; 5] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];
/// Keywords whose value is data, copied as it is.
const DATA: [&str; 4] = ["default", "enum", "const", "examples"];

/// Follows references in one document.
pub(super) struct Resolver<'a> {
    doc: &'a Value,
    /// OpenAPI 3.0: its schema dialect needs translating.
    legacy: bool,
    /// Nodes made so far, by every schema of the document.
    total: Cell<usize>,
}

/// One schema's expansion: its node count and the references being expanded.
struct Expansion<'s> {
    at: &'s str,
    nodes: usize,
    open: Vec<String>,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(doc: &'a Value, legacy: bool) -> Resolver<'a> {
        Resolver {
            doc,
            legacy,
            total: Cell::new(0),
        }
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
        let mut x = Expansion {
            at,
            nodes: 0,
            open: Vec::new(),
        };
        self.expand(v, &mut x)
    }

    fn count(&self, x: &mut Expansion<'_>) -> Result<(), SpecError> {
        x.nodes += 1;
        self.total.set(self.total.get() + 1);
        if x.nodes > MAX_NODES {
            return Err(SpecError::new(
                x.at,
                format!("the schema has more than {MAX_NODES} nodes once its `$ref`s are expanded"),
            ));
        }
        if self.total.get() > MAX_TOTAL_NODES {
            return Err(SpecError::new(
                x.at,
                format!("the document's schemas have more than {MAX_TOTAL_NODES} nodes once their `$ref`s are expanded"),
            ));
        }
        Ok(())
    }

    /// Schema `v` (an object or a boolean).
    fn expand(&self, v: &'a Value, x: &mut Expansion<'_>) -> Result<Value, SpecError> {
        self.count(x)?;
        let Value::Object(map) = v else {
            return Ok(v.clone());
        };
        if let Some(r) = map.get("$ref").and_then(Value::as_str) {
            if x.open.iter().any(|o| o == r) || x.open.len() >= MAX_EXPANSION {
                let mut cut = Map::new();
                cut.insert(
                    "description".into(),
                    format!("{r} (recursive: not expanded here)").into(),
                );
                return Ok(Value::Object(cut));
            }
            let target = self.follow(v, x.at)?;
            x.open.push(r.to_string());
            let expanded = self.expand(target, x);
            x.open.pop();
            let mut out = expanded?;
            // 3.1 allows keywords beside a reference (a description, say).
            if let Value::Object(o) = &mut out {
                for (k, v) in map.iter().filter(|(k, _)| *k != "$ref") {
                    o.insert(k.clone(), self.keyword(k, v, x)?);
                }
            }
            return Ok(out);
        }
        let mut out = Map::new();
        for (k, v) in map {
            // Examples and vendor extensions are not part of an input schema.
            if k.starts_with("x-") || k == "example" || k == "xml" {
                continue;
            }
            out.insert(k.clone(), self.keyword(k, v, x)?);
        }
        if self.legacy {
            translate_legacy(&mut out);
        }
        Ok(Value::Object(out))
    }

    /// The value of keyword `k` in a schema: data copied, schemas expanded.
    fn keyword(&self, k: &str, v: &'a Value, x: &mut Expansion<'_>) -> Result<Value, SpecError> {
        if DATA.contains(&k) {
            return Ok(v.clone());
        }
        match v {
            Value::Object(named) if SCHEMA_MAPS.contains(&k) => {
                let mut out = Map::new();
                for (name, schema) in named {
                    out.insert(name.clone(), self.expand(schema, x)?);
                }
                Ok(Value::Object(out))
            }
            Value::Object(_) | Value::Bool(_) => self.expand(v, x),
            Value::Array(items) => items
                .iter()
                .map(|item| self.expand(item, x))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }
}

/// OpenAPI 3.0 schema keywords as JSON Schema 2020-12 has them.
fn translate_legacy(schema: &mut Map<String, Value>) {
    if schema.get("nullable") == Some(&Value::Bool(true)) {
        schema.remove("nullable");
        if let Some(Value::String(t)) = schema.get_mut("type") {
            let t = std::mem::take(t);
            schema.insert("type".into(), Value::Array(vec![t.into(), "null".into()]));
        }
        if let Some(Value::Array(options)) = schema.get_mut("enum") {
            if !options.contains(&Value::Null) {
                options.push(Value::Null);
            }
        }
    } else if schema.get("nullable") == Some(&Value::Bool(false)) {
        schema.remove("nullable");
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
