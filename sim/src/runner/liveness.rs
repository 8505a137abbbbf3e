//! The liveness phase: every fault healed, every request must be answered and the
//! replicas must converge within the bound.

use noted_core::ReplicaId;

use super::{LIVENESS_PROBE_NANOS, Phase, SimEvent, Simulation, nanos};
use crate::outcome::FailureKind;
use crate::trace::describe_operation;

impl Simulation {
    pub(super) fn start_liveness(&mut self) {
        self.trace.line(self.now, format_args!("LIVENESS every fault healed; clients drain"));
        self.network.heal();
        for index in 0..self.replicas.len() {
            let replica = ReplicaId(u8::try_from(index).expect("few replicas"));
            self.restart(replica);
            self.resume(replica);
            self.free_disk(replica);
        }
        self.phase = Phase::Liveness { deadline: self.now + nanos(self.options.liveness_bound) };
        for client_index in 0..self.clients.len() {
            self.clients[client_index].operations_left = self.options.workload.liveness_operations_per_client;
            if self.clients[client_index].in_flight.is_none() {
                self.schedule(0, SimEvent::ClientIssue { client_index });
            }
        }
        self.schedule(LIVENESS_PROBE_NANOS, SimEvent::LivenessProbe);
    }

    pub(super) fn liveness_probe(&mut self) {
        let Phase::Liveness { deadline } = self.phase else { return };
        let idle = self.clients.iter().all(|client| client.in_flight.is_none() && client.operations_left == 0);
        let divergence = self.divergence();
        if idle && divergence.is_none() {
            self.trace.line(self.now, format_args!("DONE every request answered; replicas converged"));
            self.phase = Phase::Finished;
            return;
        }
        if self.now < deadline {
            return self.schedule(LIVENESS_PROBE_NANOS, SimEvent::LivenessProbe);
        }
        let bound = self.options.liveness_bound;
        if let Some(client) = self.clients.iter().find(|client| client.in_flight.is_some()) {
            let in_flight = client.in_flight.as_ref().expect("found with a request in flight");
            let message = format!(
                "{}'s request #{} ({}) was not answered within {bound:?} after every fault healed",
                client.id,
                in_flight.request.request_number,
                describe_operation(&in_flight.request.operation)
            );
            return self.fail(FailureKind::Liveness, message);
        }
        let (message, notes) = divergence.unwrap_or_else(|| ("clients still have operations to issue".into(), vec![]));
        self.fail(FailureKind::Convergence, format!("{message}, {bound:?} after every fault healed"));
        if let Some(failure) = &mut self.failure {
            failure.notes = notes;
        }
    }

    /// How the replicas differ, if they do, and the ids of the notes they disagree about.
    pub(super) fn divergence(&self) -> Option<(String, Vec<u64>)> {
        let first = self.replicas[0].replica.as_ref()?;
        for (index, state) in self.replicas.iter().enumerate().skip(1) {
            let replica = state.replica.as_ref()?;
            if replica.store() != first.store() {
                let differing = differing_notes(first.store(), replica.store());
                let shown: Vec<String> = differing.iter().take(8).map(|id| format!("note-{id}")).collect();
                let message = format!(
                    "R{index}'s store ({} notes, next id {}) differs from R0's ({} notes, next id {}) in {} notes: {}{}",
                    replica.store().len(),
                    replica.store().next_id(),
                    first.store().len(),
                    first.store().next_id(),
                    differing.len(),
                    shown.join(", "),
                    if differing.len() > shown.len() { ", …" } else { "" },
                );
                return Some((message, differing));
            }
            if replica.client_table() != first.client_table() {
                return Some((format!("R{index}'s client table differs from R0's"), vec![]));
            }
        }
        None
    }
}

/// Ids of the notes one store holds and the other does not, or holds otherwise.
fn differing_notes(a: &noted_core::NoteStore, b: &noted_core::NoteStore) -> Vec<u64> {
    let ids: std::collections::BTreeSet<u64> = a.notes().chain(b.notes()).map(|note| note.id.0).collect();
    ids.into_iter().filter(|id| a.get(noted_core::NoteId(*id)) != b.get(noted_core::NoteId(*id))).collect()
}
