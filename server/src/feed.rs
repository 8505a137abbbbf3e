//! The change feed of one replica: what `GET /notes/watch` streams.
//!
//! The driver owns the [`Feed`] next to the replica, so publishing a change and
//! subscribing happen between two inputs of the replica, never during one: a new
//! watcher's backlog (or snapshot) and its live stream meet exactly, without a gap
//! or a duplicate.
//!
//! Messages are serialised once, here, and shared by every watcher. The feed keeps
//! a ring of recent changes, bounded in count and in bytes, for watchers that
//! resume with `?from=N`; a watcher that asks for older changes gets a snapshot of
//! the store instead. Each watcher's live stream is a bounded broadcast channel: a
//! watcher that falls behind it is told so and closed, rather than buffered.

use axum::extract::ws::Utf8Bytes;
use noted_core::{Change, NoteStore};
use serde_json::json;
use std::collections::VecDeque;
use tokio::sync::broadcast;

/// Recent changes kept for watchers that resume.
pub const RECENT_CHANGES_MAX: usize = 10_000;
/// Bytes of recent changes kept, whatever their count: notes may be large.
pub const RECENT_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Messages a watcher may fall behind the live stream before it is closed.
pub const LIVE_BUFFER: usize = 1024;

/// One message of the feed, serialised once; clones share the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedMessage {
    /// The change's commit number, or the commit a snapshot was taken at.
    pub commit: u64,
    pub json: Utf8Bytes,
}

/// What a new watcher gets: messages to send first, then the live stream.
#[derive(Debug)]
pub struct Subscription {
    pub backlog: Vec<FeedMessage>,
    pub live: broadcast::Receiver<FeedMessage>,
    /// Messages up to this commit are already known to the watcher and are skipped
    /// (a watcher that resumes on a replica that is behind what it has seen).
    pub known_through: u64,
}

#[derive(Debug)]
pub struct Feed {
    /// Contiguous changes ending at `published`, oldest first.
    recent: VecDeque<FeedMessage>,
    recent_bytes: usize,
    /// The store's commit the feed has reached.
    published: u64,
    live: broadcast::Sender<FeedMessage>,
    recent_changes_max: usize,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed::new()
    }
}

impl Feed {
    pub fn new() -> Feed {
        Feed::keeping(RECENT_CHANGES_MAX)
    }

    /// A feed that keeps `recent_changes_max` changes for watchers that resume.
    pub fn keeping(recent_changes_max: usize) -> Feed {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Feed { recent: VecDeque::new(), recent_bytes: 0, published: 0, live, recent_changes_max }
    }

    /// Publishes the changes the replica applied during one input, in order. When
    /// they do not follow on from what was published (a state transfer replaced the
    /// store and skipped changes), watchers get a snapshot of the store instead, and
    /// resuming starts again from that snapshot.
    pub fn publish(&mut self, changes: Vec<Change>, store: &NoteStore) {
        for change in changes {
            if change.commit != self.published + 1 {
                break;
            }
            let json = serde_json::to_string(&change_message(&change)).expect("a change serialises");
            let message = FeedMessage { commit: change.commit, json: json.into() };
            self.published = change.commit;
            self.remember(message.clone());
            // No watcher is no error: the change is kept for those who resume.
            let _ = self.live.send(message);
        }
        if store.changes_applied() != self.published {
            self.recent.clear();
            self.recent_bytes = 0;
            self.published = store.changes_applied();
            if self.live.receiver_count() > 0 {
                let _ = self.live.send(snapshot_message(store));
            }
        }
    }

    /// A watcher's start: after `from` from the recent changes when they reach back
    /// that far, else (or without `from`) a snapshot of `store`; then live changes.
    pub fn subscribe(&self, from: Option<u64>, store: &NoteStore) -> Subscription {
        let live = self.live.subscribe();
        let oldest_resumable = self.published - self.recent.len() as u64;
        match from {
            Some(from) if from >= self.published => Subscription { backlog: Vec::new(), live, known_through: from },
            Some(from) if from >= oldest_resumable => Subscription {
                backlog: self.recent.iter().filter(|message| message.commit > from).cloned().collect(),
                live,
                known_through: from,
            },
            _ => {
                let snapshot = snapshot_message(store);
                let known_through = snapshot.commit;
                Subscription { backlog: vec![snapshot], live, known_through }
            }
        }
    }

    /// The latest commit published.
    pub fn published(&self) -> u64 {
        self.published
    }

    fn remember(&mut self, message: FeedMessage) {
        self.recent_bytes += message.json.as_str().len();
        self.recent.push_back(message);
        while self.recent.len() > self.recent_changes_max || self.recent_bytes > RECENT_BYTES_MAX {
            let Some(oldest) = self.recent.pop_front() else { break };
            self.recent_bytes -= oldest.json.as_str().len();
        }
    }
}

