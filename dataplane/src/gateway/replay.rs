//! Resumable SSE streams: every event the gateway sends on a session's stream (a call's
//! answer, the GET stream) gets an id the gateway mints, `<stream><kind><seq>`, and is kept
//! in a bounded buffer for a while. A client that lost its connection sends
//! `GET` with `Last-Event-ID` and gets the rest of that same stream: what it missed, then
//! what follows. A call whose client left keeps being read into the buffer until its answer
//! arrives, so nothing is lost while the client reconnects. Buffers live in the data plane
//! that served the stream, so resuming needs the same replica (affinity), as legacy SSE does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most events one stream keeps for replay (older ones are dropped first).
const MAX_EVENTS: usize = 1_000;
/// Most bytes of event data one stream keeps for replay.
const MAX_BYTES: usize = 256 << 10;
/// Most streams one data plane keeps buffers for.
const MAX_STREAMS: usize = 10_000;
/// Most streams one session keeps buffers for (so one client cannot take them all).
const MAX_STREAMS_PER_SESSION: usize = 64;
/// Most bytes of event data all of one data plane's buffers keep; past it, streams keep
/// only their newest event.
const MAX_TOTAL_BYTES: usize = 256 << 20;
/// How long a stream nobody is reading stays resumable.
const KEEP: Duration = Duration::from_secs(60);
/// How long a call's stream stays resumable once its whole answer reached a connected
/// client (in case the last bytes were lost with the connection).
const KEEP_DELIVERED: Duration = Duration::from_secs(5);

/// Whether a stream is a call's answer (ends with it) or a session's GET stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Call,
    Listen,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Call => 'c',
            Kind::Listen => 'l',
        }
    }
}

/// The buffers of this data plane's resumable streams.
#[derive(Default)]
pub(super) struct Replays {
    streams: Mutex<Streams>,
}

#[derive(Default)]
struct Streams {
    open: HashMap<u64, Arc<Replay>>,
    /// How many of `open` each session has.
    per_session: HashMap<String, usize>,
    /// When expired streams were last dropped.
    swept: Option<Instant>,
    /// Bytes all buffers hold.
    bytes: Arc<std::sync::atomic::AtomicUsize>,
}

impl Streams {
    fn sweep(&mut self) {
        let per_session = &mut self.per_session;
        self.open.retain(|_, r| {
            let keep = !r.expired();
            if !keep {
                if let Some(n) = per_session.get_mut(&r.session) {
                    *n -= 1;
                    if *n == 0 {
                        per_session.remove(&r.session);
                    }
                }
            }
            keep
        });
        self.swept = Some(Instant::now());
    }
}

/// Why a `Last-Event-ID` cannot be resumed here.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unresumable {
    /// Not an id this gateway mints.
    Foreign,
    /// A stream of `kind` this data plane does not have (expired, or another replica's).
    Unknown(Kind),
    /// The buffer of a stream of `kind` no longer reaches back to that event.
    Overrun(Kind),
}

impl std::fmt::Display for Unresumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresumable::Foreign => write!(f, "Last-Event-ID is not an event id of this gateway"),
            Unresumable::Unknown(_) => write!(
                f,
                "the stream is not buffered on this data plane: it ended over {}s ago, or another replica served it",
                KEEP.as_secs()
            ),
            Unresumable::Overrun(_) => write!(
                f,
                "the events after Last-Event-ID are no longer buffered (a stream keeps its last {MAX_EVENTS} events)"
            ),
        }
    }
}

impl Replays {
    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new buffered stream for the session `fingerprint` names, with its writer as its
    /// reader; None when this data plane, or this session, buffers as many streams as it
    /// may (the stream then goes without ids).
    pub(super) fn open(&self, fingerprint: &str, kind: Kind) -> Option<(Arc<Replay>, Reader)> {
        let mut guard = self.lock();
        let streams = &mut *guard;
        let due = streams
            .swept
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
        let session_full = |s: &Streams| {
            s.per_session.get(fingerprint).copied().unwrap_or(0) >= MAX_STREAMS_PER_SESSION
        };
        if due || streams.open.len() >= MAX_STREAMS || session_full(streams) {
            streams.sweep();
        }
        if streams.open.len() >= MAX_STREAMS || session_full(streams) {
            return None;
        }
        let id = loop {
            let id = fastrand::u64(..);
            if !streams.open.contains_key(&id) {
                break id;
            }
        };
        let replay = Arc::new(Replay {
            id,
            kind,
            session: fingerprint.to_string(),
            state: Mutex::new(State {
                first: 1,
                events: VecDeque::new(),
                bytes: 0,
                readers: 0,
                idle_since: None,
                keep: KEEP,
            }),
            seq: watch::channel(Progress::default()).0,
            total: streams.bytes.clone(),
        });
        streams.open.insert(id, replay.clone());
        *streams
            .per_session
            .entry(fingerprint.to_string())
            .or_default() += 1;
        let reader = Reader::new(&replay);
        Some((replay, reader))
    }

