//! One simulated run: seed -> options -> a cluster of replicas, clients and a
//! network on one event queue -> a safety phase with faults -> a liveness phase
//! with every fault healed -> the history and the checks' verdicts.
//!
//! Every event sits in one queue ordered by (simulated true time, sequence
//! number), so events at the same instant run in the order they were scheduled.
//! Nothing in a run reads a clock, starts a thread or draws randomness but from
//! the seed: the same seed gives the same bytes of trace.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use noted_core::{
    ClientId, ClientRequest, ClusterId, Config, Freshness, Input, Message, Output, ReplicaId, Reply, RequestNumber,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::clock::ReplicaClock;
use crate::faults::{ClusterView, FaultAction, FaultInjector};
use crate::history::{Event as HistoryEvent, Header, History, ModelName};
use crate::network::{Fate, Network};
use crate::options::SimOptions;
use crate::outcome::{Failure, FailureKind, RunOutcome};
use crate::trace::{Trace, describe_event, describe_message, describe_operation, describe_reply};
use crate::workload::{Completion, PlannedOperation, Workload, history_call, history_completion};

/// A run that processes more events than this is stuck in a loop (a replica asking
/// for a timeout that never advances): reported as a liveness failure.
const EVENTS_MAX: u64 = 20_000_000;
/// How often the liveness phase checks whether the run is done.
const LIVENESS_PROBE_NANOS: u64 = 20_000_000;

#[derive(Clone, Debug)]
enum SimEvent {
    /// A peer message reaches `to`.
    Deliver {
        from: ReplicaId,
        to: ReplicaId,
        message: Message,
    },
    /// A client's request reaches a replica.
    RequestArrives {
        to: ReplicaId,
        request: ClientRequest,
    },
    /// A replica's answer reaches its client.
    ReplyArrives {
        from: ReplicaId,
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
        stale: bool,
    },
    /// A replica's deadline; ignored unless `token` is still the replica's current one.
    ReplicaTimer {
        replica: ReplicaId,
        token: u64,
    },
    ClientIssue {
        client_index: usize,
    },
    ClientTimeout {
        client_index: usize,
        request_number: RequestNumber,
        attempt: u32,
    },
    FaultTick,
    HealPartition {
        generation: u64,
    },
    Restart {
        replica: ReplicaId,
    },
    Resume {
        replica: ReplicaId,
    },
    StartLiveness,
    LivenessProbe,
}

#[derive(Debug)]
struct SimReplica {
    config: Config,
    clock: ReplicaClock,
    /// `None` while crashed.
    replica: Option<noted_core::Replica>,
    paused: bool,
    /// Events that arrived while paused and wait for the resume.
    held: Vec<SimEvent>,
    /// The scheduled timer: (true time, token).
    timer: Option<(u64, u64)>,
}

#[derive(Debug)]
struct InFlight {
    request: ClientRequest,
    planned: PlannedOperation,
    /// The history operation id; `None` for unrecorded (local) reads.
    history_id: Option<u64>,
    attempts: u32,
    /// Copies of the request the network carried (attempts and duplicates).
    copies_sent: u32,
}

#[derive(Debug)]
struct SimClient {
    id: ClientId,
    home: ReplicaId,
    /// The client's number in the history; a client that gives up continues under a new one,
    /// so that every history client has at most one operation in flight.
    history_client: u64,
    next_request_number: RequestNumber,
    operations_left: u32,
    in_flight: Option<InFlight>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness { deadline: u64 },
    Finished,
}

/// What a run is asked to do beyond its seed.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub options: SimOptions,
    pub trace: bool,
}

