//! The note store: the replicated state machine every protocol drives.
//!
//! Executing the same operations with the same timestamps in the same order gives
//! the same store on every replica: the store reads no clock and iterates only
//! ordered maps.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::{Digester, digest_of};
use crate::hlc::Timestamp;
use crate::ids::{NoteId, Version};
use crate::merge_patch;
use crate::operation::{Operation, Refusal, Reply};
use crate::request_body;
use crate::wire::size;

/// Keys the store owns: clients may echo them unchanged but never set them.
pub const METADATA_KEYS: [&str; 4] = ["id", "version", "created_at", "updated_at"];

/// A stored note: the client's object plus the metadata the store keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub id: NoteId,
    pub version: Version,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The client's object, without metadata keys. Shared, not copied, by the
    /// replies, client table entries and changes that hold the same version.
    #[serde(with = "crate::wire::json_text")]
    pub body: Arc<Map<String, Value>>,
}

impl Note {
    /// The note as clients see it: the body with the metadata merged in.
    pub fn to_json(&self) -> Value {
        let mut object = Map::clone(&self.body);
        object.insert("id".into(), Value::from(self.id.0));
        object.insert("version".into(), Value::from(self.version));
        object.insert("created_at".into(), Value::from(self.created_at.to_rfc3339()));
        object.insert("updated_at".into(), Value::from(self.updated_at.to_rfc3339()));
        Value::Object(object)
    }

    /// The same object as [`Note::to_json`], serialised straight from the note
    /// without copying its body: what the server writes on every answer.
    pub fn client_view(&self) -> ClientView<'_> {
        ClientView(self)
    }

    fn metadata_value(&self, key: &str) -> Value {
        match key {
            "id" => Value::from(self.id.0),
            "version" => Value::from(self.version),
            "created_at" => Value::from(self.created_at.to_rfc3339()),
            "updated_at" => Value::from(self.updated_at.to_rfc3339()),
            _ => Value::Null,
        }
    }
}

/// A note as clients see it, serialised with keys in the same (sorted) order as
/// [`Note::to_json`]'s object.
#[derive(Clone, Copy, Debug)]
pub struct ClientView<'a>(&'a Note);

impl Serialize for ClientView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let note = self.0;
        let (created_at, updated_at) = (note.created_at.rfc3339(), note.updated_at.rfc3339());
        // Sorted like METADATA_KEYS are among themselves; merged below with the body's sorted keys.
        let metadata: [(&str, MetadataValue<'_>); 4] = [
            ("created_at", MetadataValue::Text(created_at.as_str())),
            ("id", MetadataValue::Number(note.id.0)),
            ("updated_at", MetadataValue::Text(updated_at.as_str())),
            ("version", MetadataValue::Number(note.version)),
        ];
        let mut map = serializer.serialize_map(Some(note.body.len() + metadata.len()))?;
        let mut metadata = metadata.iter().peekable();
        for (key, value) in note.body.iter() {
            while let Some((name, metadata_value)) = metadata.next_if(|(name, _)| *name < key.as_str()) {
                map.serialize_entry(name, metadata_value)?;
            }
            map.serialize_entry(key, value)?;
        }
        for (name, metadata_value) in metadata {
            map.serialize_entry(name, metadata_value)?;
        }
        map.end()
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(untagged)]
enum MetadataValue<'a> {
    Number(u64),
    Text(&'a str),
}

/// One page of a list, ordered by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotePage {
    pub notes: Vec<Note>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next_after: Option<NoteId>,
}

/// Limits on what one note and one page may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreLimits {
    /// Largest body, counted as compact JSON bytes.
    pub body_bytes_max: usize,
    /// Largest page of a list; also the page size when a list names none.
    pub list_limit_max: u32,
    /// A page holds fewer notes than asked for when they would weigh more than
    /// this, counted as [`wire::size::note_bytes`]: a page travels in one message
    /// when a backup relays a list. Always at least one note.
    pub page_bytes_max: usize,
}

impl Default for StoreLimits {
    fn default() -> StoreLimits {
        StoreLimits { body_bytes_max: 64 * 1024, list_limit_max: 1000, page_bytes_max: 1024 * 1024 }
    }
}

