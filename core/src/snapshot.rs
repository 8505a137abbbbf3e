//! Snapshots in bounded pieces: how a replica hands its whole state (the store
//! and the client table) to one that is too far behind for the log to help.
//!
//! ```text
//! receiver                                       source
//!   ── (the protocol's request for state) ──────▶  freezes an image at `sequence`
//!   ◀── manifest: id (sequence, digest), counts ─
//!   ── GetChunk { id, chunk: 0 } ───────────────▶
//!   ── GetChunk { id, chunk: 1 } ───────────────▶  (CHUNKS_IN_FLIGHT asked for
//!   ◀── Chunk { id, chunk: 0, pieces } ───────────   ahead; each at most
//!   ── GetChunk { id, chunk: 2 } ───────────────▶    `message_bytes_max`)
//!   ◀── Chunk { id, chunk: 1, pieces } ───────────
//!   ...                                           ...
//!   all pieces: recompute the digest; install only if it matches
//! ```
//!
//! A snapshot is a sequence of **pieces**: the client table's records, oldest
//! first, then the notes in id order. An **image** is the state frozen at one
//! sequence number (notes share their bodies with the live store, so freezing
//! copies no body), cut into numbered chunks of consecutive pieces, as many as
//! fit in `message_bytes_max` and at least one. The source keeps a few images
//! ([`IMAGES_MAX`]) while receivers ask for them and drops those unused for
//! [`IMAGE_IDLE_NANOS`]; between chunks it handles every other input as usual,
//! so a large transfer never holds up the protocol.
//!
//! The receiver sets the pace: it asks for at most [`CHUNKS_IN_FLIGHT`] chunks
//! beyond those it holds, takes them in order (one that arrives early is asked
//! for again later), and asks again for what does not come ([`Download::retry_at`]):
//! a lost message or connection resumes from the last chunk received, from the
//! same source, whatever else happened meanwhile (a view change does not change
//! a snapshot: it is committed state). A snapshot is named by its sequence number
//! and its **digest** (see [`crate::digest`]), which depends on the state alone:
//! the receiver recomputes it from the pieces and installs nothing that does not
//! match, so pieces of two snapshots never mix and a missing piece is never
//! papered over.

use serde::{Deserialize, Serialize};

use crate::client_table::{ClientRecord, ClientTable, table_digest};
use crate::config::Defect;
use crate::digest::Digester;
use crate::ids::ReplicaId;
use crate::replica::DropReason;
use crate::store::{MeasuredNote, Note, NoteStore, StoreLimits, StoreMeta, store_digest};
use crate::time::Instant;
use crate::wire::size;

/// Images a replica keeps at once; asking for another drops the least recently used.
pub const IMAGES_MAX: usize = 2;

/// An image nobody asked a chunk of for this long is dropped.
pub const IMAGE_IDLE_NANOS: u64 = 60 * 1_000_000_000;

/// Chunks a receiver asks for beyond those it holds: enough to keep source, link
/// and receiver busy at once, few enough to bound what waits in queues.
pub const CHUNKS_IN_FLIGHT: u64 = 4;

/// A snapshot's name: the state after `sequence`, with its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SnapshotId {
    pub sequence: u64,
    pub digest: u64,
}

impl core::fmt::Display for SnapshotId {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(formatter, "snapshot {}/{:016x}", self.sequence, self.digest)
    }
}

/// What a receiver learns before the first chunk: the name, how many pieces and
/// chunks follow, and what the state holds besides them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: SnapshotId,
    pub store: StoreMeta,
    pub clients: u64,
    pub clients_max: u64,
    pub evictions: u64,
    pub chunks: u64,
}

impl Manifest {
    pub fn pieces(&self) -> u64 {
        self.clients.saturating_add(self.store.notes)
    }
}

/// Chunk number `index` of a snapshot: the pieces from `first`, client records
/// while below the manifest's client count, then notes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub snapshot: SnapshotId,
    pub index: u64,
    pub first: u64,
    pub clients: Vec<ClientRecord>,
    pub notes: Vec<Note>,
}