#[derive(Debug)]
struct Simulation {
    options: SimOptions,
    now: u64,
    sequence: u64,
    queue: BTreeMap<(u64, u64), SimEvent>,
    replicas: Vec<SimReplica>,
    clients: Vec<SimClient>,
    network: Network,
    faults: FaultInjector,
    workload: Workload,
    phase: Phase,
    partition_generation: u64,
    next_timer_token: u64,
    next_history_client: u64,
    history: History,
    next_history_id: u64,
    /// The client request behind each history operation, to find its lines in the trace.
    origins: BTreeMap<u64, (ClientId, RequestNumber)>,
    trace: Trace,
    events: u64,
    failure: Option<Failure>,
}

/// Runs one seed to its end and returns what happened. Panics inside a replica are
/// caught and reported as [`FailureKind::Panic`].
pub fn simulate(settings: &RunSettings) -> RunOutcome {
    let mut simulation = match Simulation::new(settings) {
        Ok(simulation) => simulation,
        Err(failure) => {
            return RunOutcome::without_history(settings.options.clone(), failure);
        }
    };
    simulation.run();
    simulation.finish()
}

impl Simulation {
    fn new(settings: &RunSettings) -> Result<Simulation, Failure> {
        let options = settings.options.clone();
        let Some(protocol) = options.protocol.kind() else {
            return Err(Failure::new(
                FailureKind::Setup,
                format!("protocol {} is not implemented by noted-core yet", options.protocol),
            ));
        };
        let mut clock_rng = ChaCha8Rng::seed_from_u64(options.streams.clocks);
        let skew_max_nanos = u64::try_from(options.faults.clock_skew_max.as_nanos()).unwrap_or(u64::MAX);
        let mut replicas = Vec::new();
        for index in 0..options.replica_count {
            let mut config = Config::new(
                ClusterId(options.seed),
                ReplicaId(index),
                options.replica_count,
                protocol,
                options.streams.replicas.wrapping_add(u64::from(index)),
            );
            config.timing = options.timing;
            config.defect = options.defect;
            let clock = ReplicaClock::random(&mut clock_rng, skew_max_nanos, options.faults.clock_drift_max_ppm);
            let replica = noted_core::Replica::new(config.clone(), clock.local(0))
                .map_err(|error| Failure::new(FailureKind::Setup, format!("invalid configuration: {error}")))?;
            replicas.push(SimReplica {
                config,
                clock,
                replica: Some(replica),
                paused: false,
                held: Vec::new(),
                timer: None,
            });
        }
        let mut workload = Workload::new(options.workload, ChaCha8Rng::seed_from_u64(options.streams.workload));
        let clients = (0..options.workload.client_count)
            .map(|index| SimClient {
                id: ClientId(index + 1),
                home: ReplicaId(
                    u8::try_from(workload.random_index(usize::from(options.replica_count))).expect("few replicas"),
                ),
                history_client: index,
                next_request_number: 1,
                operations_left: options.workload.operations_per_client,
                in_flight: None,
            })
            .collect();
        let mut header = Header::new(ModelName::Notes);
        header.source = Some(options.replay_command());
        let mut simulation = Simulation {
            network: Network::new(options.network, ChaCha8Rng::seed_from_u64(options.streams.network)),
            faults: FaultInjector::new(options.faults, ChaCha8Rng::seed_from_u64(options.streams.faults)),
            workload,
            now: 0,
            sequence: 0,
            queue: BTreeMap::new(),
            replicas,
            clients,
            phase: Phase::Safety,
            partition_generation: 0,
            next_timer_token: 0,
            next_history_client: options.workload.client_count,
            history: History::new(header),
            next_history_id: 0,
            origins: BTreeMap::new(),
            trace: Trace::new(settings.trace),
            events: 0,
            failure: None,
            options,
        };
        simulation.trace.note(format_args!("{}", simulation.options));
        for replica in &simulation.replicas {
            simulation.trace.note(format_args!(
                "clock {}: offset {}us drift {}ppm",
                replica.config.replica,
                replica.clock.offset_nanos() / 1_000,
                replica.clock.drift_ppm()
            ));
        }
        for index in 0..simulation.replicas.len() {
            simulation.reschedule_timer(ReplicaId(u8::try_from(index).expect("few replicas")));
        }
        for client_index in 0..simulation.clients.len() {
            let think = simulation.workload.think_time_nanos();
            simulation.schedule(think, SimEvent::ClientIssue { client_index });
        }
        if let Some(interval) = simulation.faults.next_interval() {
            simulation.schedule(nanos(interval), SimEvent::FaultTick);
        }
        simulation.schedule(nanos(simulation.options.safety_duration), SimEvent::StartLiveness);
        Ok(simulation)
    }

