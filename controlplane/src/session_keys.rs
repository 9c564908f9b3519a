//! The keys that seal gateway session ids, rotated. The registry keeps one master key (in
//! the store, sealed with the Secrets key when there is one); snapshots never carry it.
//! They carry the key of the current period, derived from the master with HKDF, and the
//! previous period's key, which still opens ids sealed before the rotation. Every replica
//! derives the same keys from the clock, so no replica has to announce a rotation, and a
//! data plane that leaks its snapshot leaks keys that stop working within two periods.

use base64::Engine;
use ring::hkdf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one key seals new session ids. Sessions last at most 30 days (a virtual
/// server's `sessions.maxLifetime`), and a session sealed near the end of a period must
/// still open through the next one.
pub const ROTATE_EVERY: Duration = Duration::from_secs(31 * 24 * 3600);

/// Derives the session keys of each period from the master key.
#[derive(Clone)]
pub struct SessionKeys {
    master: hkdf::Prk,
    every: Duration,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// The 32-byte output length HKDF is asked for.
struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

impl SessionKeys {
    /// Keys derived from `master` (base64, as the store keeps it), one per `every`.
    pub fn new(master: &str, every: Duration) -> SessionKeys {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(master.trim())
            .unwrap_or_else(|_| master.as_bytes().to_vec());
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"switchboard session key");
        SessionKeys {
            master: salt.extract(&bytes),
            every: every.max(Duration::from_secs(1)),
        }
    }

    /// The period `at` falls in.
    pub fn period(&self, at: SystemTime) -> u64 {
        let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        secs / self.every.as_secs()
    }

    /// The period now.
    pub fn period_now(&self) -> u64 {
        self.period(SystemTime::now())
    }

    /// How long until the next period starts (when snapshots must carry new keys).
    pub fn until_next(&self, at: SystemTime) -> Duration {
        let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let every = self.every.as_secs();
        Duration::from_secs(every - secs % every)
    }

    /// The key (base64) that seals in `period`.
    pub fn key(&self, period: u64) -> String {
        let info = period.to_be_bytes();
        let info = [info.as_slice()];
        let mut out = [0u8; 32];
        // Expanding 32 bytes from SHA-256 is always within HKDF's limit.
        if let Ok(okm) = self.master.expand(&info, KeyLen) {
            let _ = okm.fill(&mut out);
        }
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// What snapshots of `period` carry: its key, and the previous period's key.
    pub fn for_period(&self, period: u64) -> (String, Vec<String>) {
        let previous = period
            .checked_sub(1)
            .map(|p| vec![self.key(p)])
            .unwrap_or_default();
        (self.key(period), previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_rotate_per_period_and_every_replica_derives_the_same() {
        let master = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let a = SessionKeys::new(&master, Duration::from_secs(3600));
        let b = SessionKeys::new(&master, Duration::from_secs(3600));
        let (now, before) = a.for_period(10);
        assert_eq!((now.clone(), before.clone()), b.for_period(10));
        assert_eq!(before, vec![a.key(9)]);
        assert_ne!(now, a.key(9));
        assert_ne!(now, master, "the master itself never leaves");
        assert_eq!(a.for_period(11).1, vec![now]);
        let other = SessionKeys::new(
            &base64::engine::general_purpose::STANDARD.encode([8u8; 32]),
            Duration::from_secs(3600),
        );
        assert_ne!(other.key(10), a.key(10));
        let at = UNIX_EPOCH + Duration::from_secs(3600 * 10 + 100);
        assert_eq!(a.period(at), 10);
        assert_eq!(a.until_next(at), Duration::from_secs(3500));
        assert_eq!(a.for_period(0).1, Vec::<String>::new());
    }
}