    /// The stream `last_event_id` belongs to, for the session `fingerprint` names, as its
    /// reader, and the sequence number to resume after.
    pub(super) fn resume(
        &self,
        last_event_id: &str,
        fingerprint: &str,
    ) -> Result<(Reader, u64), Unresumable> {
        let (stream, kind, seq) = parse(last_event_id).ok_or(Unresumable::Foreign)?;
        let replay = self
            .lock()
            .open
            .get(&stream)
            .filter(|r| r.session == fingerprint && r.kind == kind && !r.expired())
            .cloned()
            .ok_or(Unresumable::Unknown(kind))?;
        if seq.saturating_add(1) < replay.state().first {
            return Err(Unresumable::Overrun(kind));
        }
        Ok((Reader::new(&replay), seq))
    }
}

/// `<16 hex digits><kind letter><seq>`, as `Replay::push` mints them.
pub(super) fn parse(id: &str) -> Option<(u64, Kind, u64)> {
    let stream = u64::from_str_radix(id.get(..16)?, 16).ok()?;
    let kind = match id.get(16..17)? {
        "c" => Kind::Call,
        "l" => Kind::Listen,
        _ => return None,
    };
    Some((stream, kind, id.get(17..)?.parse().ok()?))
}

/// How far a stream has got: its last sequence number, and whether it has ended.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Progress {
    pub(super) last: u64,
    pub(super) ended: bool,
}

/// One resumable stream's buffer.
pub(super) struct Replay {
    id: u64,
    kind: Kind,
    /// The fingerprint of the session it belongs to (only that session may resume it).
    session: String,
    state: Mutex<State>,
    seq: watch::Sender<Progress>,
    /// The bytes all of the data plane's buffers hold.
    total: Arc<std::sync::atomic::AtomicUsize>,
}

/// A connection reading a stream: while one is, the stream does not expire.
pub(super) struct Reader(Arc<Replay>);

impl Reader {
    fn new(replay: &Arc<Replay>) -> Reader {
        let mut state = replay.state();
        state.readers += 1;
        state.idle_since = None;
        drop(state);
        Reader(replay.clone())
    }

    /// The stream read.
    pub(super) fn replay(&self) -> &Arc<Replay> {
        &self.0
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        let bytes = self.state().bytes;
        self.total
            .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.readers = state.readers.saturating_sub(1);
        if state.readers == 0 {
            state.idle_since = Some(Instant::now());
        }
    }
}

struct State {
    /// The sequence number of `events[0]`.
    first: u64,
    events: VecDeque<String>,
    bytes: usize,
    /// Connections reading the stream now.
    readers: usize,
    /// Since when nobody has read it.
    idle_since: Option<Instant>,
    /// How long it stays resumable once nobody reads it.
    keep: Duration,
}

impl Replay {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self) -> bool {
        let state = self.state();
        state.idle_since.is_some_and(|t| t.elapsed() > state.keep)
    }

    /// Keeps `data` as the stream's next event; its id.
    pub(super) fn push(&self, data: &str) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut state = self.state();
        state.events.push_back(data.to_string());
        state.bytes += data.len();
        self.total.fetch_add(data.len(), Relaxed);
        while state.events.len() > 1
            && (state.events.len() > MAX_EVENTS
                || state.bytes > MAX_BYTES
                || self.total.load(Relaxed) > MAX_TOTAL_BYTES)
        {
            if let Some(old) = state.events.pop_front() {
                state.bytes -= old.len();
                self.total.fetch_sub(old.len(), Relaxed);
                state.first += 1;
            }
        }
        let seq = state.first + state.events.len() as u64 - 1;
        drop(state);
        self.seq.send_modify(|p| p.last = seq);
        self.event_id(seq)
    }

    fn event_id(&self, seq: u64) -> String {
        format!("{:016x}{}{seq}", self.id, self.kind.letter())
    }

    /// Marks the stream's end (a call's answer has arrived, or its writer is gone).
    pub(super) fn end(&self) {
        self.seq.send_modify(|p| p.ended = true);
    }

    /// The whole stream reached a connected client: it need not be kept long.
    pub(super) fn delivered(&self) {
        self.state().keep = KEEP_DELIVERED;
    }

    /// The events after `seq` still buffered, with their ids.
    pub(super) fn after(&self, seq: u64) -> Result<Vec<(String, String)>, Unresumable> {
        let state = self.state();
        let next = seq.saturating_add(1);
        if next < state.first {
            return Err(Unresumable::Overrun(self.kind));
        }
        let skip = usize::try_from(next - state.first).unwrap_or(usize::MAX);
        Ok(state
            .events
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, data)| (self.event_id(state.first + i as u64), data.clone()))
            .collect())
    }

    /// Watches how far the stream has got.
    pub(super) fn progress(&self) -> watch::Receiver<Progress> {
        self.seq.subscribe()
    }

    pub(super) fn kind(&self) -> Kind {
        self.kind
    }
}