    fn schedule(&mut self, after_nanos: u64, event: SimEvent) {
        self.sequence += 1;
        self.queue.insert((self.now.saturating_add(after_nanos), self.sequence), event);
    }

    fn run(&mut self) {
        while self.phase != Phase::Finished {
            let Some(((time, _), event)) = self.queue.pop_first() else {
                self.fail(FailureKind::Liveness, "nothing left to simulate, yet the run is not done".into());
                break;
            };
            self.now = time;
            self.events += 1;
            if self.events > EVENTS_MAX {
                self.fail(FailureKind::Liveness, format!("more than {EVENTS_MAX} events: the run does not settle"));
                break;
            }
            self.dispatch(event);
        }
    }

    fn fail(&mut self, kind: FailureKind, message: String) {
        self.trace.line(self.now, format_args!("FAILURE {kind}: {message}"));
        if self.failure.is_none() {
            self.failure = Some(Failure::new(kind, message));
        }
        self.phase = Phase::Finished;
    }

    fn dispatch(&mut self, event: SimEvent) {
        match event {
            SimEvent::Deliver { from, to, message } => {
                if self.network.is_cut(from, to) {
                    self.trace
                        .line(self.now, format_args!("{from} -/-> {to} cut by the partition: {}", message.kind()));
                    return;
                }
                if self.hold_or_drop(to, &SimEvent::Deliver { from, to, message: message.clone() }) {
                    return;
                }
                if self.trace.is_enabled() {
                    self.trace.line(self.now, format_args!("{from} --> {to} {}", describe_message(&message)));
                }
                self.input(to, Input::Message { from, message });
            }
            SimEvent::RequestArrives { to, request } => {
                if self.hold_or_drop(to, &SimEvent::RequestArrives { to, request: request.clone() }) {
                    return;
                }
                if self.trace.is_enabled() {
                    self.trace.line(
                        self.now,
                        format_args!(
                            "{}#{} --> {to} request {:?} {}",
                            request.client,
                            request.request_number,
                            request.consistency,
                            describe_operation(&request.operation)
                        ),
                    );
                }
                self.input(to, Input::Request(request));
            }
            SimEvent::ReplyArrives { from, client, request_number, reply, stale } => {
                self.on_reply(from, client, request_number, reply, stale)
            }
            SimEvent::ReplicaTimer { replica, token } => {
                let state = &mut self.replicas[replica.index()];
                if state.timer.map(|(_, current)| current) != Some(token) || state.paused || state.replica.is_none() {
                    return;
                }
                state.timer = None;
                self.input(replica, Input::Timeout);
            }
            SimEvent::ClientIssue { client_index } => self.issue(client_index),
            SimEvent::ClientTimeout { client_index, request_number, attempt } => {
                self.on_client_timeout(client_index, request_number, attempt)
            }
            SimEvent::FaultTick => self.fault_tick(),
            SimEvent::HealPartition { generation } => {
                if generation == self.partition_generation && self.network.partition().is_some() {
                    self.heal_partition();
                }
            }
            SimEvent::Restart { replica } => self.restart(replica),
            SimEvent::Resume { replica } => self.resume(replica),
            SimEvent::StartLiveness => self.start_liveness(),
            SimEvent::LivenessProbe => self.liveness_probe(),
        }
    }

