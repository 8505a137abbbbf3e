//! The VR log: the retained suffix of the operation sequence, after a checkpoint.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::hlc::Timestamp;
use crate::ids::{ClientId, RequestNumber};
use crate::operation::Operation;
use crate::wire::size;

/// One operation in the log, as every replica executes it once it is committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub op_number: u64,
    /// The view in which the primary assigned the op number.
    pub view: u64,
    pub client: ClientId,
    pub request_number: RequestNumber,
    pub operation: Operation,
    pub timestamp: Timestamp,
}

/// Entries `checkpoint + 1 ..= op_number`. Everything at or before `checkpoint` was
/// committed and executed, and lives only in the store and client table.
///
/// Each entry is kept with the running total of what the entries weigh in a
/// message ([`size::entry_bytes`]), so what any stretch of the log weighs is one
/// subtraction: messages that carry entries fill up to their byte bound.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Log {
    checkpoint: u64,
    entries: VecDeque<Slot>,
    /// The running total up to the checkpoint.
    bytes_at_checkpoint: u64,
    /// The lowest op whose entry changed since [`Log::take_changed_from`] was last
    /// called; the checkpoint itself for a log that restarted at a checkpoint
    /// (the executed state was replaced). What the journal must write again.
    changed_from: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
struct Slot {
    entry: Entry,
    /// The running total up to and including this entry.
    bytes_through: u64,
}

impl Log {
    pub(crate) fn new(checkpoint: u64) -> Log {
        Log { checkpoint, entries: VecDeque::new(), bytes_at_checkpoint: 0, changed_from: Some(checkpoint) }
    }

    /// The lowest op changed since the previous call (see [`Log::changed_from`]).
    pub(crate) fn take_changed_from(&mut self) -> Option<u64> {
        self.changed_from.take()
    }

    fn changed(&mut self, op_number: u64) {
        self.changed_from = Some(self.changed_from.map_or(op_number, |from| from.min(op_number)));
    }

    /// The op number of the last entry (the checkpoint when no entry is retained).
    pub(crate) fn op_number(&self) -> u64 {
        self.checkpoint + self.entries.len() as u64
    }

    pub(crate) fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, op_number: u64) -> Option<&Entry> {
        self.slot(op_number).map(|slot| &slot.entry)
    }

    fn slot(&self, op_number: u64) -> Option<&Slot> {
        let index = op_number.checked_sub(self.checkpoint + 1)?;
        self.entries.get(usize::try_from(index).ok()?)
    }

    pub(crate) fn last_timestamp(&self) -> Option<Timestamp> {
        self.entries.back().map(|slot| slot.entry.timestamp)
    }

    pub(crate) fn append(&mut self, entry: Entry) {
        let bytes = size::entry_bytes(&entry.operation);
        self.append_weighed(entry, bytes);
    }

    /// Appends `entry`, which weighs `bytes` ([`size::entry_bytes`], measured by the caller).
    pub(crate) fn append_weighed(&mut self, entry: Entry, bytes: usize) {
        assert_eq!(entry.op_number, self.op_number() + 1, "log entries are appended in op-number order");
        debug_assert_eq!(bytes, size::entry_bytes(&entry.operation), "the caller weighed the entry");
        let bytes_through = self.bytes_through(self.op_number()) + bytes as u64;
        self.changed(entry.op_number);
        self.entries.push_back(Slot { entry, bytes_through });
    }

    /// The running total through `op_number`, which must be the checkpoint or retained.
    fn bytes_through(&self, op_number: u64) -> u64 {
        if op_number == self.checkpoint {
            return self.bytes_at_checkpoint;
        }
        self.slot(op_number).expect("the checkpoint or a retained entry").bytes_through
    }

    /// What the entries after `op_number` weigh in a message; `op_number` must be
    /// the checkpoint or retained.
    pub(crate) fn bytes_after(&self, op_number: u64) -> u64 {
        self.bytes_through(self.op_number()) - self.bytes_through(op_number)
    }

    /// The earliest op number (the checkpoint or later) after which the entries
    /// weigh at most `bytes_max`: the longest suffix one message carries.
    pub(crate) fn start_within(&self, bytes_max: usize) -> u64 {
        let total = self.bytes_through(self.op_number());
        let floor = total.saturating_sub(bytes_max as u64);
        if self.bytes_at_checkpoint >= floor {
            return self.checkpoint;
        }
        // The first entry whose running total reaches the floor: everything after it fits.
        let index = self.entries.partition_point(|slot| slot.bytes_through < floor);
        self.checkpoint + 1 + index as u64
    }

    /// Entries after `op_number`, at most `count_max` of them and, but for the
    /// first, weighing at most `bytes_max`. `op_number` must be the checkpoint or retained.
    pub(crate) fn entries_after(&self, op_number: u64, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        assert!(op_number >= self.checkpoint, "entries after the checkpoint only");
        let skip = usize::try_from(op_number - self.checkpoint).unwrap_or(usize::MAX);
        let end = self.entries.len().min(skip.saturating_add(count_max));
        if skip >= end {
            return Vec::new();
        }
        let budget_end = self.bytes_through(op_number).saturating_add(bytes_max as u64);
        let fitting = self.entries.range(skip..end).skip(1).take_while(|slot| slot.bytes_through <= budget_end).count();
        self.entries.range(skip..skip + 1 + fitting).map(|slot| slot.entry.clone()).collect()
    }

    /// Drops every entry after `op_number` (uncommitted entries a new view replaces).
    pub(crate) fn truncate_after(&mut self, op_number: u64) {
        assert!(op_number >= self.checkpoint, "committed entries before the checkpoint are never truncated");
        let keep = usize::try_from(op_number - self.checkpoint).unwrap_or(usize::MAX);
        if keep < self.entries.len() {
            self.changed(op_number + 1);
        }
        self.entries.truncate(keep);
    }

    /// Forgets entries up to `op_number`, which must be committed and executed.
    pub(crate) fn discard_through(&mut self, op_number: u64) {
        while self.checkpoint < op_number {
            let Some(slot) = self.entries.pop_front() else { break };
            self.checkpoint += 1;
            self.bytes_at_checkpoint = slot.bytes_through;
        }
        if self.entries.is_empty() && self.checkpoint < op_number {
            self.checkpoint = op_number;
        }
    }

    /// Whether `entries` (consecutive) agree with every entry this log holds at the same op numbers.
    pub(crate) fn agrees_with(&self, entries: &[Entry]) -> bool {
        entries.iter().all(|entry| self.get(entry.op_number).is_none_or(|ours| ours == entry))
    }

    /// Entries only enter through [`Log::append`], which keeps them contiguous, and
    /// leave from the ends; so the ends are checked always, and every entry only in
    /// builds with debug assertions (the simulator's), where the cost is no concern.
    pub(crate) fn check_invariants(&self) {
        if let (Some(first), Some(last)) = (self.entries.front(), self.entries.back()) {
            assert_eq!(first.entry.op_number, self.checkpoint + 1, "the log starts after its checkpoint");
            assert_eq!(last.entry.op_number, self.op_number(), "the log is contiguous");
        }
        if cfg!(debug_assertions) {
            // Each total is what `append` made it; that they grow by at least an entry's
            // overhead is checked here, without weighing every entry again.
            let mut bytes_through = self.bytes_at_checkpoint;
            for (offset, slot) in self.entries.iter().enumerate() {
                assert_eq!(slot.entry.op_number, self.checkpoint + 1 + offset as u64, "the log is contiguous");
                let entry_bytes = slot.bytes_through - bytes_through;
                assert!(entry_bytes >= size::ENTRY_OVERHEAD_BYTES_MAX as u64, "running totals follow the entries");
                bytes_through = slot.bytes_through;
            }
        }
    }
}

