//! What several fuzzers start from: a virtual server `demo` compiled from a YAML config, as
//! a data plane would serve it.

use std::sync::Arc;
use switchboard_config::{load_sources, Discovered, NodeGroup, Snapshot, Source};
use switchboard_dataplane::routes::{Routes, ServerView};

/// Virtual server `demo` of `yaml` (which must be valid).
pub fn demo(yaml: &str) -> Arc<ServerView> {
    let set = load_sources(&[Source {
        name: "fuzz.yaml".into(),
        text: yaml.into(),
    }])
    .expect("the fuzz config is valid");
    let snap = Snapshot::build(&set, &NodeGroup::default(), &Discovered::default());
    let routes = Routes::compile(&snap).expect("compiles");
    routes.server("demo").expect("served")
}