/// The notes and what the store keeps about them. Every note's digest is kept
/// beside it and summed, so the digest of the whole store costs nothing to read
/// (see [`NoteStore::digest`]); a store built from a peer's snapshot is checked
/// by [`NoteStore::from_snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteStore {
    limits: StoreLimits,
    next_id: NoteId,
    notes: BTreeMap<NoteId, StoredNote>,
    /// The wrapping sum of every stored note's digest.
    note_digest_sum: u64,
    /// The latest timestamp of any applied write; the floor for the next one.
    last_timestamp: Timestamp,
    /// Successful writes applied: the position of the change feed.
    changes_applied: u64,
    /// Changes applied since the host last took them; not part of the replicated state.
    outbox: ChangeOutbox,
}

/// A note with its digest and its body's size, measured in one pass over its JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasuredNote {
    pub note: Note,
    /// [`digest_of`] the note.
    pub digest: u64,
    /// Its body's compact JSON size.
    pub body_bytes: usize,
}

impl MeasuredNote {
    pub fn measure(note: Note) -> MeasuredNote {
        let text = serde_json::to_string(&*note.body).expect("a JSON object always serialises");
        MeasuredNote::with_text(note, &text)
    }

    /// `text` is the note's body as compact JSON. The digest is that of the note's
    /// encoding, in which the body travels as this text (see [`crate::wire::json_text`]).
    fn with_text(note: Note, text: &str) -> MeasuredNote {
        let digest = digest_of(&(note.id, note.version, note.created_at, note.updated_at, text));
        MeasuredNote { digest, body_bytes: text.len(), note }
    }
}

type StoredNote = MeasuredNote;

/// What a store holds besides its notes, as a snapshot carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    pub next_id: NoteId,
    pub last_timestamp: Timestamp,
    pub changes_applied: u64,
    pub notes: u64,
}

/// One successful write, as the change feed shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The store's `changes_applied` after this change: 1 for the first write. Replicas
    /// that apply writes in one order (vr, remote-write) number them alike.
    pub commit: u64,
    /// `create`, `replace`, `patch` or `delete`.
    pub operation: String,
    pub id: NoteId,
    /// The note after the change; `None` after a delete.
    pub note: Option<Note>,
}

/// Changes waiting for the host. Two stores with the same notes are equal whatever
/// their hosts have taken, so the outbox never counts in a comparison.
#[derive(Clone, Debug, Default)]
struct ChangeOutbox(Vec<Change>);

impl PartialEq for ChangeOutbox {
    fn eq(&self, _other: &ChangeOutbox) -> bool {
        true
    }
}

impl Eq for ChangeOutbox {}

impl NoteStore {
    pub fn new(limits: StoreLimits) -> NoteStore {
        NoteStore {
            limits,
            next_id: NoteId(1),
            notes: BTreeMap::new(),
            note_digest_sum: 0,
            last_timestamp: Timestamp(0),
            changes_applied: 0,
            outbox: ChangeOutbox::default(),
        }
    }

    pub fn get(&self, id: NoteId) -> Option<&Note> {
        self.notes.get(&id).map(|stored| &stored.note)
    }

    pub fn len(&self) -> usize {
        self.notes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.notes.is_empty()
    }

    pub fn next_id(&self) -> NoteId {
        self.next_id
    }

    pub fn last_timestamp(&self) -> Timestamp {
        self.last_timestamp
    }

    pub fn notes(&self) -> impl Iterator<Item = &Note> {
        self.notes.values().map(|stored| &stored.note)
    }

