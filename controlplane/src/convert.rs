//! Conversions between the config crate's diagnostics and their wire form, tested both ways
//! so the two stay in step.

use switchboard_config::Diagnostic;
use switchboard_proto::v1::ValidationError;

/// A diagnostic for the wire.
pub fn to_wire(d: &Diagnostic) -> ValidationError {
    let u32_of = |v: Option<usize>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    ValidationError {
        file: d.file.clone(),
        document: d.document.and_then(|v| i32::try_from(v).ok()).unwrap_or(-1),
        line: u32_of(d.line),
        column: u32_of(d.column),
        field: d.field.clone(),
        message: d.message.clone(),
    }
}

/// A diagnostic back from the wire (for printing it exactly as `validate` would).
pub fn from_wire(e: &ValidationError) -> Diagnostic {
    let pos = |v: u32| (v > 0).then_some(v as usize);
    Diagnostic {
        file: e.file.clone(),
        document: usize::try_from(e.document).ok(),
        line: pos(e.line),
        column: pos(e.column),
        field: e.field.clone(),
        message: e.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let full = Diagnostic {
            file: "a.yaml".into(),
            document: Some(2),
            line: Some(14),
            column: Some(3),
            field: "spec.x".into(),
            message: "bad".into(),
        };
        assert_eq!(from_wire(&to_wire(&full)), full);
        let bare = Diagnostic {
            file: String::new(),
            document: None,
            line: None,
            column: None,
            field: String::new(),
            message: "no position".into(),
        };
        assert_eq!(from_wire(&to_wire(&bare)), bare);
    }
}