    /// A crashed replica loses what reaches it; a paused one holds or loses it. True when the
    /// event must not be handled now.
    fn hold_or_drop(&mut self, to: ReplicaId, event: &SimEvent) -> bool {
        let hold = self.options.network.hold_while_paused;
        let state = &mut self.replicas[to.index()];
        if state.replica.is_none() {
            self.trace.line(self.now, format_args!("{to} is down: lost {}", event_kind(event)));
            return true;
        }
        if state.paused {
            if hold {
                state.held.push(event.clone());
                self.trace.line(self.now, format_args!("{to} is paused: holding {}", event_kind(event)));
            } else {
                self.trace.line(self.now, format_args!("{to} is paused: lost {}", event_kind(event)));
            }
            return true;
        }
        false
    }

    /// Gives one input to a replica at its own clock's reading and carries out its outputs.
    fn input(&mut self, at: ReplicaId, input: Input) {
        let state = &mut self.replicas[at.index()];
        let local_now = state.clock.local(self.now);
        let Some(replica) = state.replica.as_mut() else { return };
        let outputs = match quietly(|| replica.handle(local_now, input)) {
            Ok(outputs) => outputs,
            Err((message, location)) => {
                self.fail(FailureKind::Panic, format!("{at} panicked at {location}: {message}"));
                return;
            }
        };
        for output in outputs {
            match output {
                Output::Send { to, message } => self.send(at, to, message),
                Output::Reply { client, request_number, reply, freshness } => {
                    let stale = matches!(freshness, Freshness::PossiblyStale { .. });
                    self.send_reply(at, client, request_number, reply, stale);
                }
                Output::Event(event) => {
                    if self.trace.is_enabled() {
                        self.trace.line(self.now, format_args!("{at} {}", describe_event(&event)));
                    }
                }
            }
        }
        self.reschedule_timer(at);
    }

    fn send(&mut self, from: ReplicaId, to: ReplicaId, message: Message) {
        if self.network.is_cut(from, to) {
            self.trace.line(self.now, format_args!("{from} -/-> {to} cut by the partition: {}", message.kind()));
            return;
        }
        match self.network.fate() {
            Fate::Lost => self.trace.line(self.now, format_args!("{from} -x-> {to} lost: {}", message.kind())),
            Fate::Delivered { delay, duplicate_delay } => {
                if let Some(duplicate_delay) = duplicate_delay {
                    self.trace.line(self.now, format_args!("{from} ==> {to} duplicated: {}", message.kind()));
                    self.schedule(nanos(duplicate_delay), SimEvent::Deliver { from, to, message: message.clone() });
                }
                self.schedule(nanos(delay), SimEvent::Deliver { from, to, message });
            }
        }
    }

    fn send_reply(
        &mut self,
        from: ReplicaId,
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
        stale: bool,
    ) {
        match self.network.fate() {
            Fate::Lost => self.trace.line(self.now, format_args!("{from} -x-> {client}#{request_number} reply lost")),
            Fate::Delivered { delay, duplicate_delay } => {
                if let Some(duplicate_delay) = duplicate_delay {
                    let event = SimEvent::ReplyArrives { from, client, request_number, reply: reply.clone(), stale };
                    self.schedule(nanos(duplicate_delay), event);
                }
                self.schedule(nanos(delay), SimEvent::ReplyArrives { from, client, request_number, reply, stale });
            }
        }
    }

    /// Schedules the replica's next deadline, converted from its clock to true time.
    fn reschedule_timer(&mut self, at: ReplicaId) {
        let now = self.now;
        let state = &mut self.replicas[at.index()];
        let deadline = state.replica.as_ref().and_then(|replica| replica.next_timeout());
        let Some(deadline) = deadline else {
            state.timer = None;
            return;
        };
        let fires_at = state.clock.true_time_of(deadline).max(now);
        if state.timer.is_some_and(|(scheduled, _)| scheduled == fires_at) {
            return;
        }
        self.next_timer_token += 1;
        let token = self.next_timer_token;
        state.timer = Some((fires_at, token));
        self.sequence += 1;
        self.queue.insert((fires_at, self.sequence), SimEvent::ReplicaTimer { replica: at, token });
    }