    /// Every note with its body's compact JSON size, in id order.
    pub fn notes_with_sizes(&self) -> impl Iterator<Item = (&Note, usize)> {
        self.notes.values().map(|stored| (&stored.note, stored.body_bytes))
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    pub fn meta(&self) -> StoreMeta {
        StoreMeta {
            next_id: self.next_id,
            last_timestamp: self.last_timestamp,
            changes_applied: self.changes_applied,
            notes: self.notes.len() as u64,
        }
    }

    /// The digest of the replicated state the store holds: equal on two replicas
    /// exactly when (but for a hash collision) they hold the same notes, next id,
    /// latest timestamp and change count.
    pub fn digest(&self) -> u64 {
        store_digest(&self.meta(), self.note_digest_sum)
    }

    /// A store from a snapshot: `meta` and the notes in id order. Refused unless
    /// every note is stored under its own id, in increasing order, below `next_id`,
    /// with a version of at least 1 and a body within the limits, and the count
    /// matches. The limits are this replica's own.
    pub fn from_snapshot(limits: StoreLimits, meta: StoreMeta, notes: Vec<MeasuredNote>) -> Result<NoteStore, String> {
        if meta.next_id.0 == 0 {
            return Err("next_id starts at 1".into());
        }
        if meta.notes != notes.len() as u64 {
            return Err(format!("{} notes where the snapshot has {}", notes.len(), meta.notes));
        }
        let mut store = NoteStore::new(limits);
        store.next_id = meta.next_id;
        store.last_timestamp = meta.last_timestamp;
        store.changes_applied = meta.changes_applied;
        for measured in notes {
            store.check_arriving(&measured.note)?;
            if measured.body_bytes > limits.body_bytes_max {
                return Err(format!("note {} has a body of {} bytes", measured.note.id, measured.body_bytes));
            }
            store.put(measured);
        }
        store.check_invariants();
        Ok(store)
    }

    /// Checks a note arriving from a peer, in increasing id order, against this store.
    fn check_arriving(&self, note: &Note) -> Result<(), String> {
        let after_last = self.notes.last_key_value().is_none_or(|(last, _)| *last < note.id);
        if !after_last || note.id.0 == 0 || note.id >= self.next_id || note.version == 0 {
            return Err(format!("note {} is inconsistent with the store", note.id));
        }
        Ok(())
    }

    fn put(&mut self, stored: StoredNote) {
        self.note_digest_sum = self.note_digest_sum.wrapping_add(stored.digest);
        if let Some(replaced) = self.notes.insert(stored.note.id, stored) {
            self.note_digest_sum = self.note_digest_sum.wrapping_sub(replaced.digest);
        }
    }

    fn take(&mut self, id: NoteId) -> Option<StoredNote> {
        let removed = self.notes.remove(&id)?;
        self.note_digest_sum = self.note_digest_sum.wrapping_sub(removed.digest);
        Some(removed)
    }

    /// Answers a read without changing anything.
    pub fn query(&self, operation: &Operation) -> Reply {
        match operation {
            Operation::Get { id } => match self.get(*id) {
                Some(note) => Reply::Note { note: note.clone() },
                None => Reply::refused(Refusal::NotFound { id: *id }),
            },
            Operation::List { after, limit } => Reply::Page { page: self.list(*after, *limit) },
            write => unreachable!("query called with a write: {}", write.name()),
        }
    }

    /// Up to `limit` notes after `after`, in id order, within `page_bytes_max`.
    pub fn list(&self, after: Option<NoteId>, limit: Option<u32>) -> NotePage {
        let limit = limit.unwrap_or(self.limits.list_limit_max).min(self.limits.list_limit_max);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let start = after.map_or(0, |after| after.0.saturating_add(1));
        let mut remaining = self.notes.range(NoteId(start)..).peekable();
        let (mut notes, mut bytes) = (Vec::new(), 0);
        while let Some((_, stored)) = remaining.peek() {
            let note_bytes = size::note_bytes(stored.body_bytes);
            let full = notes.len() == limit || bytes + note_bytes > self.limits.page_bytes_max;
            if !notes.is_empty() && full || limit == 0 {
                break;
            }
            bytes += note_bytes;
            notes.push(stored.note.clone());
            remaining.next();
        }
        let next_after = match (remaining.peek(), notes.last()) {
            (Some(_), Some(last)) => Some(last.id),
            _ => None,
        };
        NotePage { notes, next_after }
    }

    /// Executes one operation. Writes are stamped with `timestamp`, chosen where the
    /// operation was ordered; the same operation and timestamp give the same reply
    /// and the same store on every replica.
    pub fn execute(&mut self, operation: &Operation, timestamp: Timestamp) -> Reply {
        let reply = match operation {
            Operation::Get { .. } | Operation::List { .. } => return self.query(operation),
            Operation::Create { body } => self.create(body, timestamp),
            Operation::Replace { id, body, if_match } => self.replace(*id, body, *if_match, timestamp),
            Operation::Patch { id, patch, if_match } => self.patch(*id, patch, *if_match, timestamp),
            Operation::Delete { id, if_match } => self.delete(*id, *if_match),
        };
        if let Some((id, note)) = changed_note(&reply) {
            self.changes_applied += 1;
            let change = Change { commit: self.changes_applied, operation: operation.name().into(), id, note };
            self.outbox.0.push(change);
        }
        self.check_invariants();
        reply
    }

    /// The changes applied since the last call, in order. The replica hands them to
    /// its host as [`crate::Event::Committed`] after every input.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.outbox.0)
    }