/// `{"commit":N,"op":"patch","id":7,"version":3,"note":{...}}`; a delete has a null
/// version and note. Serialised straight from the change (keys sorted, as a JSON
/// object of serde_json would have them): the feed serialises every change the
/// replica applies.
fn change_message(change: &Change) -> impl serde::Serialize + '_ {
    #[derive(serde::Serialize)]
    struct ChangeMessage<'a> {
        commit: u64,
        id: u64,
        note: Option<noted_core::store::ClientView<'a>>,
        op: &'a str,
        version: Option<u64>,
    }
    ChangeMessage {
        commit: change.commit,
        id: change.id.0,
        note: change.note.as_ref().map(noted_core::Note::client_view),
        op: &change.operation,
        version: change.note.as_ref().map(|note| note.version),
    }
}

/// `{"snapshot":{"commit":N,"notes":[...]}}`: every note at the store's latest commit.
pub fn snapshot_message(store: &NoteStore) -> FeedMessage {
    let notes: Vec<_> = store.notes().map(noted_core::Note::client_view).collect();
    let commit = store.changes_applied();
    let json = json!({ "snapshot": { "commit": commit, "notes": notes } });
    FeedMessage { commit, json: json.to_string().into() }
}

#[cfg(test)]
mod tests {
    use noted_core::Operation;
    use noted_core::hlc::Timestamp;
    use noted_core::store::StoreLimits;
    use serde_json::{Value, json};

    use super::*;

    fn create(store: &mut NoteStore, title: &str) -> Vec<Change> {
        let timestamp = Timestamp(store.last_timestamp().0 + 1);
        store.execute(&Operation::Create { body: json!({ "title": title }) }, timestamp);
        store.take_changes()
    }

    fn commits(messages: &[FeedMessage]) -> Vec<u64> {
        messages.iter().map(|message| message.commit).collect()
    }

    fn parsed(message: &FeedMessage) -> Value {
        serde_json::from_str(message.json.as_str()).expect("feed messages are JSON")
    }

    #[test]
    fn a_watcher_resumes_from_recent_changes_and_then_from_a_snapshot_once_they_are_gone() {
        let mut store = NoteStore::new(StoreLimits::default());
        let mut feed = Feed::keeping(3);
        for title in ["a", "b", "c", "d", "e"] {
            let changes = create(&mut store, title);
            feed.publish(changes, &store);
        }
        assert_eq!(commits(&feed.subscribe(Some(3), &store).backlog), [4, 5]);
        assert_eq!(commits(&feed.subscribe(Some(2), &store).backlog), [3, 4, 5], "the oldest resumable point");
        let too_old = feed.subscribe(Some(1), &store);
        assert_eq!(commits(&too_old.backlog), [5]);
        assert_eq!(parsed(&too_old.backlog[0])["snapshot"]["notes"].as_array().map(Vec::len), Some(5));
        let fresh = feed.subscribe(None, &store);
        assert!(parsed(&fresh.backlog[0])["snapshot"].is_object(), "no ?from= starts from a snapshot");
        let ahead = feed.subscribe(Some(9), &store);
        assert!(ahead.backlog.is_empty());
        assert_eq!(ahead.known_through, 9, "a watcher ahead of this replica skips what it knows");
    }

    #[test]
    fn live_watchers_get_every_change_then_a_snapshot_when_a_state_transfer_skips_changes() {
        let mut store = NoteStore::new(StoreLimits::default());
        let mut feed = Feed::new();
        let mut watcher = feed.subscribe(Some(0), &store).live;
        let changes = create(&mut store, "first");
        feed.publish(changes, &store);
        let change = parsed(&watcher.try_recv().expect("the change"));
        assert_eq!(change["commit"], 1);
        assert_eq!(change["op"], "create");
        assert_eq!(change["note"]["title"], "first");

        let mut ahead = NoteStore::new(StoreLimits::default());
        for title in ["x", "y", "z", "w"] {
            create(&mut ahead, title);
        }
        store.restore(ahead);
        feed.publish(Vec::new(), &store);
        let snapshot = watcher.try_recv().expect("a snapshot");
        assert_eq!(snapshot.commit, 4);
        assert_eq!(parsed(&snapshot)["snapshot"]["notes"].as_array().map(Vec::len), Some(4));
        assert_eq!(commits(&feed.subscribe(Some(1), &store).backlog), [4], "older changes were skipped: snapshot");

        let changes = create(&mut store, "after");
        feed.publish(changes, &store);
        assert_eq!(watcher.try_recv().expect("the next change").commit, 5);
        assert_eq!(commits(&feed.subscribe(Some(4), &store).backlog), [5]);
    }
}
