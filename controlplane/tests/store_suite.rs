//! One contract, two stores: the embedded redb store and a real etcd (started by the
//! harness) pass the same suite.

use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use switchboard_config::Kind;
use switchboard_controlplane::store::{
    embedded::EmbeddedStore, etcd::EtcdStore, Change, Expect, Store, StoreError, Write,
};
use switchboard_testkit::Etcd;

fn upstream_json(name: &str, description: &str) -> String {
    serde_json::json!({
        "apiVersion": "switchboard.dev/v1",
        "kind": "Upstream",
        "metadata": {"name": name},
        "spec": {"description": description, "mcp": {"url": "http://127.0.0.1:9/mcp"}},
    })
    .to_string()
}

fn put(name: &str, generation: u64, description: &str, expect: Expect) -> Write {
    Write::Put {
        kind: Kind::Upstream,
        name: name.into(),
        generation,
        json: upstream_json(name, description),
        expect,
    }
}

async fn next_batch(
    events: &mut switchboard_controlplane::store::EventStream,
) -> Vec<switchboard_controlplane::store::Event> {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("a watch event within 10 s")
        .expect("watch still open")
        .expect("no watch error")
}

async fn next_map(
    follow: &mut switchboard_controlplane::store::StatusStream,
) -> switchboard_controlplane::store::StatusMap {
    tokio::time::timeout(Duration::from_secs(10), follow.next())
        .await
        .expect("a status map within 10 s")
        .expect("status feed still open")
        .expect("no status error")
}

