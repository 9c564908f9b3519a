//! Snapshots: built per data-plane group, versioned by content, and checked on receipt.

use std::collections::BTreeMap;
use switchboard_config::{
    load_sources, Catalog, Discovered, NodeGroup, Resource, Snapshot, SnapshotError, Source,
};

fn quickstart_and_policies() -> switchboard_config::ResourceSet {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let quick = std::fs::read_to_string(root.join("quickstart.yaml")).expect("quickstart");
    let policies = std::fs::read_to_string(root.join("policies.yaml")).expect("policies");
    load_sources(&[
        Source {
            name: "q.yaml".into(),
            text: quick,
        },
        Source {
            name: "p.yaml".into(),
            text: policies,
        },
    ])
    .unwrap_or_else(|d| panic!("examples invalid:\n{d}"))
}

fn no_catalogs() -> Discovered {
    Discovered::default()
}

fn group(cluster: &str) -> NodeGroup {
    NodeGroup {
        cluster: cluster.into(),
        zone: "a".into(),
        labels: BTreeMap::new(),
    }
}

#[test]
fn placement_selects_servers_and_only_what_they_reference() {
    let set = quickstart_and_policies();
    let us = Snapshot::build(&set, &group("us-east"), &no_catalogs());
    assert_eq!(us.virtual_servers.keys().collect::<Vec<_>>(), ["demo"]);
    assert_eq!(
        us.upstreams.keys().collect::<Vec<_>>(),
        ["everything", "time"]
    );
    assert!(us.auth_providers.is_empty() && us.rate_limits.is_empty());
    assert_eq!(us.prompts.len(), 1);
    assert_eq!(us.resources.len(), 1);

    let eu = Snapshot::build(&set, &group("eu-west"), &no_catalogs());
    assert_eq!(
        eu.virtual_servers.keys().collect::<Vec<_>>(),
        ["demo", "guarded"]
    );
    assert!(eu.upstreams.contains_key("reference"));
    assert!(eu.auth_providers.contains_key("team-keys"));
    assert!(eu.rate_limits.contains_key("per-principal"));
    assert_ne!(us.version, eu.version);
}

#[test]
fn version_is_a_content_hash() {
    let set = quickstart_and_policies();
    let a = Snapshot::build(&set, &group("us-east"), &no_catalogs());
    // Another node in another zone of the same cluster gets the identical snapshot.
    let b = Snapshot::build(
        &set,
        &NodeGroup {
            zone: "b".into(),
            ..group("us-east")
        },
        &no_catalogs(),
    );
    assert_eq!(a, b);
    assert_eq!(a.version.len(), 24);
    let mut changed = a.clone();
    changed
        .prompts
        .values_mut()
        .for_each(|p| p.description = Some("changed".into()));
    assert_ne!(changed.content_version(), a.version);
}

#[test]
fn decode_accepts_what_encode_produced() {
    let snap = Snapshot::build(
        &quickstart_and_policies(),
        &group("eu-west"),
        &no_catalogs(),
    );
    let back = Snapshot::decode(&snap.encode()).expect("round trip");
    assert_eq!(back, snap);
}

