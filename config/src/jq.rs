//! jq filters (through jaq, a maintained jq implementation) that reshape a REST tool's JSON
//! answer before the client sees it: compiled once when the configuration is checked and
//! when a data plane compiles its routes, then run per call.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, Compiler, Ctx, Vars};
use jaq_json::Val;
use serde_json::Value;

/// Longest filter accepted (a filter is a line or a few, not a program).
pub const MAX_FILTER_LEN: usize = 4096;

/// Most values one run may yield (more is a filter that explodes its input).
const MAX_OUTPUTS: usize = 10_000;

/// A compiled jq filter.
pub struct Filter {
    source: String,
    filter: jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Filter").field(&self.source).finish()
    }
}

/// Why a filter could not be compiled or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("the filter is {len} bytes long; at most {MAX_FILTER_LEN} are accepted")]
    TooLong { len: usize },
    #[error("invalid jq filter: {0}")]
    Invalid(String),
    #[error("the jq filter failed: {0}")]
    Failed(String),
}

impl Filter {
    /// Compiles `source` with jq's standard library.
    pub fn compile(source: &str) -> Result<Filter, FilterError> {
        if source.len() > MAX_FILTER_LEN {
            return Err(FilterError::TooLong { len: source.len() });
        }
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let program = File {
            code: source,
            path: (),
        };
        let modules = loader
            .load(&arena, program)
            .map_err(|errs| FilterError::Invalid(describe(&errs)))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errs| FilterError::Invalid(describe(&errs)))?;
        Ok(Filter {
            source: source.to_string(),
            filter,
        })
    }

    /// The filter as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the filter on `input`: its one output, or an array of its outputs when it
    /// yields none or several (as `jq -s` would collect them).
    pub fn run(&self, input: &Value) -> Result<Value, FilterError> {
        let bytes = serde_json::to_vec(input).map_err(|e| FilterError::Failed(e.to_string()))?;
        let input = jaq_json::read::parse_single(&bytes)
            .map_err(|e| FilterError::Failed(format!("{e:?}")))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = Vec::new();
        for out in self.filter.id.run((ctx, input)).map(jaq_core::unwrap_valr) {
            let val = out.map_err(|e| FilterError::Failed(e.to_string()))?;
            if outputs.len() == MAX_OUTPUTS {
                return Err(FilterError::Failed(format!(
                    "it yields more than {MAX_OUTPUTS} values"
                )));
            }
            outputs.push(to_json(&val)?);
        }
        Ok(if outputs.len() == 1 {
            outputs.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(outputs)
        })
    }
}

/// A jaq value as JSON (jaq prints JSON; values JSON cannot carry, such as NaN, fail).
fn to_json(val: &Val) -> Result<Value, FilterError> {
    serde_json::from_str(&val.to_string())
        .map_err(|e| FilterError::Failed(format!("it yields a value JSON cannot carry: {e}")))
}

/// Load and compile errors, shortened to what a user can act on.
fn describe(errs: &dyn std::fmt::Debug) -> String {
    let text = format!("{errs:?}");
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_compile_once_and_reshape_answers() {
        let f = Filter::compile(".args | {colour: .colour, n: (.n | tonumber)}").expect("valid");
        let out = f
            .run(&json!({"args": {"colour": "red", "n": "3"}, "url": "x"}))
            .expect("runs");
        assert_eq!(out, json!({"colour": "red", "n": 3}));
        let many = Filter::compile(".[] | .id").expect("valid");
        assert_eq!(
            many.run(&json!([{"id": 1}, {"id": 2}])).expect("runs"),
            json!([1, 2])
        );
        assert_eq!(
            Filter::compile("map(select(.a > 1)) | length")
                .expect("valid")
                .run(&json!([{"a": 1}, {"a": 2}]))
                .expect("runs"),
            json!(1)
        );
    }

    #[test]
    fn bad_filters_are_refused_with_the_reason() {
        assert!(matches!(
            Filter::compile(".args | {"),
            Err(FilterError::Invalid(_))
        ));
        assert!(matches!(
            Filter::compile("no_such_function(1)"),
            Err(FilterError::Invalid(_))
        ));
        assert!(matches!(
            Filter::compile(&"x".repeat(MAX_FILTER_LEN + 1)),
            Err(FilterError::TooLong { .. })
        ));
        let f = Filter::compile(".a + 1").expect("valid");
        let err = f.run(&json!({"a": "text"})).expect_err("string + number");
        assert!(matches!(err, FilterError::Failed(_)), "{err}");
        let f = Filter::compile("range(20000)").expect("valid");
        assert!(f.run(&json!(null)).is_err());
    }

    #[test]
    fn compiled_filters_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Filter>();
    }
}