async fn suite(store: Arc<dyn Store>) {
    let start = store.list().await.expect("list").revision;

    // Create, and a second create of the same name conflicts.
    let r1 = store
        .write(vec![put("a", 1, "first", Expect::Absent)])
        .await
        .expect("create a");
    assert!(r1 > start);
    let err = store
        .write(vec![put("a", 1, "again", Expect::Absent)])
        .await
        .expect_err("create of an existing record");
    assert!(
        matches!(err, StoreError::Conflict { ref name, .. } if name == "a"),
        "{err}"
    );

    // Update guarded by mod revision: stale revisions conflict, the current one wins.
    let a = store
        .get(Kind::Upstream, "a")
        .await
        .expect("get")
        .expect("a exists");
    assert_eq!((a.generation, a.mod_revision), (1, r1));
    let r2 = store
        .write(vec![put("a", 2, "second", Expect::ModRevision(r1))])
        .await
        .expect("update a");
    let err = store
        .write(vec![put("a", 3, "lost", Expect::ModRevision(r1))])
        .await
        .expect_err("stale update");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");

    // Atomicity: one failing expectation means nothing of the batch lands.
    let err = store
        .write(vec![
            put("b", 1, "new", Expect::Absent),
            put("a", 3, "stale", Expect::ModRevision(r1)),
        ])
        .await
        .expect_err("batch with a stale member");
    assert!(
        matches!(err, StoreError::Conflict { ref name, .. } if name == "a"),
        "{err}"
    );
    assert!(store
        .get(Kind::Upstream, "b")
        .await
        .expect("get b")
        .is_none());

    // A multi-record write lands at one revision.
    let r3 = store
        .write(vec![
            put("b", 1, "new", Expect::Absent),
            put("c", 1, "new", Expect::Absent),
        ])
        .await
        .expect("create b and c");
    let listing = store.list().await.expect("list");
    assert!(listing.revision >= r3);
    let names: Vec<_> = listing.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let a = listing
        .records
        .iter()
        .find(|r| r.name == "a")
        .expect("a listed");
    assert_eq!((a.generation, a.mod_revision), (2, r2));
    assert!(a.json.contains("second"));

    // Watching from the first revision replays history in order, then goes live.
    let mut events = store.watch(r1 - 1).await.expect("watch");
    let mut seen = Vec::new();
    while seen.len() < 4 {
        for e in next_batch(&mut events).await {
            let Change::Put(r) = &e.change else {
                panic!("unexpected {e:?}")
            };
            seen.push((e.revision, r.name.clone(), r.generation));
        }
    }
    assert_eq!(
        seen,
        [
            (r1, "a".into(), 1),
            (r2, "a".into(), 2),
            (r3, "b".into(), 1),
            (r3, "c".into(), 1)
        ]
    );
    let r4 = store
        .write(vec![Write::Delete {
            kind: Kind::Upstream,
            name: "c".into(),
            expect: Expect::ModRevision(r3),
        }])
        .await
        .expect("delete c");
    let live = next_batch(&mut events).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].revision, r4);
    assert_eq!(
        live[0].change,
        Change::Delete {
            kind: Kind::Upstream,
            name: "c".into()
        }
    );

    // After compaction, history before it is gone and says so.
    store.compact(r4).await.expect("compact");
    let compacted = match store.watch(r1).await {
        Err(e) => e,
        Ok(mut s) => tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("an answer within 10 s")
            .expect("an item")
            .expect_err("compacted history"),
    };
    assert!(
        matches!(compacted, StoreError::Compacted { .. }),
        "{compacted}"
    );
    // ...while watching from the compaction point still works.
    let mut events = store.watch(r4).await.expect("watch from compaction point");
    let r5 = store
        .write(vec![put("d", 1, "new", Expect::Absent)])
        .await
        .expect("create d");
    assert_eq!(next_batch(&mut events).await[0].revision, r5);

    // Secrets: the first writer's value wins, later callers read it, and secrets are not
    // resources (they neither list nor watch).
    let first = store.secret("session-key", b"first").await.expect("create");
    assert_eq!(first, b"first");
    let again = store.secret("session-key", b"second").await.expect("read");
    assert_eq!(again, b"first");
    assert_eq!(store.secret("other", b"x").await.expect("another"), b"x");

    // Status entries: followed as whole maps, written fenced by the leader.
    let mut follow = store.status_follow().await.expect("follow status");
    let first = next_map(&mut follow).await;
    assert!(first.is_empty(), "{first:?}");
    let leadership = store.campaign("replica-1").await.expect("campaign");
    assert!(!leadership.is_lost());
    store
        .status_put("catalog/a", b"{}".to_vec(), Some(&leadership.fence))
        .await
        .expect("fenced put");
    store
        .status_put("refresh/a", b"1".to_vec(), None)
        .await
        .expect("unfenced put");
    let mut seen = next_map(&mut follow).await;
    while seen.len() < 2 {
        seen = next_map(&mut follow).await;
    }
    assert_eq!(seen.get("catalog/a").map(Vec::as_slice), Some(&b"{}"[..]));
    store
        .status_delete("refresh/a", Some(&leadership.fence))
        .await
        .expect("fenced delete");
    let mut seen = next_map(&mut follow).await;
    while seen.contains_key("refresh/a") {
        seen = next_map(&mut follow).await;
    }
    assert!(seen.contains_key("catalog/a"));
    // A fresh follower starts from everything stored.
    let mut again = store.status_follow().await.expect("follow again");
    assert!(next_map(&mut again).await.contains_key("catalog/a"));
    assert!(store
        .list()
        .await
        .expect("list")
        .records
        .iter()
        .all(|r| r.name != "session-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    suite(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_passes_the_suite() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = EtcdStore::connect(&[etcd.endpoint()], "/suite")
        .await
        .expect("connect");
    suite(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rev = {
        let store = EmbeddedStore::open(dir.path()).expect("open");
        store
            .write(vec![put("kept", 1, "durable", Expect::Absent)])
            .await
            .expect("write")
    };
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    let listing = store.list().await.expect("list");
    assert_eq!(listing.revision, rev);
    assert_eq!(listing.records.len(), 1);
    let next = store
        .write(vec![put("more", 1, "after reopen", Expect::Absent)])
        .await
        .expect("write after reopen");
    assert_eq!(next, rev + 1, "revisions continue across restarts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_prefixes_isolate_registries() {
    let etcd = Etcd::start().await.expect("start etcd");
    let one = EtcdStore::connect(&[etcd.endpoint()], "/one")
        .await
        .expect("connect");
    let two = EtcdStore::connect(&[etcd.endpoint()], "/two/")
        .await
        .expect("connect");
    one.write(vec![put("x", 1, "in one", Expect::Absent)])
        .await
        .expect("write");
    assert_eq!(one.list().await.expect("list").records.len(), 1);
    assert!(two.list().await.expect("list").records.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leadership_hands_over_and_fences_the_old_leader() {
    let etcd = Etcd::start().await.expect("start etcd");
    let a = EtcdStore::connect(&[etcd.endpoint()], "/lead")
        .await
        .expect("connect");
    let b = EtcdStore::connect(&[etcd.endpoint()], "/lead")
        .await
        .expect("connect");
    let first = a.campaign("a").await.expect("a leads");
    let fence_a = first.fence.clone();
    // b waits while a holds the lease.
    let waiting = tokio::spawn(async move { b.campaign("b").await.map(|l| (b, l)) });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiting.is_finished(),
        "b must not lead while a holds the lease"
    );
    let resigned_at = std::time::Instant::now();
    drop(first);
    let (b, second) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("b leads within 10 s of a resigning")
        .expect("task")
        .expect("campaign");
    assert!(
        resigned_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        resigned_at.elapsed()
    );
    // a's writes are refused from now on; b's go through.
    let err = a
        .status_put("catalog/x", b"old".to_vec(), Some(&fence_a))
        .await
        .expect_err("deposed leader's write");
    assert!(matches!(err, StoreError::Fenced), "{err}");
    b.status_put("catalog/x", b"new".to_vec(), Some(&second.fence))
        .await
        .expect("new leader's write");
}