#[test]
fn decode_rejects_garbage_tampering_and_inconsistency() {
    assert!(matches!(
        Snapshot::decode(b"{not json"),
        Err(SnapshotError::Decode(_))
    ));
    assert!(matches!(
        Snapshot::decode(br#"{"version":"x","surprise":1}"#),
        Err(SnapshotError::Decode(_))
    ));

    let snap = Snapshot::build(
        &quickstart_and_policies(),
        &group("us-east"),
        &no_catalogs(),
    );
    let mut tampered = snap.clone();
    tampered.upstreams.remove("time");
    let err = Snapshot::decode(&tampered.encode()).expect_err("version no longer matches");
    assert!(
        matches!(err, SnapshotError::VersionMismatch { .. }),
        "{err}"
    );

    // Consistent hash, inconsistent content: a virtual server referencing a missing upstream.
    tampered.version = tampered.content_version();
    match Snapshot::decode(&tampered.encode()) {
        Err(SnapshotError::Invalid(d)) => {
            let text = d.to_string();
            assert!(text.contains("Upstream `time` does not exist"), "{text}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn resources_round_trip_through_canonical_json() {
    let set = quickstart_and_policies();
    assert_eq!(set.len(), 10);
    for item in set.iter() {
        let json = item.resource.to_json();
        assert_eq!(json["apiVersion"], "switchboard.dev/v1");
        let back = Resource::from_json(json).expect("decodes");
        assert_eq!(back, item.resource);
    }
    let err = Resource::from_json(serde_json::json!({"kind": "Upstream", "metadata": {"name": "x"}, "spec": {"mcp": {"url": 3}}}))
        .expect_err("bad schema");
    assert!(
        err.to_string()
            .contains("Upstream JSON does not match its schema"),
        "{err}"
    );
}

#[test]
fn kind_names_parse_like_kubectl() {
    use switchboard_config::Kind;
    for (s, k) in [
        ("upstreams", Kind::Upstream),
        ("VS", Kind::VirtualServer),
        ("VirtualServer", Kind::VirtualServer),
        ("ratelimitpolicies", Kind::RateLimitPolicy),
    ] {
        assert_eq!(s.parse::<Kind>().expect(s), k);
    }
    assert!("gateway".parse::<Kind>().is_err());
}

#[test]
fn catalogs_travel_only_with_their_upstreams() {
    let set = quickstart_and_policies();
    let mut catalogs = BTreeMap::new();
    for name in ["everything", "reference"] {
        catalogs.insert(
            name.to_string(),
            Catalog {
                protocol_version: "2025-06-18".into(),
                tools: vec![serde_json::json!({"name": "echo", "inputSchema": {"type": "object"}})],
                ..Catalog::default()
            },
        );
    }
    let mut discovered = Discovered::from(catalogs);
    discovered
        .unhealthy
        .insert("reference".into(), "connection refused".into());
    let us = Snapshot::build(&set, &group("us-east"), &discovered);
    assert_eq!(us.catalogs.keys().collect::<Vec<_>>(), ["everything"]);
    assert!(us.unhealthy.is_empty(), "health travels with its upstream");
    let eu = Snapshot::build(&set, &group("eu-west"), &discovered);
    assert_eq!(eu.catalogs.len(), 2);
    assert_eq!(eu.unhealthy.keys().collect::<Vec<_>>(), ["reference"]);
    // A catalog change is a content change.
    assert_ne!(
        us.version,
        Snapshot::build(&set, &group("us-east"), &no_catalogs()).version
    );
    assert_eq!(Snapshot::decode(&us.encode()).expect("decodes"), us);
}

#[test]
fn a_group_receives_only_the_secrets_its_own_servers_use() {
    let yaml = "\
kind: Secret
metadata: {name: eu-token}
spec: {data: {value: eu-only}}
---
kind: Secret
metadata: {name: us-token}
spec: {data: {value: us-only}}
---
kind: Secret
metadata: {name: eu-client}
spec: {data: {crt: eu-cert, key: eu-key}}
---
kind: Upstream
metadata: {name: eu-api}
spec:
  mcp: {url: https://eu.example/mcp}
  auth: {bearer: {secret: eu-token, key: value}}
  tls:
    clientCert: {secret: eu-client, key: crt}
    clientKey: {secret: eu-client, key: key}
---
kind: Upstream
metadata: {name: us-api}
spec:
  mcp: {url: https://us.example/mcp}
  auth: {bearer: {secret: us-token, key: value}}
---
kind: VirtualServer
metadata: {name: eu}
spec:
  upstreams: [{upstream: eu-api}]
  placement: {clusters: [eu-west]}
---
kind: VirtualServer
metadata: {name: us}
spec:
  upstreams: [{upstream: us-api}]
  placement: {clusters: [us-east]}
";
    let set = load_sources(&[Source {
        name: "s.yaml".into(),
        text: yaml.into(),
    }])
    .unwrap_or_else(|d| panic!("invalid:\n{d}"));
    let opened: BTreeMap<String, BTreeMap<String, String>> = [
        ("eu-token", [("value", "eu-only")].as_slice()),
        ("us-token", [("value", "us-only")].as_slice()),
        (
            "eu-client",
            [("crt", "eu-cert"), ("key", "eu-key")].as_slice(),
        ),
    ]
    .iter()
    .map(|(name, kv)| {
        (
            name.to_string(),
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    })
    .collect();
    let eu = Snapshot::build(&set, &group("eu-west"), &no_catalogs()).with_secrets(&opened);
    assert_eq!(
        eu.secrets.keys().collect::<Vec<_>>(),
        ["eu-client", "eu-token"]
    );
    let encoded = String::from_utf8(eu.encode()).expect("JSON");
    assert!(!encoded.contains("us-only"), "{encoded}");
    let us = Snapshot::build(&set, &group("us-east"), &no_catalogs()).with_secrets(&opened);
    assert_eq!(us.secrets.keys().collect::<Vec<_>>(), ["us-token"]);
    let encoded = String::from_utf8(us.encode()).expect("JSON");
    assert!(
        !encoded.contains("eu-only") && !encoded.contains("eu-key"),
        "{encoded}"
    );
}