/// Whether `entries` are consecutive op numbers.
pub(crate) fn consecutive(entries: &[Entry]) -> bool {
    entries.windows(2).all(|pair| pair[1].op_number == pair[0].op_number + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(op_number: u64) -> Entry {
        Entry {
            op_number,
            view: 0,
            client: ClientId(1),
            request_number: op_number,
            operation: Operation::Delete { id: crate::ids::NoteId(op_number), if_match: None },
            timestamp: Timestamp(op_number),
        }
    }

    #[test]
    fn keeps_op_numbers_across_truncation_and_checkpoints() {
        let mut log = Log::new(0);
        for op_number in 1..=5 {
            log.append(entry(op_number));
        }
        log.discard_through(2);
        assert_eq!((log.checkpoint(), log.op_number(), log.len()), (2, 5, 3));
        assert_eq!(log.get(2), None);
        assert_eq!(log.get(3), Some(&entry(3)));
        assert_eq!(log.entries_after(3, 10, usize::MAX), vec![entry(4), entry(5)]);
        log.truncate_after(4);
        assert_eq!(log.op_number(), 4);
        log.discard_through(9);
        assert_eq!((log.checkpoint(), log.op_number()), (9, 9));
    }

    #[test]
    fn messages_take_entries_up_to_their_byte_bound() {
        let mut log = Log::new(0);
        for op_number in 1..=6 {
            log.append(entry(op_number));
        }
        let one = size::entry_bytes(&entry(1).operation);
        assert_eq!(log.bytes_after(0), 6 * one as u64);
        assert_eq!(log.entries_after(0, 10, 2 * one).len(), 2);
        assert_eq!(log.entries_after(0, 10, 0).len(), 1, "the first entry always goes");
        assert_eq!(log.entries_after(4, 1, usize::MAX), vec![entry(5)]);
        assert_eq!(log.start_within(2 * one), 4, "entries 5 and 6 fit");
        assert_eq!(log.start_within(usize::MAX), 0);
        log.discard_through(3);
        assert_eq!(log.bytes_after(3), 3 * one as u64);
        assert_eq!(log.start_within(usize::MAX), 3);
        assert_eq!(log.start_within(0), 6);
    }

    #[test]
    fn detects_entries_that_disagree() {
        let mut log = Log::new(0);
        log.append(entry(1));
        let mut other = entry(1);
        other.view = 3;
        assert!(log.agrees_with(&[entry(1), entry(2)]));
        assert!(!log.agrees_with(&[other]));
    }
}