    /// Successful writes applied so far: the change feed's latest commit.
    pub fn changes_applied(&self) -> u64 {
        self.changes_applied
    }

    fn create(&mut self, body: &Value, timestamp: Timestamp) -> Reply {
        let (body, body_text) = match self.validate_body(body, None) {
            Ok(valid) => valid,
            Err(refusal) => return Reply::refused(refusal),
        };
        let id = self.next_id;
        let Some(next_id) = id.0.checked_add(1) else {
            return Reply::refused(Refusal::unavailable("note ids are exhausted"));
        };
        self.next_id = NoteId(next_id);
        let note = Note { id, version: 1, created_at: timestamp, updated_at: timestamp, body: Arc::new(body) };
        self.stamp(timestamp);
        self.put(StoredNote::with_text(note.clone(), &body_text));
        Reply::Note { note }
    }

    fn replace(&mut self, id: NoteId, body: &Value, if_match: Option<Version>, timestamp: Timestamp) -> Reply {
        let note = match self.writable(id, if_match) {
            Ok(note) => note,
            Err(refusal) => return Reply::refused(refusal),
        };
        match self.validate_body(body, Some(note)) {
            Ok((body, body_text)) => self.update(id, body, &body_text, timestamp),
            Err(refusal) => Reply::refused(refusal),
        }
    }

    fn patch(&mut self, id: NoteId, patch: &Value, if_match: Option<Version>, timestamp: Timestamp) -> Reply {
        let note = match self.writable(id, if_match) {
            Ok(note) => note,
            Err(refusal) => return Reply::refused(refusal),
        };
        let patch = match patch {
            Value::Object(members) => {
                let mut members = members.clone();
                if let Err(refusal) = strip_metadata(&mut members, Some(note)) {
                    return Reply::refused(refusal);
                }
                Value::Object(members)
            }
            other => other.clone(),
        };
        let mut merged = Value::Object(Map::clone(&note.body));
        merge_patch::apply(&mut merged, &patch);
        let merged = match merged {
            Value::Object(members) => self.validate_members(members, Some(note)),
            // A patch that is no object replaces the whole note, which must be one.
            other => self.validate_body(&other, Some(note)),
        };
        match merged {
            Ok((body, body_text)) => self.update(id, body, &body_text, timestamp),
            Err(refusal) => Reply::refused(refusal),
        }
    }

    fn delete(&mut self, id: NoteId, if_match: Option<Version>) -> Reply {
        if let Err(refusal) = self.writable(id, if_match) {
            return Reply::refused(refusal);
        }
        self.take(id);
        Reply::Deleted { id }
    }

    fn writable(&self, id: NoteId, if_match: Option<Version>) -> Result<&Note, Refusal> {
        let note = self.get(id).ok_or(Refusal::NotFound { id })?;
        match if_match {
            Some(expected) if expected != note.version => {
                Err(Refusal::VersionMismatch { id, expected, actual: note.version })
            }
            _ => Ok(note),
        }
    }

    fn update(&mut self, id: NoteId, body: Map<String, Value>, body_text: &str, timestamp: Timestamp) -> Reply {
        let StoredNote { mut note, .. } = self.take(id).expect("update follows a successful writable()");
        // Ordering replicas stamp writes with a hybrid logical clock, so this is
        // normally the timestamp given; the floor keeps a note's updated_at moving
        // forward whatever a peer sent, identically on every replica.
        let updated_at = timestamp.max(Timestamp(note.updated_at.0.saturating_add(1)));
        note.body = Arc::new(body);
        note.version += 1;
        note.updated_at = updated_at;
        self.put(StoredNote::with_text(note.clone(), body_text));
        self.stamp(updated_at);
        Reply::Note { note }
    }