/// An SSE `message` event with an id.
pub(super) fn event_with_id(id: &str, data: &str) -> String {
    let mut wire = format!("id: {id}\nevent: message\n");
    data_lines(&mut wire, data);
    wire
}

/// `data` as an event's `data:` lines, and the blank line that ends the event.
pub(super) fn data_lines(wire: &mut String, data: &str) {
    // CR, LF and CRLF all end a line in SSE.
    let data = data.replace("\r\n", "\n").replace('\r', "\n");
    for line in data.split('\n') {
        wire.push_str("data: ");
        wire.push_str(line);
        wire.push('\n');
    }
    wire.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_resumes_after_the_last_event_its_client_saw() {
        let replays = Replays::default();
        let (r, writer) = replays.open("fp", Kind::Call).expect("room");
        let first = r.push("one");
        let _ = r.push("two");
        let _ = r.push("three");
        r.end();
        drop(writer);
        let (again, seq) = replays.resume(&first, "fp").expect("resumable");
        let again = again.replay().clone();
        let rest: Vec<String> = again
            .after(seq)
            .expect("buffered")
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert_eq!(rest, ["two", "three"]);
        assert!(again.progress().borrow().ended);
        // Another session cannot read it; a stream of the other kind is not it.
        assert_eq!(
            replays.resume(&first, "other").err(),
            Some(Unresumable::Unknown(Kind::Call))
        );
        assert_eq!(
            replays.resume("garbage", "fp").err(),
            Some(Unresumable::Foreign)
        );
        let listen_id = first.replace('c', "l");
        assert!(replays.resume(&listen_id, "fp").is_err());
    }

    #[test]
    fn buffers_are_bounded_and_say_when_they_no_longer_reach_back() {
        let replays = Replays::default();
        let (r, _writer) = replays.open("fp", Kind::Listen).expect("room");
        let first = r.push("0");
        for i in 0..=MAX_EVENTS {
            let _ = r.push(&i.to_string());
        }
        assert_eq!(
            replays.resume(&first, "fp").err(),
            Some(Unresumable::Overrun(Kind::Listen))
        );
        let big = "x".repeat(MAX_BYTES / 2 + 1);
        let _ = r.push(&big);
        let last = r.push(&big);
        assert_eq!(r.after(0).err(), Some(Unresumable::Overrun(Kind::Listen)));
        assert_eq!(r.state().events.len(), 1, "only the newest big event fits");
        assert!(r
            .after(parse(&last).expect("ours").2)
            .expect("ok")
            .is_empty());
        // An id at the end of the number range is no panic.
        assert!(r.after(u64::MAX).expect("nothing after it").is_empty());
        let edge = format!("{:016x}l{}", r.id, u64::MAX);
        assert!(replays.resume(&edge, "fp").is_ok());
    }

    #[test]
    fn data_with_line_breaks_cannot_forge_fields() {
        let wire = event_with_id("abc", "x\nid: forged\r\ndata: y\rretry: 1");
        assert_eq!(
            wire,
            "id: abc\nevent: message\ndata: x\ndata: id: forged\ndata: data: y\ndata: retry: 1\n\n"
        );
    }

    #[test]
    fn one_session_cannot_take_every_buffer_and_readers_keep_streams_alive() {
        let replays = Replays::default();
        let mut held: Vec<_> = (0..MAX_STREAMS_PER_SESSION)
            .map(|_| replays.open("greedy", Kind::Call).expect("room"))
            .collect();
        assert!(replays.open("greedy", Kind::Call).is_none());
        assert!(replays.open("other", Kind::Call).is_some());
        let (r, writer) = held.remove(0);
        let id = r.push("x");
        assert!(r.state().idle_since.is_none(), "read by its writer");
        drop(writer);
        assert!(r.state().idle_since.is_some(), "nobody reads it now");
        drop(held);
        let (reader, _) = replays.resume(&id, "greedy").expect("still buffered");
        assert!(
            reader.replay().state().idle_since.is_none(),
            "a reader again"
        );
    }
}
