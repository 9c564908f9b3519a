//! Apply/delete semantics against real stores: atomic, idempotent, race-free, and a
//! follower that recovers when its watch falls into compacted history.

use std::sync::Arc;
use std::time::Duration;
use switchboard_config::{Kind, Source};
use switchboard_controlplane::registry::{self, Action, RegistryError};
use switchboard_controlplane::state::{follow, wait_for_revision};
use switchboard_controlplane::store::{
    embedded::EmbeddedStore, etcd::EtcdStore, EventStream, Fence, Leadership, Listing, Record,
    Revision, StatusStream, Store, StoreError, Write,
};
use switchboard_testkit::Etcd;
use tokio::sync::Notify;

fn upstream(name: &str, description: &str) -> String {
    format!(
        "kind: Upstream\nmetadata:\n  name: {name}\nspec:\n  description: \"{description}\"\n  mcp:\n    url: http://127.0.0.1:9/mcp\n"
    )
}

fn src(text: String) -> Vec<Source> {
    vec![Source {
        name: "apply.yaml".into(),
        text,
    }]
}

async fn semantics(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let out = registry::apply(s, &src(upstream("u", "one")), false, None)
        .await
        .expect("create");
    assert_eq!(out.results[0].action, Action::Created);
    let out = registry::apply(s, &src(upstream("u", "one")), false, None)
        .await
        .expect("again");
    assert_eq!(out.results[0].action, Action::Unchanged);
    assert_eq!(out.revision, None, "an unchanged apply writes nothing");

    // All or nothing: a file with one bad document changes nothing.
    let mixed = format!(
        "{}---\n{}",
        upstream("u", "two"),
        upstream("v", "x").replace("http://127.0.0.1:9/mcp", "nope")
    );
    match registry::apply(s, &src(mixed), false, None).await {
        Err(RegistryError::Invalid(d)) => {
            assert_eq!(d.0.len(), 1, "{d}");
            assert_eq!(d.0[0].line, Some(15), "{d}");
            assert_eq!(d.0[0].field, "spec.mcp.url");
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    let u = registry::get(s, Kind::Upstream, Some("u"))
        .await
        .expect("get");
    assert_eq!(u[0].generation, 1);
    assert!(u[0].json.contains("one"));

    // Dry run reports without writing.
    let out = registry::apply(s, &src(upstream("u", "three")), true, None)
        .await
        .expect("dry run");
    assert_eq!(
        (out.results[0].action, out.results[0].generation),
        (Action::Configured, 2)
    );
    assert_eq!(
        registry::get(s, Kind::Upstream, Some("u"))
            .await
            .expect("get")[0]
            .generation,
        1
    );

    // References are checked against what is stored; delete refuses while referenced.
    let vs = "kind: VirtualServer\nmetadata:\n  name: vs\nspec:\n  upstreams:\n    - upstream: u\n"
        .to_string();
    registry::apply(s, &src(vs), false, None)
        .await
        .expect("vs referencing stored u");
    match registry::delete(s, Kind::Upstream, "u").await {
        Err(RegistryError::Invalid(d)) => {
            assert!(d.to_string().contains("VirtualServer `vs`"), "{d}")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    registry::delete(s, Kind::VirtualServer, "vs")
        .await
        .expect("delete vs");
    registry::delete(s, Kind::Upstream, "u")
        .await
        .expect("delete u");
    assert!(matches!(
        registry::delete(s, Kind::Upstream, "u").await,
        Err(RegistryError::NotFound { .. })
    ));
}

/// Concurrent applies of different content to one resource: every one lands, in some
/// order, and the generation counts each of them.
async fn no_lost_updates(store: Arc<dyn Store>) {
    registry::apply(store.as_ref(), &src(upstream("hot", "v0")), false, None)
        .await
        .expect("create");
    const WRITERS: usize = 8;
    let mut tasks = Vec::new();
    for i in 1..=WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            registry::apply(
                store.as_ref(),
                &src(upstream("hot", &format!("v{i}"))),
                false,
                None,
            )
            .await
            .map(|o| o.results[0].generation)
        }));
    }
    let mut generations = Vec::new();
    for t in tasks {
        generations.push(
            t.await
                .expect("task")
                .expect("apply succeeds despite races"),
        );
    }
    generations.sort_unstable();
    let expected: Vec<u64> = (2..=(WRITERS as u64 + 1)).collect();
    assert_eq!(generations, expected, "each writer got its own generation");
    let hot = &registry::get(store.as_ref(), Kind::Upstream, Some("hot"))
        .await
        .expect("get")[0];
    assert_eq!(hot.generation, WRITERS as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_semantics_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    semantics(Arc::new(EmbeddedStore::open(dir.path()).expect("open"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_semantics_etcd() {
    let etcd = Etcd::start().await.expect("etcd");
    semantics(Arc::new(
        EtcdStore::connect(&[etcd.endpoint()], "/t")
            .await
            .expect("connect"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_lose_nothing_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    no_lost_updates(Arc::new(EmbeddedStore::open(dir.path()).expect("open"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_lose_nothing_etcd() {
    let etcd = Etcd::start().await.expect("etcd");
    no_lost_updates(Arc::new(
        EtcdStore::connect(&[etcd.endpoint()], "/t")
            .await
            .expect("connect"),
    ))
    .await;
}

/// Delegates to a real store but holds `watch` until released, so a test can let history
/// be compacted under a follower that has listed but not yet started watching.
struct HeldWatch {
    inner: Arc<dyn Store>,
    release: Arc<Notify>,
    held_once: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Store for HeldWatch {
    async fn list(&self) -> Result<Listing, StoreError> {
        self.inner.list().await
    }
    async fn get(&self, kind: Kind, name: &str) -> Result<Option<Record>, StoreError> {
        self.inner.get(kind, name).await
    }
    async fn write(&self, writes: Vec<Write>) -> Result<Revision, StoreError> {
        self.inner.write(writes).await
    }
    async fn watch(&self, after: Revision) -> Result<EventStream, StoreError> {
        if !self
            .held_once
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.release.notified().await;
        }
        self.inner.watch(after).await
    }
    async fn status_put(
        &self,
        key: &str,
        value: Vec<u8>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.inner.status_put(key, value, fence).await
    }
    async fn status_delete(&self, key: &str, fence: Option<&Fence>) -> Result<(), StoreError> {
        self.inner.status_delete(key, fence).await
    }
    async fn status_follow(&self) -> Result<StatusStream, StoreError> {
        self.inner.status_follow().await
    }
    async fn campaign(&self, holder: &str) -> Result<Leadership, StoreError> {
        self.inner.campaign(holder).await
    }
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
    async fn secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.inner.secret(name, fresh).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_recovers_when_its_watch_hits_compaction() {
    let etcd = Etcd::start().await.expect("etcd");
    let real: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&[etcd.endpoint()], "/f")
            .await
            .expect("connect"),
    );
    registry::apply(real.as_ref(), &src(upstream("before", "x")), false, None)
        .await
        .expect("apply");
    let release = Arc::new(Notify::new());
    let held = Arc::new(HeldWatch {
        inner: real.clone(),
        release: release.clone(),
        held_once: Default::default(),
    });
    let mut state = follow(held);
    // The follower has listed `before`; now history moves on and is compacted away.
    let listed = tokio::time::timeout(Duration::from_secs(10), wait_for_revision(&mut state, 1))
        .await
        .expect("first list");
    assert_eq!(listed.records.len(), 1);
    let mut last = 0;
    for i in 0..5 {
        last = registry::apply(
            real.as_ref(),
            &src(upstream(&format!("during-{i}"), "x")),
            false,
            None,
        )
        .await
        .expect("apply")
        .revision
        .expect("written");
    }
    registry::delete(real.as_ref(), Kind::Upstream, "before")
        .await
        .expect("delete");
    let last = last + 1;
    real.compact(last).await.expect("compact");
    release.notify_one();
    let caught_up =
        tokio::time::timeout(Duration::from_secs(15), wait_for_revision(&mut state, last))
            .await
            .expect("follower re-lists after compaction");
    let names: Vec<_> = caught_up.records.keys().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        ["during-0", "during-1", "during-2", "during-3", "during-4"]
    );
}
