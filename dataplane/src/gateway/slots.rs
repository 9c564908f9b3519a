//! Places under one of the data plane's caps (WebSocket connections, legacy streams, GET and
//! subscription streams, held calls), with at most a share of them for any one client, so
//! one principal cannot take every place and lock the others out. A client is its
//! principal, or its address when it is anonymous (anonymous callers are many clients, not
//! one).

use crate::errors::GatewayError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One client's share of a cap: a tenth of it (at least 1).
const SHARE_DIVISOR: usize = 10;

/// A cap shared by every client, and each client's share of it.
pub(super) struct Slots {
    max: usize,
    per_client: usize,
    /// What the places are for, as a refusal names them (`WebSocket connections`).
    what: &'static str,
    /// The refusal when every place is taken.
    all_taken: fn() -> GatewayError,
    taken: Mutex<Taken>,
}

#[derive(Default)]
struct Taken {
    all: usize,
    by_client: HashMap<String, usize>,
}

/// Who holds a place: the principal, or the address of an anonymous caller.
pub(super) fn client_key(principal: &str, client_ip: &str) -> String {
    if principal.is_empty() {
        format!("ip:{client_ip}")
    } else {
        format!("principal:{principal}")
    }
}

impl Slots {
    /// `max` places for `what`, a tenth of them (at least one) for any one client;
    /// `all_taken` is the refusal when there are none left.
    pub(super) fn new(
        max: usize,
        what: &'static str,
        all_taken: fn() -> GatewayError,
    ) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            per_client: (max / SHARE_DIVISOR).max(1),
            what,
            all_taken,
            taken: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for `client` until the guard drops, or the refusal: every place is taken,
    /// or this client holds its share ([`GatewayError::ClientAtCap`]).
    pub(super) fn take(self: &Arc<Self>, client: String) -> Result<Slot, GatewayError> {
        let mut taken = self.lock();
        if taken.all >= self.max {
            return Err((self.all_taken)());
        }
        let mine = taken.by_client.entry(client.clone()).or_insert(0);
        if *mine >= self.per_client {
            return Err(GatewayError::ClientAtCap {
                what: self.what,
                max: self.per_client,
            });
        }
        *mine += 1;
        taken.all += 1;
        Ok(Slot {
            slots: self.clone(),
            client,
        })
    }

    /// Places taken now.
    #[cfg(test)]
    pub(super) fn taken(&self) -> usize {
        self.lock().all
    }
}

/// A place under a cap, given back when dropped.
pub(super) struct Slot {
    slots: Arc<Slots>,
    client: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = self.slots.lock();
        taken.all = taken.all.saturating_sub(1);
        if let Some(n) = taken.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                taken.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_takes_at_most_its_share_and_places_come_back() {
        let slots = Slots::new(20, "things", || GatewayError::TooManyStreams);
        let mallory: Vec<Slot> = (0..2)
            .map(|_| {
                slots
                    .take(client_key("mallory", "10.0.0.1"))
                    .expect("a place")
            })
            .collect();
        assert!(
            matches!(
                slots.take(client_key("mallory", "10.0.0.2")).err(),
                Some(GatewayError::ClientAtCap {
                    what: "things",
                    max: 2
                })
            ),
            "another address does not make another client"
        );
        // Others still get in, anonymous callers by address.
        let mut others: Vec<Slot> = (0..9)
            .map(|i| {
                slots
                    .take(client_key("", &format!("10.1.0.{i}")))
                    .expect("a place")
            })
            .collect();
        others.extend((0..9).map(|i| {
            slots
                .take(client_key(&format!("p{i}"), "x"))
                .expect("a place")
        }));
        assert_eq!(slots.taken(), 20);
        assert!(matches!(
            slots.take(client_key("alice", "x")).err(),
            Some(GatewayError::TooManyStreams)
        ));
        drop(mallory);
        assert_eq!(slots.taken(), 18);
        assert!(slots.take(client_key("mallory", "x")).is_ok());
        assert!(
            Slots::new(3, "things", || GatewayError::TooManyStreams)
                .take(client_key("a", "x"))
                .is_ok(),
            "a share is at least one"
        );
    }
}
