//! Sessions a DELETE ended. A sealed session id would otherwise keep working until it
//! expires (any replica can open it, and its upstream sessions are reopened when an upstream
//! forgets them), so the end of a session is remembered: at once on the data plane that
//! served the DELETE, and, through the control plane, on every other one. An entry is
//! forgotten when the session would have expired anyway.

use crate::session::unix_now;
use std::collections::HashMap;
use std::sync::Mutex;
use switchboard_proto::v1::EndedSession;
use tokio::sync::Notify;

/// Most ended sessions remembered; past it the ones closest to expiring anyway go first.
pub const MAX_ENDED: usize = 200_000;

/// The key an ended session is known by: a digest of its id, never the id (a credential).
pub fn ended_key(id: &str) -> String {
    crate::session::digest(id)
}

/// Whether `key` looks like an [`ended_key`] (what a control plane may send is checked).
fn well_formed(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The ended sessions this data plane knows of, and those it has yet to report.
#[derive(Default)]
pub struct EndedSessions {
    inner: Mutex<Inner>,
    /// Told when a session ends here, so the report goes out at once.
    pub reported: Notify,
}

#[derive(Default)]
struct Inner {
    /// Key -> when the session expires (Unix seconds).
    ended: HashMap<String, u64>,
    /// Ended here, not yet reported to the control plane.
    unreported: Vec<EndedSession>,
}

impl EndedSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Session `id`, expiring at `expires`, was ended by a DELETE served here.
    pub fn end(&self, id: &str, expires: u64) {
        let key = ended_key(id);
        let mut inner = self.lock();
        remember(&mut inner.ended, key.clone(), expires);
        inner.unreported.push(EndedSession {
            key,
            expires_unix: i64::try_from(expires).unwrap_or(i64::MAX),
        });
        drop(inner);
        self.reported.notify_one();
    }

    /// Whether session `id` was ended (and would not have expired yet).
    pub fn is_ended(&self, id: &str) -> bool {
        let inner = self.lock();
        if inner.ended.is_empty() {
            return false;
        }
        inner
            .ended
            .get(&ended_key(id))
            .is_some_and(|&expires| expires > unix_now())
    }

    /// What the control plane says other data planes ended (malformed entries skipped).
    pub fn learn(&self, sessions: &[EndedSession]) {
        let mut inner = self.lock();
        for s in sessions {
            if !well_formed(&s.key) {
                tracing::warn!(key = %s.key.chars().take(40).collect::<String>(), "ignored a malformed ended-session key");
                continue;
            }
            let expires = u64::try_from(s.expires_unix).unwrap_or(0);
            remember(&mut inner.ended, s.key.to_ascii_lowercase(), expires);
        }
    }

    /// The sessions ended here since the last call, to report.
    pub fn take_unreported(&self) -> Vec<EndedSession> {
        std::mem::take(&mut self.lock().unreported)
    }

    /// Puts back reports that could not be sent (the stream broke), to go on the next.
    pub fn unsent(&self, mut sessions: Vec<EndedSession>) {
        let mut inner = self.lock();
        sessions.append(&mut inner.unreported);
        inner.unreported = sessions;
        drop(inner);
        self.reported.notify_one();
    }

    /// How many ended sessions are remembered.
    pub fn len(&self) -> usize {
        self.lock().ended.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Adds one entry, first forgetting the expired ones when full, then (still full) the one
/// closest to expiring anyway.
fn remember(ended: &mut HashMap<String, u64>, key: String, expires: u64) {
    let now = unix_now();
    if expires <= now {
        return;
    }
    if ended.len() >= MAX_ENDED && !ended.contains_key(&key) {
        ended.retain(|_, &mut e| e > now);
        if ended.len() >= MAX_ENDED {
            let soonest = ended.iter().min_by_key(|(_, &e)| e).map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                ended.remove(&k);
            }
        }
    }
    ended.insert(key, expires);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_session_is_refused_here_reported_once_and_learned_elsewhere() {
        let here = EndedSessions::default();
        let later = unix_now() + 3600;
        here.end("sb3.abc", later);
        assert!(here.is_ended("sb3.abc"));
        assert!(!here.is_ended("sb3.abd"));
        let reports = here.take_unreported();
        assert_eq!(reports.len(), 1);
        assert_ne!(reports[0].key, "sb3.abc", "the id itself never leaves");
        assert!(here.take_unreported().is_empty());
        let there = EndedSessions::default();
        there.learn(&reports);
        assert!(there.is_ended("sb3.abc"));
        // Garbage from the wire is skipped; expired entries are not kept.
        there.learn(&[
            EndedSession {
                key: "../../etc".into(),
                expires_unix: i64::MAX,
            },
            EndedSession {
                key: ended_key("old"),
                expires_unix: 1,
            },
        ]);
        assert_eq!(there.len(), 1);
        there.unsent(reports);
        assert_eq!(there.take_unreported().len(), 1);
    }

    #[test]
    fn a_full_set_forgets_the_session_closest_to_expiring() {
        let mut ended = HashMap::new();
        let now = unix_now();
        for i in 0..MAX_ENDED {
            ended.insert(format!("{i:032x}"), now + 1000 + i as u64);
        }
        remember(&mut ended, "f".repeat(32), now + 10_000_000);
        assert_eq!(ended.len(), MAX_ENDED);
        assert!(!ended.contains_key(&format!("{:032x}", 0)));
        assert!(ended.contains_key(&"f".repeat(32)));
    }
}
