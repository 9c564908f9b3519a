//! JSON Schemas that a REST tool's arguments must satisfy before any request leaves the
//! gateway (through the `jsonschema` crate, drafts 4 to 2020-12; 2020-12 when the schema
//! names none, as MCP says). Remote `$ref`s are never fetched: a schema refers only to
//! itself.

use serde_json::Value;

/// Most problems named in one refusal (the rest are counted).
const MAX_REPORTED: usize = 3;

/// A compiled schema.
pub struct Schema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

/// Why a schema cannot be used, and where in it (a JSON pointer, empty for the whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON Schema: {}{why}", if at.is_empty() { String::new() } else { format!("at {at}: ") })]
pub struct SchemaError {
    pub at: String,
    pub why: String,
}

impl SchemaError {
    /// The place as a field path below the schema (`.properties.id.type`), the way
    /// configuration errors name fields.
    pub fn field_suffix(&self) -> String {
        self.at
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| match s.parse::<usize>() {
                Ok(i) => format!("[{i}]"),
                Err(_) => format!(".{}", s.replace("~1", "/").replace("~0", "~")),
            })
            .collect()
    }
}

impl Schema {
    /// Compiles `schema`, checking it against its draft's meta-schema.
    pub fn compile(schema: &Value) -> Result<Schema, SchemaError> {
        let validator = jsonschema::validator_for(schema).map_err(|e| SchemaError {
            at: e.instance_path().as_str().to_string(),
            why: e.to_string(),
        })?;
        Ok(Schema { validator })
    }

    /// Checks `value`; the error names each offending field by its JSON pointer (at most a
    /// few, then how many more).
    pub fn check(&self, value: &Value) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut more = 0usize;
        for e in self.validator.iter_errors(value) {
            if problems.len() == MAX_REPORTED {
                more += 1;
                continue;
            }
            let at = e.instance_path().as_str().to_string();
            problems.push(if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            });
        }
        if problems.is_empty() {
            return Ok(());
        }
        let mut text = problems.join("; ");
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        Err(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_checked_and_problems_named_by_field() {
        let s = Schema::compile(&json!({
            "type": "object",
            "properties": {"id": {"type": "integer"}, "tag": {"enum": ["a", "b"]}},
            "required": ["id"],
        }))
        .expect("valid schema");
        assert_eq!(s.check(&json!({"id": 3, "tag": "a"})), Ok(()));
        let err = s.check(&json!({"id": "x", "tag": "c"})).expect_err("bad");
        assert!(
            err.contains("/id: \"x\" is not of type \"integer\""),
            "{err}"
        );
        assert!(err.contains("/tag:"), "{err}");
        let err = s.check(&json!({})).expect_err("missing");
        assert!(err.contains("\"id\" is a required property"), "{err}");
    }

    #[test]
    fn broken_schemas_and_remote_refs_are_refused() {
        assert!(Schema::compile(&json!({"type": "nonsense"})).is_err());
        assert!(Schema::compile(&json!({"$ref": "http://127.0.0.1:1/schema.json"})).is_err());
        assert!(Schema::compile(&json!({
            "$defs": {"n": {"type": "integer"}},
            "properties": {"x": {"$ref": "#/$defs/n"}}
        }))
        .is_ok());
    }
}