    // ---- clients ----

    fn issue(&mut self, client_index: usize) {
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
    fn send_attempt(&mut self, client_index: usize) {
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

    fn on_client_timeout(&mut self, client_index: usize, request_number: RequestNumber, attempt: u32) {
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

    fn on_reply(
        &mut self,
        from: ReplicaId,
        client: ClientId,
        request_number: RequestNumber,
        reply: Reply,
        stale: bool,
    ) {
        let client_index = usize::try_from(client.0 - 1).expect("client ids start at 1");
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
        let completion = history_completion(&in_flight.planned.operation, &reply);
        if completion == Completion::Fail && in_flight.copies_sent > 1 {
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

    fn schedule_next_issue(&mut self, client_index: usize) {
        if self.clients[client_index].operations_left > 0 {
            let think = self.workload.think_time_nanos();
            self.schedule(think, SimEvent::ClientIssue { client_index });
        }
    }

    fn micros(&self) -> u64 {
        self.now / 1_000
    }

    // ---- faults ----

    fn fault_tick(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let crashed: Vec<bool> = self.replicas.iter().map(|replica| replica.replica.is_none()).collect();
        let paused: Vec<bool> = self.replicas.iter().map(|replica| replica.paused).collect();
        let view = ClusterView {
            replica_count: self.options.replica_count,
            crashed: &crashed,
            paused: &paused,
            partitioned: self.network.partition().is_some(),
        };
        match self.faults.choose(view) {
            None => {}
            Some(FaultAction::Partition { partition, lasting }) => {
                self.trace.line(self.now, format_args!("FAULT partition {partition} for {lasting:?}"));
                self.network.set_partition(Some(partition));
                self.partition_generation += 1;
                let generation = self.partition_generation;
                self.schedule(nanos(lasting), SimEvent::HealPartition { generation });
            }
            Some(FaultAction::HealPartition) => self.heal_partition(),
            Some(FaultAction::Crash { replica, lasting }) => {
                self.trace.line(self.now, format_args!("FAULT crash {replica} (memory lost) for {lasting:?}"));
                let state = &mut self.replicas[replica.index()];
                state.replica = None;
                state.paused = false;
                state.held.clear();
                state.timer = None;
                self.schedule(nanos(lasting), SimEvent::Restart { replica });
            }
            Some(FaultAction::Pause { replica, lasting }) => {
                self.trace.line(self.now, format_args!("FAULT pause {replica} for {lasting:?}"));
                self.replicas[replica.index()].paused = true;
                self.schedule(nanos(lasting), SimEvent::Resume { replica });
            }
        }
        if let Some(interval) = self.faults.next_interval() {
            self.schedule(nanos(interval), SimEvent::FaultTick);
        }
    }

    fn heal_partition(&mut self) {
        self.trace.line(self.now, format_args!("HEAL partition"));
        self.network.set_partition(None);
    }

    fn restart(&mut self, replica: ReplicaId) {
        let state = &mut self.replicas[replica.index()];
        if state.replica.is_some() {
            return;
        }
        let local_now = state.clock.local(self.now);
        match noted_core::Replica::new(state.config.clone(), local_now) {
            Ok(restarted) => state.replica = Some(restarted),
            Err(error) => return self.fail(FailureKind::Setup, format!("{replica} cannot restart: {error}")),
        }
        self.trace.line(self.now, format_args!("HEAL restart {replica} with empty memory"));
        self.reschedule_timer(replica);
    }

    fn resume(&mut self, replica: ReplicaId) {
        let state = &mut self.replicas[replica.index()];
        if !state.paused {
            return;
        }
        state.paused = false;
        let held = std::mem::take(&mut state.held);
        self.trace.line(self.now, format_args!("HEAL resume {replica} ({} held events)", held.len()));
        for event in held {
            self.schedule(0, event);
        }
        // The replica's deadline may have passed while it was paused.
        self.replicas[replica.index()].timer = None;
        self.reschedule_timer(replica);
    }

    // ---- liveness ----

    fn start_liveness(&mut self) {
        self.trace.line(self.now, format_args!("LIVENESS every fault healed; clients drain"));
        self.network.heal();
        for index in 0..self.replicas.len() {
            let replica = ReplicaId(u8::try_from(index).expect("few replicas"));
            self.restart(replica);
            self.resume(replica);
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

    fn liveness_probe(&mut self) {
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
        let message = divergence.unwrap_or_else(|| "clients still have operations to issue".into());
        self.fail(FailureKind::Convergence, format!("{message}, {bound:?} after every fault healed"))
    }

    /// How the replicas differ, if they do.
    fn divergence(&self) -> Option<String> {
        let first = self.replicas[0].replica.as_ref()?;
        for (index, state) in self.replicas.iter().enumerate().skip(1) {
            let replica = state.replica.as_ref()?;
            if replica.store() != first.store() {
                return Some(format!(
                    "R{index}'s store ({} notes, next id {}) differs from R0's ({} notes, next id {})",
                    replica.store().len(),
                    replica.store().next_id(),
                    first.store().len(),
                    first.store().next_id()
                ));
            }
            if replica.client_table() != first.client_table() {
                return Some(format!("R{index}'s client table differs from R0's"));
            }
        }
        None
    }

    fn finish(mut self) -> RunOutcome {
        // Requests still unanswered have an unknown outcome.
        for client in &self.clients {
            if let Some(id) = client.in_flight.as_ref().and_then(|in_flight| in_flight.history_id) {
                self.history.events.push(HistoryEvent::info(id, client.history_client).at(self.now / 1_000));
            }
        }
        RunOutcome {
            options: self.options,
            failure: self.failure,
            history: self.history,
            origins: self.origins,
            linearizability: None,
            trace: self.trace.into_text(),
            events: self.events,
            simulated_nanos: self.now,
        }
    }
}

fn nanos(duration: core::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn event_kind(event: &SimEvent) -> String {
    match event {
        SimEvent::Deliver { from, message, .. } => format!("{} from {from}", message.kind()),
        SimEvent::RequestArrives { request, .. } => format!("request {}#{}", request.client, request.request_number),
        other => format!("{other:?}"),
    }
}

thread_local! {
    /// Set while a replica handles an input: its panics are reported, not printed.
    static PANICS_ARE_QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last quiet panic happened.
    static QUIET_PANIC_LOCATION: RefCell<String> = const { RefCell::new(String::new()) };
}

static QUIET_HOOK: Once = Once::new();

/// Runs `action`, catching a panic and returning its message and location instead of
/// printing them: a replica's failed assertion is a finding the report shows, once.
/// Panics elsewhere (in tests, on other threads) still go to the previous hook.
pub fn quietly<T>(action: impl FnOnce() -> T) -> Result<T, (String, String)> {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if PANICS_ARE_QUIET.with(Cell::get) {
                let location = info.location().map_or_else(|| "an unknown place".to_string(), ToString::to_string);
                QUIET_PANIC_LOCATION.with(|last| *last.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
    let was_quiet = PANICS_ARE_QUIET.with(|quiet| quiet.replace(true));
    let result = catch_unwind(AssertUnwindSafe(action));
    PANICS_ARE_QUIET.with(|quiet| quiet.set(was_quiet));
    result.map_err(|payload| {
        let location = QUIET_PANIC_LOCATION.with(|last| last.borrow().clone());
        (panic_message(payload.as_ref()), location)
    })
}

/// The text of a panic payload (`panic!` with a message gives a `String` or a `&str`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else {
        "a panic without a message".to_string()
    }
}
