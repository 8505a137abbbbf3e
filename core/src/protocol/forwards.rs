use std::collections::BTreeMap;

use crate::ids::{ClientId, ReplicaId, RequestNumber};
use crate::operation::{ClientRequest, Refusal, Reply};
use crate::protocol::Outputs;
use crate::replica::Freshness;
use crate::time::Instant;

/// Requests this replica sent on to the replica that orders them, kept until the
/// answer comes back and sent again when it is late. One per client: a client has
/// at most one request in flight, and a newer request replaces an older one.
///
/// A request is sent at most [`FORWARD_ATTEMPTS_MAX`] times, then forgotten without
/// an answer: the ordering replica stays silent about a request its client has
/// moved past, and a client that still waits retries on its own.
#[derive(Debug)]
pub(crate) struct PendingForwards {
    entries: BTreeMap<ClientId, PendingForward>,
    entries_max: usize,
}

/// How many times one request is sent on before it is forgotten.
pub(crate) const FORWARD_ATTEMPTS_MAX: u32 = 32;

#[derive(Debug)]
pub(crate) struct PendingForward {
    pub(crate) request: ClientRequest,
    pub(crate) to: ReplicaId,
    pub(crate) retry_at: Instant,
    attempts: u32,
}

impl PendingForwards {
    pub(crate) fn new(entries_max: usize) -> PendingForwards {
        PendingForwards { entries: BTreeMap::new(), entries_max }
    }

    /// Remembers `request`; `false` when the table is full and the request must be refused.
    pub(crate) fn insert(&mut self, request: ClientRequest, to: ReplicaId, retry_at: Instant) -> bool {
        if self.entries.len() >= self.entries_max && !self.entries.contains_key(&request.client) {
            return false;
        }
        if let Some(existing) = self.entries.get(&request.client)
            && existing.request.request_number > request.request_number
        {
            return true;
        }
        self.entries.insert(request.client, PendingForward { request, to, retry_at, attempts: 1 });
        true
    }

    /// Gives the client the ordering replica's answer to a forwarded request.
    ///
    /// A refusal as unavailable is not passed on: the ordering replica could not
    /// take this copy of the request, but another copy (a retransmission, or a
    /// duplicate the network made) may still reach it and take effect, so telling
    /// the client "unavailable", which promises no effect, could be false. The
    /// request stays pending and is sent again; if it never succeeds, the client's
    /// own timeout leaves its outcome unknown, as it is. A reply to a request no
    /// longer pending is a duplicate: the client was answered.
    pub(crate) fn answer(
        &mut self,
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
        outputs: &mut Outputs,
    ) {
        if matches!(reply, Reply::Refused { refusal: Refusal::Unavailable { .. } }) {
            return;
        }
        if self.take(client, request_number).is_some() {
            outputs.reply(client, request_number, reply, Freshness::Ordered);
        }
    }

    /// Takes the pending request `(client, request_number)` when its answer arrives.
    pub(crate) fn take(&mut self, client: ClientId, request_number: RequestNumber) -> Option<ClientRequest> {
        match self.entries.get(&client) {
            Some(pending) if pending.request.request_number == request_number => {
                self.entries.remove(&client).map(|pending| pending.request)
            }
            _ => None,
        }
    }

    /// The requests whose answer is late at `now`, rescheduled for `next_retry_at`;
    /// those sent `FORWARD_ATTEMPTS_MAX` times are forgotten instead.
    pub(crate) fn due(&mut self, now: Instant, next_retry_at: Instant) -> Vec<(ReplicaId, ClientRequest)> {
        self.entries.retain(|_, pending| pending.retry_at > now || pending.attempts < FORWARD_ATTEMPTS_MAX);
        let mut due = Vec::new();
        for pending in self.entries.values_mut() {
            if pending.retry_at <= now {
                pending.retry_at = next_retry_at;
                pending.attempts += 1;
                due.push((pending.to, pending.request.clone()));
            }
        }
        due
    }

    /// Points every pending request at `to`, as when the ordering replica changes.
    pub(crate) fn redirect(&mut self, client: ClientId, to: ReplicaId) {
        if let Some(pending) = self.entries.get_mut(&client) {
            pending.to = to;
        }
    }

    pub(crate) fn next_retry_at(&self) -> Option<Instant> {
        self.entries.values().map(|pending| pending.retry_at).min()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn check_invariants(&self) {
        assert!(self.entries.len() <= self.entries_max, "pending forwards stay within their bound");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{Consistency, Operation};

    #[test]
    fn a_request_is_sent_at_most_forward_attempts_max_times() {
        let mut forwards = PendingForwards::new(4);
        let request = ClientRequest {
            client: ClientId(1),
            request_number: 1,
            operation: Operation::Get { id: crate::ids::NoteId(1) },
            consistency: Consistency::Linearizable,
        };
        assert!(forwards.insert(request, ReplicaId(0), Instant::from_millis(1)));
        let mut sent = 1;
        for millis in 1..100 {
            sent += forwards.due(Instant::from_millis(millis), Instant::from_millis(millis + 1)).len();
        }
        assert_eq!(sent, FORWARD_ATTEMPTS_MAX as usize);
        assert_eq!(forwards.len(), 0);
    }
}