impl Chunk {
    pub fn pieces(&self) -> u64 {
        (self.clients.len() + self.notes.len()) as u64
    }
}

/// The digest a snapshot is named by, from the digests of its parts.
fn snapshot_digest(sequence: u64, store_digest: u64, table_digest: u64) -> u64 {
    let mut digester = Digester::new();
    digester.add(&(sequence, store_digest, table_digest));
    digester.finish()
}

/// The state at one sequence number, frozen for sending.
#[derive(Debug)]
pub struct Image {
    manifest: Manifest,
    /// Each record with its bound from [`size`].
    clients: Vec<(ClientRecord, usize)>,
    notes: Vec<(Note, usize)>,
    /// The first piece of each chunk.
    chunk_starts: Vec<u64>,
    last_used: Instant,
}

impl Image {
    /// Freezes `store` and `client_table`, the state after `sequence`, in chunks of
    /// at most `bytes_max` (but for a piece heavier than that alone).
    pub fn freeze(
        sequence: u64,
        store: &NoteStore,
        client_table: &ClientTable,
        bytes_max: usize,
        now: Instant,
    ) -> Image {
        let clients: Vec<(ClientRecord, usize)> = client_table
            .records()
            .into_iter()
            .map(|record| {
                let bytes = size::reply_bytes(&record.reply) + size::CLIENT_RECORD_OVERHEAD_BYTES_MAX;
                (record, bytes)
            })
            .collect();
        let notes: Vec<(Note, usize)> =
            store.notes_with_sizes().map(|(note, body_bytes)| (note.clone(), size::note_bytes(body_bytes))).collect();
        let mut chunk_starts = Vec::new();
        let mut bytes = 0;
        let weights = clients.iter().map(|(_, weight)| *weight).chain(notes.iter().map(|(_, weight)| *weight));
        for (piece, weight) in weights.enumerate() {
            if chunk_starts.is_empty() || bytes + weight > bytes_max {
                chunk_starts.push(piece as u64);
                bytes = 0;
            }
            bytes += weight;
        }
        let digest = snapshot_digest(sequence, store.digest(), client_table.digest());
        let manifest = Manifest {
            id: SnapshotId { sequence, digest },
            store: store.meta(),
            clients: clients.len() as u64,
            clients_max: client_table.clients_max() as u64,
            evictions: client_table.evictions(),
            chunks: chunk_starts.len() as u64,
        };
        Image { manifest, clients, notes, chunk_starts, last_used: now }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Chunk `index`; `None` past the last.
    pub fn chunk(&self, index: u64) -> Option<Chunk> {
        let position = usize::try_from(index).ok()?;
        let first = *self.chunk_starts.get(position)?;
        let end = self.chunk_starts.get(position + 1).copied().unwrap_or(self.manifest.pieces());
        let client_count = self.clients.len() as u64;
        let clients = (first.min(client_count)..end.min(client_count))
            .map(|piece| self.clients[piece as usize].0.clone())
            .collect();
        let notes = (first.max(client_count)..end.max(client_count))
            .map(|piece| self.notes[(piece - client_count) as usize].0.clone())
            .collect();
        Some(Chunk { snapshot: self.manifest.id, index, first, clients, notes })
    }
}

/// The images a replica serves.
#[derive(Debug, Default)]
pub struct Images {
    images: Vec<Image>,
}

impl Images {
    /// The newest image at `min_sequence` or later, or a new one of the state
    /// after `sequence` in chunks of `bytes_max` (dropping the least recently used
    /// beyond [`IMAGES_MAX`]).
    pub fn get_or_freeze(
        &mut self,
        now: Instant,
        min_sequence: u64,
        sequence: u64,
        store: &NoteStore,
        client_table: &ClientTable,
        bytes_max: usize,
    ) -> Manifest {
        assert!(min_sequence <= sequence, "the state frozen now is recent enough");
        self.expire(now);
        let reusable = (self.images.iter_mut())
            .filter(|image| image.manifest.id.sequence >= min_sequence)
            .max_by_key(|image| image.manifest.id.sequence);
        if let Some(image) = reusable {
            image.last_used = now;
            return image.manifest;
        }
        if self.images.len() == IMAGES_MAX {
            let least_recent =
                (self.images.iter().enumerate()).min_by_key(|(_, image)| image.last_used).map(|(index, _)| index);
            self.images.remove(least_recent.expect("IMAGES_MAX is not zero"));
        }
        let image = Image::freeze(sequence, store, client_table, bytes_max, now);
        let manifest = image.manifest;
        self.images.push(image);
        manifest
    }