    fn stamp(&mut self, timestamp: Timestamp) {
        self.last_timestamp = self.last_timestamp.max(timestamp);
    }

    /// The body to store and its compact JSON, or why it cannot be stored.
    fn validate_body(&self, body: &Value, existing: Option<&Note>) -> Result<(Map<String, Value>, String), Refusal> {
        let Value::Object(members) = body else {
            return Err(Refusal::invalid("a note must be a JSON object"));
        };
        self.validate_members(members.clone(), existing)
    }

    fn validate_members(
        &self,
        mut members: Map<String, Value>,
        existing: Option<&Note>,
    ) -> Result<(Map<String, Value>, String), Refusal> {
        strip_metadata(&mut members, existing)?;
        // Merging never nests deeper than the note and the patch already were, so
        // only a host that skipped `request_body::parse` can trip this.
        let depth = 1 + members.values().map(request_body::depth).max().unwrap_or(0);
        if depth > request_body::DEPTH_MAX {
            return Err(Refusal::invalid(format!(
                "a note's body nests arrays and objects deeper than {} levels",
                request_body::DEPTH_MAX
            )));
        }
        // Written out once: the text gives the size here and the note's digest later.
        let text = serde_json::to_string(&members).expect("a JSON object always serialises");
        if text.len() > self.limits.body_bytes_max {
            return Err(Refusal::invalid(format!(
                "a note's body is {} bytes, over the limit of {} bytes",
                text.len(),
                self.limits.body_bytes_max
            )));
        }
        Ok((members, text))
    }

    /// Replaces the notes with a snapshot's, as state transfer does. The limits are
    /// this replica's own; changes the host has not taken yet are still handed over.
    pub fn restore(&mut self, snapshot: NoteStore) {
        let limits = self.limits;
        let outbox = std::mem::take(&mut self.outbox);
        *self = NoteStore { limits, outbox, ..snapshot };
        self.check_invariants();
    }

    fn check_invariants(&self) {
        if let Some((last_id, _)) = self.notes.last_key_value() {
            assert!(*last_id < self.next_id, "every stored id was assigned before next_id");
        }
        assert!(self.next_id.0 >= 1, "ids start at 1");
        if cfg!(debug_assertions) {
            let sum = self.notes.values().fold(0u64, |sum, stored| sum.wrapping_add(stored.digest));
            assert_eq!(sum, self.note_digest_sum, "the digest sum follows the notes");
        }
    }
}

/// The digest of a store's state from its metadata and the sum of its notes' digests.
pub(crate) fn store_digest(meta: &StoreMeta, note_digest_sum: u64) -> u64 {
    let mut digester = Digester::new();
    digester.add(meta);
    digester.add(&note_digest_sum);
    digester.finish()
}

/// The note a successful write left, or `None` with its id for a delete.
fn changed_note(reply: &Reply) -> Option<(NoteId, Option<Note>)> {
    match reply {
        Reply::Note { note } => Some((note.id, Some(note.clone()))),
        Reply::Deleted { id } => Some((*id, None)),
        Reply::Page { .. } | Reply::Refused { .. } => None,
    }
}

