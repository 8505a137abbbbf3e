//! The clients: issuing operations, sending and retrying requests, recording the
//! history as answers arrive or clients give up.

use noted_core::{ClientId, ClientRequest, ReplicaId, Reply, RequestNumber};

use super::{InFlight, Phase, SimEvent, Simulation, nanos};
use crate::history::Event as HistoryEvent;
use crate::network::Fate;
use crate::trace::describe_reply;
use crate::workload::{Completion, history_call, history_completion};

impl Simulation {
    pub(super) fn issue(&mut self, client_index: usize) {
        if self.phase == Phase::Finished {
            return;
        }
        let client = &mut self.clients[client_index];
        if client.in_flight.is_some() || client.operations_left == 0 {
            return;
        }
        client.operations_left -= 1;
        let request_number = client.next_request_number;
        client.next_request_number += 1;
        let client_id = client.id;
        let planned = self.workload.next_operation(client_id, request_number);
        let request = ClientRequest {
            client: client_id,
            request_number,
            operation: planned.operation.clone(),
            consistency: planned.consistency,
        };
        let history_id = if planned.is_recorded() {
            let id = self.next_history_id;
            self.next_history_id += 1;
            let (function, input) = history_call(&planned.operation);
            let history_client = self.clients[client_index].history_client;
            self.history.events.push(HistoryEvent::call(id, history_client, function, Some(input)).at(self.micros()));
            self.origins.insert(id, (client_id, request_number));
            Some(id)
        } else {
            None
        };
        self.clients[client_index].in_flight =
            Some(InFlight { request, planned, history_id, attempts: 0, copies_sent: 0 });
        self.send_attempt(client_index);
    }

    /// Sends (or sends again) the client's request in flight, to its home or to a replica of its choosing.
    pub(super) fn send_attempt(&mut self, client_index: usize) {
        let roams = self.workload.is_roaming();
        let replica_count = self.replicas.len();
        let chosen = ReplicaId(u8::try_from(self.workload.random_index(replica_count)).expect("few replicas"));
        let client = &mut self.clients[client_index];
        let Some(in_flight) = client.in_flight.as_mut() else { return };
        in_flight.attempts += 1;
        let to = if roams { chosen } else { client.home };
        let request = in_flight.request.clone();
        let attempt = in_flight.attempts;
        let client_id = client.id;
        self.trace
            .line(self.now, format_args!("{client_id}#{} sends to {to} (attempt {attempt})", request.request_number));
        let request_number = request.request_number;
        match self.network.fate() {
            Fate::Lost => {
                self.trace.line(self.now, format_args!("{client_id}#{request_number} -x-> {to} request lost"))
            }
            Fate::Delivered { delay, duplicate_delay } => {
                let copies = if duplicate_delay.is_some() { 2 } else { 1 };
                if let Some(in_flight) = self.clients[client_index].in_flight.as_mut() {
                    in_flight.copies_sent += copies;
                }
                if let Some(duplicate_delay) = duplicate_delay {
                    self.schedule(nanos(duplicate_delay), SimEvent::RequestArrives { to, request: request.clone() });
                }
                self.schedule(nanos(delay), SimEvent::RequestArrives { to, request });
            }
        }
        let timeout = nanos(self.options.workload.request_timeout);
        self.schedule(timeout, SimEvent::ClientTimeout { client_index, request_number, attempt });
    }

    pub(super) fn on_client_timeout(&mut self, client_index: usize, request_number: RequestNumber, attempt: u32) {
        let client = &self.clients[client_index];
        let Some(in_flight) = &client.in_flight else { return };
        if in_flight.request.request_number != request_number || in_flight.attempts != attempt {
            return;
        }
        let gives_up = self.phase == Phase::Safety && in_flight.attempts >= self.options.workload.attempts_max;
        if !gives_up {
            return self.send_attempt(client_index);
        }
        let client_id = client.id;
        self.trace.line(self.now, format_args!("{client_id}#{request_number} given up: outcome unknown"));
        let history_id = in_flight.history_id;
        let old_history_client = client.history_client;
        if let Some(id) = history_id {
            self.history.events.push(HistoryEvent::info(id, old_history_client).at(self.micros()));
            // The abandoned request may still take effect: continue as a new history client.
            self.clients[client_index].history_client = self.next_history_client;
            self.next_history_client += 1;
        }
        self.clients[client_index].in_flight = None;
        self.schedule_next_issue(client_index);
    }

    pub(super) fn on_reply(
        &mut self,
        from: ReplicaId,
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
        stale: bool,
    ) {
        // Client ids start at 1; an id that names no client of this run is ignored.
        let Some(client_index) = client.0.checked_sub(1).and_then(|index| usize::try_from(index).ok()) else { return };
        let Some(state) = self.clients.get(client_index) else { return };
        let current = state.in_flight.as_ref().filter(|in_flight| in_flight.request.request_number == request_number);
        let Some(in_flight) = current else {
            self.trace.line(self.now, format_args!("{from} --> {client}#{request_number} late reply ignored"));
            return;
        };
        if self.trace.is_enabled() {
            let freshness = if stale { " (possibly stale)" } else { "" };
            self.trace.line(
                self.now,
                format_args!("{from} --> {client}#{request_number} reply{freshness}: {}", describe_reply(&reply)),
            );
        }
        let mut completion = history_completion(&in_flight.planned.operation, &reply);
        if stale {
            // A reply marked possibly stale (local-write serves every list from the local
            // copy) promises nothing about order: the read is recorded as having had no
            // effect and telling nothing, which reads may always be.
            completion = Completion::Fail;
        }
        if completion == Completion::Fail && in_flight.copies_sent > 1 && !stale {
            // Another copy of the request (an earlier attempt, or a duplicate the network made) may have
            // taken effect: a refusal proves nothing happened only when it answers the one copy sent.
            // The client tries again when its timeout fires.
            return;
        }
        self.workload.observe(&reply);
        let history_id = in_flight.history_id;
        let history_client = state.history_client;
        if let Some(id) = history_id {
            let time = self.micros();
            let event = match completion {
                Completion::Ok(output) => HistoryEvent::ok(id, history_client, Some(output)),
                Completion::Fail => HistoryEvent::fail(id, history_client),
            };
            self.history.events.push(event.at(time));
        }
        self.clients[client_index].in_flight = None;
        self.schedule_next_issue(client_index);
    }

    pub(super) fn schedule_next_issue(&mut self, client_index: usize) {
        if self.clients[client_index].operations_left > 0 {
            let think = self.workload.think_time_nanos();
            self.schedule(think, SimEvent::ClientIssue { client_index });
        }
    }

    pub(super) fn micros(&self) -> u64 {
        self.now / 1_000
    }
}