    /// Chunk `index` of `snapshot`; `None` when the image is gone or has no such chunk.
    pub fn chunk(&mut self, now: Instant, snapshot: SnapshotId, index: u64) -> Option<Chunk> {
        self.expire(now);
        let image = self.images.iter_mut().find(|image| image.manifest.id == snapshot)?;
        image.last_used = now;
        image.chunk(index)
    }

    /// The oldest sequence some receiver may still be fetching: the log after it
    /// is what that receiver asks for once it installed the snapshot.
    pub fn oldest_in_use(&self) -> Option<u64> {
        self.images.iter().map(|image| image.manifest.id.sequence).min()
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Drops every image (a replica that restarts, or moves to a new role).
    pub fn clear(&mut self) {
        self.images.clear();
    }

    fn expire(&mut self, now: Instant) {
        self.images.retain(|image| now.as_nanos().saturating_sub(image.last_used.as_nanos()) < IMAGE_IDLE_NANOS);
    }
}

/// What became of a chunk given to a [`Download`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Taken; more pieces follow. Ask for the chunks [`Download::requests`] names.
    More,
    /// Taken, and it was the last: [`Download::install`] may be called.
    Complete,
    /// A copy of a chunk already taken, or one that came before its turn (it is
    /// asked for again when its turn comes).
    Ignored,
}

/// A snapshot being received from one source.
#[derive(Debug)]
pub struct Download {
    source: ReplicaId,
    manifest: Manifest,
    clients: Vec<ClientRecord>,
    notes: Vec<MeasuredNote>,
    note_digest_sum: u64,
    /// Chunks taken, in order: the next one taken is this one.
    chunks_received: u64,
    /// Chunks asked for so far: `chunks_received..chunks_asked` are in flight.
    chunks_asked: u64,
    /// Times the chunks in flight were asked for without one arriving: each resend waits longer.
    unanswered: u32,
    /// When to ask for the chunks in flight again.
    retry_at: Instant,
}

impl Download {
    pub fn new(source: ReplicaId, manifest: Manifest, now: Instant) -> Download {
        Download {
            source,
            manifest,
            clients: Vec::new(),
            notes: Vec::new(),
            note_digest_sum: 0,
            chunks_received: 0,
            chunks_asked: 0,
            unanswered: 0,
            retry_at: now,
        }
    }

