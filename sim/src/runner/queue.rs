//! The run's event queue: events come out in order of (simulated true time,
//! scheduling sequence number), so events at the same instant run in the order they
//! were scheduled, and the order never depends on anything but the run itself.
//!
//! Events are large (a peer message travels inside one) and the queue is pushed and
//! popped on every step, so the heap orders small keys and the events stay put in a
//! slab whose slots are reused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A place in the order: simulated true time, then scheduling sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Due {
    pub(super) time: u64,
    sequence: u64,
}

/// Where an event waits: its place in the order, and its slot in the slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    due: Due,
    slot: u32,
}

#[derive(Debug)]
pub(super) struct EventQueue<E> {
    keys: BinaryHeap<Reverse<Key>>,
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    sequence: u64,
}

impl<E> EventQueue<E> {
    pub(super) fn new() -> EventQueue<E> {
        EventQueue { keys: BinaryHeap::new(), slots: Vec::new(), free: Vec::new(), sequence: 0 }
    }

    /// A place in the order at `time`, after everything already placed then, for an event
    /// the caller keeps (and compares with [`EventQueue::peek`]) rather than queues.
    pub(super) fn place(&mut self, time: u64) -> Due {
        self.sequence += 1;
        Due { time, sequence: self.sequence }
    }

    /// Schedules `event` at simulated true time `time`, after every event already due then.
    pub(super) fn push(&mut self, time: u64, event: E) {
        let due = self.place(time);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 events wait at once")
            }
        };
        self.keys.push(Reverse(Key { due, slot }));
    }

    /// The place of the earliest event; `None` when nothing is queued.
    pub(super) fn peek(&self) -> Option<Due> {
        self.keys.peek().map(|Reverse(key)| key.due)
    }

    /// The earliest event and its time; `None` when nothing is scheduled.
    pub(super) fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse(key) = self.keys.pop()?;
        let event = self.slots[key.slot as usize].take().expect("a queued key names a full slot");
        self.free.push(key.slot);
        Some((key.due.time, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_by_scheduling_order() {
        let mut queue = EventQueue::new();
        queue.push(20, "late");
        queue.push(10, "first at 10");
        queue.push(10, "second at 10");
        assert_eq!(queue.pop(), Some((10, "first at 10")));
        queue.push(5, "earliest, scheduled last");
        queue.push(10, "third at 10");
        assert_eq!(queue.pop(), Some((5, "earliest, scheduled last")));
        assert_eq!(queue.pop(), Some((10, "second at 10")));
        assert_eq!(queue.pop(), Some((10, "third at 10")));
        assert_eq!(queue.pop(), Some((20, "late")));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn a_place_taken_outside_the_queue_is_ordered_among_its_events() {
        let mut queue = EventQueue::new();
        queue.push(10, "queued first");
        let kept = queue.place(10);
        queue.push(10, "queued after the place");
        let next = queue.peek().expect("two events wait");
        assert!(next < kept);
        assert_eq!(queue.pop(), Some((10, "queued first")));
        assert!(kept < queue.peek().expect("one event waits"));
    }

    #[test]
    fn slots_are_reused() {
        let mut queue = EventQueue::new();
        for round in 0..100u64 {
            queue.push(round, round);
            queue.push(round, round + 1);
            assert_eq!(queue.pop(), Some((round, round)));
            assert_eq!(queue.pop(), Some((round, round + 1)));
        }
        assert_eq!(queue.slots.len(), 2);
    }
}