/// Removes metadata keys that echo the stored values; any other value for them is refused.
fn strip_metadata(members: &mut Map<String, Value>, existing: Option<&Note>) -> Result<(), Refusal> {
    for key in METADATA_KEYS {
        let Some(given) = members.remove(key) else { continue };
        let matches_stored = existing.is_some_and(|note| note.metadata_value(key) == given);
        if !matches_stored {
            return Err(Refusal::invalid(format!("`{key}` is set by the store and cannot be changed")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store() -> NoteStore {
        NoteStore::new(StoreLimits { body_bytes_max: 64, list_limit_max: 2, page_bytes_max: 1024 })
    }

    fn create(store: &mut NoteStore, body: Value, at: u64) -> Reply {
        store.execute(&Operation::Create { body }, Timestamp(at))
    }

    fn note_reply(id: u64, version: Version, created: u64, updated: u64, body: Value) -> Reply {
        let Value::Object(body) = body else { panic!("test bodies are objects") };
        Reply::Note {
            note: Note {
                id: NoteId(id),
                version,
                created_at: Timestamp(created),
                updated_at: Timestamp(updated),
                body: body.into(),
            },
        }
    }

    #[test]
    fn a_measured_note_has_the_digest_of_its_encoding() {
        let mut store = store();
        let Reply::Note { note } = create(&mut store, json!({"t": "é\n", "n": [1.5, null]}), 10) else { panic!() };
        let measured = MeasuredNote::measure(note.clone());
        assert_eq!(measured.digest, digest_of(&note));
        assert_eq!(measured.body_bytes, request_body::compact_size(&*note.body));
        assert_eq!(store.notes.get(&note.id), Some(&measured), "the store measured it alike");
    }

    #[test]
    fn ids_are_sequential_from_one_and_never_reused() {
        let mut store = store();
        assert_eq!(create(&mut store, json!({"t": "a"}), 10), note_reply(1, 1, 10, 10, json!({"t": "a"})));
        assert_eq!(create(&mut store, json!({"t": "b"}), 11), note_reply(2, 1, 11, 11, json!({"t": "b"})));
        assert_eq!(
            store.execute(&Operation::Delete { id: NoteId(2), if_match: None }, Timestamp(12)),
            Reply::Deleted { id: NoteId(2) }
        );
        assert_eq!(create(&mut store, json!({"t": "c"}), 13), note_reply(3, 1, 13, 13, json!({"t": "c"})));
    }

    #[test]
    fn replace_and_patch_add_one_to_the_version() {
        let mut store = store();
        create(&mut store, json!({"a": 1, "b": 2}), 10);
        let replace = Operation::Replace { id: NoteId(1), body: json!({"a": 5}), if_match: None };
        assert_eq!(store.execute(&replace, Timestamp(20)), note_reply(1, 2, 10, 20, json!({"a": 5})));
        let patch = Operation::Patch { id: NoteId(1), patch: json!({"a": null, "c": {"d": 1}}), if_match: Some(2) };
        assert_eq!(store.execute(&patch, Timestamp(30)), note_reply(1, 3, 10, 30, json!({"c": {"d": 1}})));
    }

    #[test]
    fn the_client_view_serialises_like_to_json() {
        let mut store = store();
        for body in
            [json!({}), json!({"a": 1, "id_x": [1], "title": "t", "zz": {"k": null}}), json!({"version_note": "v"})]
        {
            create(&mut store, body, 10);
        }
        for note in store.notes() {
            assert_eq!(serde_json::to_string(&note.client_view()).unwrap(), note.to_json().to_string());
        }
    }

    #[test]
    fn conditional_writes_check_the_version() {
        let mut store = store();
        create(&mut store, json!({}), 10);
        let mismatch = Refusal::VersionMismatch { id: NoteId(1), expected: 7, actual: 1 };
        for operation in [
            Operation::Replace { id: NoteId(1), body: json!({}), if_match: Some(7) },
            Operation::Patch { id: NoteId(1), patch: json!({}), if_match: Some(7) },
            Operation::Delete { id: NoteId(1), if_match: Some(7) },
        ] {
            assert_eq!(store.execute(&operation, Timestamp(20)), Reply::refused(mismatch.clone()));
        }
        assert_eq!(store.get(NoteId(1)).map(|note| note.version), Some(1));
        assert_eq!(
            store.execute(&Operation::Delete { id: NoteId(1), if_match: Some(1) }, Timestamp(21)),
            Reply::Deleted { id: NoteId(1) }
        );
    }

    #[test]
    fn a_missing_note_is_not_found_even_with_if_match() {
        let mut store = store();
        let not_found = Reply::refused(Refusal::NotFound { id: NoteId(9) });
        for operation in [
            Operation::Get { id: NoteId(9) },
            Operation::Replace { id: NoteId(9), body: json!({}), if_match: Some(1) },
            Operation::Patch { id: NoteId(9), patch: json!({}), if_match: None },
            Operation::Delete { id: NoteId(9), if_match: Some(1) },
        ] {
            assert_eq!(store.execute(&operation, Timestamp(1)), not_found);
        }
    }

    #[test]
    fn bodies_must_be_objects_within_the_size_limit() {
        let mut store = store();
        assert_eq!(create(&mut store, json!([1]), 1), Reply::refused(Refusal::invalid("a note must be a JSON object")));
        let Reply::Refused { refusal: Refusal::Invalid { reason } } =
            create(&mut store, json!({"big": "x".repeat(100)}), 2)
        else {
            panic!("an oversized body is invalid");
        };
        assert!(reason.contains("over the limit of 64 bytes"), "{reason}");
        create(&mut store, json!({}), 3);
        let patch_to_array = Operation::Patch { id: NoteId(1), patch: json!(["x"]), if_match: None };
        assert_eq!(
            store.execute(&patch_to_array, Timestamp(4)),
            Reply::refused(Refusal::invalid("a note must be a JSON object"))
        );
        assert_eq!(store.next_id(), NoteId(2), "refused creates assign no id");
    }

    #[test]
    fn bodies_nested_deeper_than_frames_can_carry_are_invalid() {
        let mut store = store();
        let mut nested = json!(1);
        for _ in 0..request_body::DEPTH_MAX {
            nested = json!([nested]);
        }
        let Reply::Refused { refusal: Refusal::Invalid { reason } } = create(&mut store, json!({ "a": nested }), 1)
        else {
            panic!("a body nested too deep is invalid");
        };
        assert!(reason.contains("deeper than"), "{reason}");
    }

    #[test]
    fn metadata_keys_are_ignored_when_echoed_and_refused_otherwise() {
        let mut store = store();
        let Reply::Note { note } = create(&mut store, json!({"t": 1}), 10) else { panic!("created") };
        let echoed = note.to_json();
        let round_trip = Operation::Replace { id: NoteId(1), body: echoed, if_match: None };
        assert_eq!(store.execute(&round_trip, Timestamp(20)), note_reply(1, 2, 10, 20, json!({"t": 1})));
        let forged = Operation::Patch { id: NoteId(1), patch: json!({"version": 99}), if_match: None };
        assert_eq!(
            store.execute(&forged, Timestamp(30)),
            Reply::refused(Refusal::invalid("`version` is set by the store and cannot be changed"))
        );
        assert_eq!(
            create(&mut store, json!({"id": 5}), 40),
            Reply::refused(Refusal::invalid("`id` is set by the store and cannot be changed"))
        );
    }

    #[test]
    fn a_note_is_never_stamped_earlier_than_its_last_update() {
        let mut store = store();
        create(&mut store, json!({}), 50);
        let replace = Operation::Replace { id: NoteId(1), body: json!({"a": 1}), if_match: None };
        assert_eq!(store.execute(&replace, Timestamp(10)), note_reply(1, 2, 50, 51, json!({"a": 1})));
    }

    #[test]
    fn successful_writes_are_numbered_changes() {
        let mut store = store();
        create(&mut store, json!({"a": 1}), 10);
        store.execute(&Operation::Get { id: NoteId(1) }, Timestamp(11));
        store.execute(&Operation::Delete { id: NoteId(7), if_match: None }, Timestamp(12));
        store.execute(&Operation::Delete { id: NoteId(1), if_match: None }, Timestamp(13));
        let changes = store.take_changes();
        let summary: Vec<(u64, &str, u64, bool)> = changes
            .iter()
            .map(|change| (change.commit, change.operation.as_str(), change.id.0, change.note.is_some()))
            .collect();
        assert_eq!(summary, vec![(1, "create", 1, true), (2, "delete", 1, false)]);
        assert_eq!(store.take_changes(), vec![], "taken once");
        assert_eq!(store.changes_applied(), 2);
    }

    #[test]
    fn list_pages_in_id_order() {
        let mut store = store();
        for at in 1..=5 {
            create(&mut store, json!({}), at);
        }
        store.execute(&Operation::Delete { id: NoteId(2), if_match: None }, Timestamp(6));
        let ids = |page: &NotePage| page.notes.iter().map(|note| note.id.0).collect::<Vec<_>>();
        let first = store.list(None, None);
        assert_eq!((ids(&first), first.next_after), (vec![1, 3], Some(NoteId(3))));
        let second = store.list(first.next_after, Some(5));
        assert_eq!((ids(&second), second.next_after), (vec![4, 5], None));
        let after_end = store.list(Some(NoteId(u64::MAX)), Some(1));
        assert_eq!((ids(&after_end), after_end.next_after), (vec![], None));
    }
}