    pub fn source(&self) -> ReplicaId {
        self.source
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Pieces received so far: where the next chunk starts.
    pub fn received(&self) -> u64 {
        (self.clients.len() + self.notes.len()) as u64
    }

    pub fn is_complete(&self) -> bool {
        self.chunks_received == self.manifest.chunks && self.received() == self.manifest.pieces()
    }

    /// The chunks to ask for now: those not yet asked for, up to [`CHUNKS_IN_FLIGHT`]
    /// beyond those taken. Ask again after `wait` if none of them comes.
    pub fn requests(&mut self, now: Instant, wait: core::time::Duration) -> Vec<(SnapshotId, u64)> {
        let window_end = (self.chunks_received + CHUNKS_IN_FLIGHT).min(self.manifest.chunks);
        let asked = (self.chunks_asked..window_end).map(|index| (self.manifest.id, index)).collect();
        self.chunks_asked = self.chunks_asked.max(window_end);
        self.retry_at = now + wait;
        asked
    }

    /// Every chunk in flight, asked for again because none came in time.
    pub fn requests_again(&mut self, now: Instant, wait: core::time::Duration) -> Vec<(SnapshotId, u64)> {
        self.unanswered = self.unanswered.saturating_add(1);
        self.chunks_asked = self.chunks_received;
        self.requests(now, wait)
    }

    /// When the chunks in flight should be asked for again.
    pub fn retry_at(&self) -> Instant {
        self.retry_at
    }

    /// Times in a row the chunks in flight were asked for again without one arriving.
    pub fn unanswered(&self) -> u32 {
        self.unanswered
    }

    /// Takes a chunk from `from`. A chunk of another snapshot or source, or one
    /// that does not continue what was received, is refused with the reason to
    /// count; its pieces are checked as they are taken.
    pub fn accept(
        &mut self,
        from: ReplicaId,
        chunk: Chunk,
        limits: &StoreLimits,
        defect: Option<Defect>,
    ) -> Result<Progress, DropReason> {
        if from != self.source || chunk.snapshot != self.manifest.id {
            return Err(DropReason::SnapshotMismatch);
        }
        if chunk.index != self.chunks_received {
            if chunk.index >= self.manifest.chunks {
                return Err(DropReason::ImpossibleSequence);
            }
            return Ok(Progress::Ignored);
        }
        let client_count = self.manifest.clients;
        let last = chunk.index + 1 == self.manifest.chunks;
        let fits = chunk.first == self.received()
            && chunk.pieces() > 0
            && (!last || chunk.first.saturating_add(chunk.pieces()) == self.manifest.pieces())
            && chunk.first.saturating_add(chunk.pieces()) <= self.manifest.pieces()
            && (chunk.clients.is_empty() || chunk.first.saturating_add(chunk.clients.len() as u64) <= client_count)
            && (chunk.notes.is_empty() || chunk.first.saturating_add(chunk.clients.len() as u64) >= client_count);
        if !fits {
            return Err(DropReason::ImpossibleSequence);
        }
        let mut last_id = self.notes.last().map(|last| last.note.id);
        let mut measured = Vec::with_capacity(chunk.notes.len());
        for note in chunk.notes {
            let after_last = last_id.is_none_or(|last| last < note.id);
            let within = note.id < self.manifest.store.next_id && note.id.0 > 0 && note.version > 0;
            let note = MeasuredNote::measure(note);
            if !after_last || !within || note.body_bytes > limits.body_bytes_max {
                return Err(DropReason::SnapshotMismatch);
            }
            last_id = Some(note.note.id);
            measured.push(note);
        }
        for note in &measured {
            self.note_digest_sum = self.note_digest_sum.wrapping_add(note.digest);
        }
        self.clients.extend(chunk.clients);
        self.notes.extend(measured);
        self.chunks_received += 1;
        self.unanswered = 0;
        if defect == Some(Defect::InstallIncompleteSnapshot) {
            // The deliberate bug: any chunk is taken for the last.
            return Ok(Progress::Complete);
        }
        Ok(if self.is_complete() { Progress::Complete } else { Progress::More })
    }

    /// The state the snapshot holds, once every piece arrived and the digest
    /// recomputed from them matches its name; otherwise why not.
    pub fn install(self, limits: StoreLimits, defect: Option<Defect>) -> Result<(NoteStore, ClientTable), String> {
        let Download { manifest, clients, notes, note_digest_sum, .. } = self;
        let incomplete_taken = defect == Some(Defect::InstallIncompleteSnapshot);
        if !incomplete_taken {
            if (clients.len() + notes.len()) as u64 != manifest.pieces() {
                return Err(format!(
                    "{}: {} of {} pieces",
                    manifest.id,
                    clients.len() + notes.len(),
                    manifest.pieces()
                ));
            }
            let clients_max = usize::try_from(manifest.clients_max).unwrap_or(usize::MAX);
            let table_digest = table_digest(
                clients_max,
                manifest.evictions,
                clients.iter().map(|record| (record.client, record.request_number, &record.reply)),
            );
            let digest =
                snapshot_digest(manifest.id.sequence, store_digest(&manifest.store, note_digest_sum), table_digest);
            if digest != manifest.id.digest {
                return Err(format!("{}: the pieces received have digest {digest:016x}", manifest.id));
            }
        }
        let mut meta = manifest.store;
        if incomplete_taken {
            meta.notes = notes.len() as u64;
        }
        let clients_max = usize::try_from(manifest.clients_max).unwrap_or(usize::MAX);
        let table = ClientTable::from_records(clients_max, manifest.evictions, clients)?;
        let store = NoteStore::from_snapshot(limits, meta, notes)?;
        Ok((store, table))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::hlc::Timestamp;
    use crate::ids::ClientId;
    use crate::operation::Operation;

    fn state(notes: u64) -> (NoteStore, ClientTable) {
        let mut store = NoteStore::new(StoreLimits::default());
        let mut table = ClientTable::new(16);
        for index in 1..=notes {
            let body = json!({ "title": format!("note {index}"), "pad": "x".repeat(index as usize * 10) });
            let reply = store.execute(&Operation::Create { body }, Timestamp(index));
            table.record(ClientId(index % 5), index, reply);
        }
        (store, table)
    }

    fn transfer(image: &Image) -> Download {
        let mut download = Download::new(ReplicaId(0), *image.manifest(), Instant::ZERO);
        let wait = core::time::Duration::from_millis(1);
        let mut asked = download.requests(Instant::ZERO, wait);
        assert!(asked.len() as u64 <= CHUNKS_IN_FLIGHT);
        loop {
            let (id, index) = asked.remove(0);
            let chunk = image.chunk(index).expect("within the image");
            assert_eq!(chunk.snapshot, id);
            match download.accept(ReplicaId(0), chunk, &StoreLimits::default(), None) {
                Ok(Progress::Complete) => return download,
                Ok(Progress::More) => asked.extend(download.requests(Instant::ZERO, wait)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_snapshot_travels_in_chunks_and_installs_as_it_was() {
        let (store, table) = state(40);
        let image = Image::freeze(40, &store, &table, 300, Instant::ZERO);
        assert_eq!(image.manifest().pieces(), 45, "five clients, forty notes");
        assert!(image.manifest().chunks > 10, "300 bytes hold a few pieces only");
        let (installed, installed_table) = transfer(&image).install(StoreLimits::default(), None).unwrap();
        assert_eq!(installed, store);
        assert_eq!(installed.digest(), store.digest());
        assert_eq!(installed_table, table);
    }

    #[test]
    fn every_chunk_holds_at_least_one_piece_and_stays_within_the_bound_otherwise() {
        let (store, table) = state(20);
        let image = Image::freeze(20, &store, &table, 200, Instant::ZERO);
        let mut first = 0;
        for index in 0..image.manifest().chunks {
            let chunk = image.chunk(index).expect("numbered chunks");
            assert_eq!((chunk.index, chunk.first), (index, first));
            assert!(chunk.pieces() >= 1);
            let encoded = postcard::to_allocvec(&chunk).unwrap().len();
            if chunk.pieces() > 1 {
                assert!(encoded <= 200 + size::MESSAGE_OVERHEAD_BYTES_MAX, "{encoded} bytes");
            }
            first += chunk.pieces();
        }
        assert_eq!(first, image.manifest().pieces());
        assert_eq!(image.chunk(image.manifest().chunks), None);
    }

    #[test]
    fn chunks_of_another_snapshot_are_refused_and_a_wrong_digest_installs_nothing() {
        let (store, table) = state(10);
        let image = Image::freeze(10, &store, &table, 1 << 20, Instant::ZERO);
        let (later_store, later_table) = state(12);
        let later = Image::freeze(12, &later_store, &later_table, 1 << 20, Instant::ZERO);
        let mut download = Download::new(ReplicaId(0), *image.manifest(), Instant::ZERO);
        let foreign = later.chunk(0).unwrap();
        assert_eq!(
            download.accept(ReplicaId(0), foreign.clone(), &StoreLimits::default(), None),
            Err(DropReason::SnapshotMismatch)
        );
        // The same pieces under this snapshot's name: taken, but the digest tells.
        let mut forged = foreign;
        forged.snapshot = image.manifest().id;
        forged.clients.truncate(image.manifest().clients as usize);
        forged.notes.truncate(image.manifest().store.notes as usize);
        forged.notes[3] = later_store.get(crate::ids::NoteId(11)).unwrap().clone();
        forged.notes[3].id = crate::ids::NoteId(4);
        assert_eq!(download.accept(ReplicaId(0), forged, &StoreLimits::default(), None), Ok(Progress::Complete));
        let refused = download.install(StoreLimits::default(), None).unwrap_err();
        assert!(refused.contains("digest"), "{refused}");
    }

    #[test]
    fn chunks_are_taken_in_order_and_repeats_ignored() {
        let (store, table) = state(10);
        let image = Image::freeze(10, &store, &table, 200, Instant::ZERO);
        let mut download = Download::new(ReplicaId(0), *image.manifest(), Instant::ZERO);
        let limits = StoreLimits::default();
        let wait = core::time::Duration::from_millis(1);
        let asked: Vec<u64> = download.requests(Instant::ZERO, wait).into_iter().map(|(_, index)| index).collect();
        assert_eq!(asked, vec![0, 1, 2, 3], "a window of chunks in flight");
        assert_eq!(download.accept(ReplicaId(0), image.chunk(1).unwrap(), &limits, None), Ok(Progress::Ignored));
        assert_eq!(download.accept(ReplicaId(0), image.chunk(0).unwrap(), &limits, None), Ok(Progress::More));
        assert_eq!(download.accept(ReplicaId(0), image.chunk(0).unwrap(), &limits, None), Ok(Progress::Ignored));
        let next: Vec<u64> = download.requests(Instant::ZERO, wait).into_iter().map(|(_, index)| index).collect();
        assert_eq!(next, vec![4], "one more as one arrived");
        let again: Vec<u64> =
            download.requests_again(Instant::ZERO, wait).into_iter().map(|(_, index)| index).collect();
        assert_eq!(again, vec![1, 2, 3, 4], "what is in flight, asked again");
        let past_the_end = Chunk { index: image.manifest().chunks, ..image.chunk(1).unwrap() };
        assert_eq!(download.accept(ReplicaId(0), past_the_end, &limits, None), Err(DropReason::ImpossibleSequence));
        assert_eq!(
            download.accept(ReplicaId(1), image.chunk(1).unwrap(), &limits, None),
            Err(DropReason::SnapshotMismatch)
        );
        let mut skipping = image.chunk(1).unwrap();
        skipping.first += 1;
        assert_eq!(download.accept(ReplicaId(0), skipping, &limits, None), Err(DropReason::ImpossibleSequence));
    }

    #[test]
    fn images_are_reused_while_recent_enough_and_expire_when_idle() {
        let (store, table) = state(3);
        let mut images = Images::default();
        let first = images.get_or_freeze(Instant::ZERO, 0, 3, &store, &table, 1 << 20);
        let again = images.get_or_freeze(Instant::ZERO, 2, 3, &store, &table, 1 << 20);
        assert_eq!(first, again);
        let (store, table) = state(5);
        let newer = images.get_or_freeze(Instant::ZERO, 4, 5, &store, &table, 1 << 20);
        assert_ne!(newer.id, first.id);
        assert_eq!((images.len(), images.oldest_in_use()), (2, Some(3)));
        let later = Instant::from_nanos(IMAGE_IDLE_NANOS + 1);
        assert_eq!(images.chunk(later, first.id, 0), None, "expired");
        assert!(images.is_empty());
    }
}
