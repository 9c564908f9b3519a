//! A YAML document as `validate`, `apply` and `dataplane -f` read it: positions, nesting
//! bounds, resources and their validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let source = switchboard_config::Source {
        name: "fuzz.yaml".into(),
        text: text.into_owned(),
    };
    if let Err(diagnostics) = switchboard_config::load_sources(std::slice::from_ref(&source)) {
        let _ = format!("{diagnostics:?}");
    }
});
