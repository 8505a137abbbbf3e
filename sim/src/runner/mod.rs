//! One simulated run: seed -> options -> a cluster of replicas, clients and a
//! network on one event queue -> a safety phase with faults -> a liveness phase
//! with every fault healed -> the history and the checks' verdicts.
//!
//! Every event sits in one queue ordered by (simulated true time, sequence
//! number), so events at the same instant run in the order they were scheduled.
//! Nothing in a run reads a clock, starts a thread or draws randomness but from
//! the seed: the same seed gives the same bytes of trace.

mod clients;
mod disks;
mod fault_actions;
mod liveness;
mod panics;
mod queue;
mod stalls;

use std::collections::BTreeMap;

pub use panics::{panic_message, quietly};

use noted_core::config::StorageKind;
use noted_core::{
    ClientId, ClientRequest, ClusterId, Config, Freshness, Input, Message, Output, ReplicaId, Reply, RequestNumber,
    wire,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::clock::ReplicaClock;
use crate::disk::SimDisk;
use crate::faults::FaultInjector;
use crate::history::{Event as HistoryEvent, Header, History, ModelName};
use crate::network::{Fate, Network};
use crate::options::SimOptions;
use crate::outcome::{Failure, FailureKind, RunOutcome};
use crate::trace::{Trace, describe_event, describe_message, describe_operation};
use crate::workload::{PlannedOperation, Workload};
use queue::{Due, EventQueue};

/// A run that processes more events than this is stuck in a loop (a replica asking
/// for a timeout that never advances): reported as a liveness failure.
const EVENTS_MAX: u64 = 20_000_000;
/// How often the liveness phase checks whether the run is done.
const LIVENESS_PROBE_NANOS: u64 = 20_000_000;

#[derive(Clone, Debug)]
enum SimEvent {
    /// A peer message reaches `to`. The message is boxed: it is the largest payload by far,
    /// and every event is moved in and out of the queue.
    Deliver {
        from: ReplicaId,
        to: ReplicaId,
        message: Box<Message>,
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
    /// A replica's deadline.
    ReplicaTimer {
        replica: ReplicaId,
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
    /// Every replica loses power at once (struck while a sync was in flight).
    PowerCut,
    /// A replica's disk finished a sync; `incarnation` tells a sync of an earlier life.
    SyncDone {
        replica: ReplicaId,
        id: u64,
        incarnation: u64,
    },
    /// Time for the next disk stall (see [`crate::options::StorageOptions::disk_stalls`]).
    DiskStallTick,
    /// A stalled disk takes writes again.
    DiskFreed {
        replica: ReplicaId,
        incarnation: u64,
    },
    /// The host tells a replica its disk stalled or returned (held while it is paused).
    StorageHealth {
        replica: ReplicaId,
        incarnation: u64,
        stalled: bool,
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
    /// With durable storage: the replica's disk, which outlives its crashes.
    disk: Option<SimDisk>,
    /// Restarts so far: a sync completion of an earlier life is ignored.
    incarnation: u64,
    paused: bool,
    /// The disk takes no writes: its syncs wait in `stalled_syncs` until it is freed.
    stalled: bool,
    stalled_syncs: Vec<u64>,
    /// Events that arrived while paused and wait for the resume.
    held: Vec<SimEvent>,
    /// The replica's pending deadline. It is kept here rather than in the queue because it
    /// moves on nearly every input: the run takes it when it comes before the queue's next event.
    timer: Option<Timer>,
}

#[derive(Clone, Copy, Debug)]
struct Timer {
    /// The deadline as the replica's clock reads it.
    deadline: noted_core::Instant,
    /// When the deadline falls in true time, in the queue's order.
    due: Due,
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
    queue: EventQueue<SimEvent>,
    replicas: Vec<SimReplica>,
    clients: Vec<SimClient>,
    network: Network,
    faults: FaultInjector,
    /// Sync latencies and what crashes leave on disks.
    disk_rng: ChaCha8Rng,
    workload: Workload,
    phase: Phase,
    partition_generation: u64,
    next_history_client: u64,
    history: History,
    next_history_id: u64,
    /// The client request behind each history operation, to find its lines in the trace.
    origins: BTreeMap<u64, (ClientId, RequestNumber)>,
    trace: Trace,
    events: u64,
    deliveries: u64,
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
        let protocol = options.protocol.kind();
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
            config.limits = options.limits;
            config.defect = options.defect;
            let clock = ReplicaClock::random(&mut clock_rng, skew_max_nanos, options.faults.clock_drift_max_ppm);
            let (replica, disk) = if options.storage.is_disk() {
                // The cluster is created once: every data directory formatted, then opened.
                config.storage = StorageKind::Disk;
                let disk = SimDisk::formatted(noted_core::storage::format(&config));
                let replica = noted_core::Replica::open(config.clone(), disk.image(), clock.local(0))
                    .map_err(|error| Failure::new(FailureKind::Setup, format!("cannot open a new disk: {error}")))?;
                (replica, Some(disk))
            } else {
                let replica = noted_core::Replica::new(config.clone(), clock.local(0))
                    .map_err(|error| Failure::new(FailureKind::Setup, format!("invalid configuration: {error}")))?;
                (replica, None)
            };
            replicas.push(SimReplica {
                config,
                clock,
                replica: Some(replica),
                disk,
                incarnation: 0,
                paused: false,
                stalled: false,
                stalled_syncs: Vec::new(),
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
            // Its own stream, derived so that runs without disks draw exactly as before.
            disk_rng: ChaCha8Rng::seed_from_u64(options.streams.faults ^ 0x6469_736b_5f72_6e67),
            workload,
            now: 0,
            queue: EventQueue::new(),
            replicas,
            clients,
            phase: Phase::Safety,
            partition_generation: 0,
            next_history_client: options.workload.client_count,
            history: History::new(header),
            next_history_id: 0,
            origins: BTreeMap::new(),
            trace: Trace::new(settings.trace),
            events: 0,
            deliveries: 0,
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
        if simulation.options.storage.disk_stalls {
            let first = simulation.stall_interval();
            simulation.schedule(first, SimEvent::DiskStallTick);
        }
        simulation.schedule(nanos(simulation.options.safety_duration), SimEvent::StartLiveness);
        Ok(simulation)
    }

    fn schedule(&mut self, after_nanos: u64, event: SimEvent) {
        self.queue.push(self.now.saturating_add(after_nanos), event);
    }

    fn run(&mut self) {
        while self.phase != Phase::Finished {
            let Some((time, event)) = self.next_event() else {
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

    /// The earliest of the queue's next event and the replicas' deadlines, taken out.
    fn next_event(&mut self) -> Option<(u64, SimEvent)> {
        let earliest_timer = (self.replicas.iter().enumerate())
            .filter_map(|(index, state)| state.timer.map(|timer| (timer.due, index)))
            .min();
        match earliest_timer {
            Some((due, index)) if self.queue.peek().is_none_or(|next| due < next) => {
                self.replicas[index].timer = None;
                let replica = ReplicaId(u8::try_from(index).expect("few replicas"));
                Some((due.time, SimEvent::ReplicaTimer { replica }))
            }
            _ => self.queue.pop(),
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
                if !self.may_take(to) {
                    return self.hold_or_drop(to, SimEvent::Deliver { from, to, message });
                }
                if self.trace.is_enabled() {
                    self.trace.line(self.now, format_args!("{from} --> {to} {}", describe_message(&message)));
                }
                self.deliveries += 1;
                self.input(to, Input::Message { from, message: *message });
            }
            SimEvent::RequestArrives { to, request } => {
                if !self.may_take(to) {
                    return self.hold_or_drop(to, SimEvent::RequestArrives { to, request });
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
            SimEvent::ReplicaTimer { replica } => {
                if self.may_take(replica) {
                    self.input(replica, Input::Timeout);
                }
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
            SimEvent::SyncDone { replica, id, incarnation } => self.sync_done(replica, id, incarnation),
            SimEvent::PowerCut => self.power_cut(),
            SimEvent::Resume { replica } => self.resume(replica),
            SimEvent::DiskStallTick => self.disk_stall_tick(),
            SimEvent::DiskFreed { replica, incarnation } => self.disk_freed(replica, incarnation),
            SimEvent::StorageHealth { replica, incarnation, stalled } => {
                self.tell_storage_health(replica, incarnation, stalled)
            }
            SimEvent::StartLiveness => self.start_liveness(),
            SimEvent::LivenessProbe => self.liveness_probe(),
        }
    }

    /// Whether `to` is up and running, so that what reaches it is handled now.
    fn may_take(&self, to: ReplicaId) -> bool {
        let state = &self.replicas[to.index()];
        state.replica.is_some() && !state.paused
    }

    /// What reaches a replica that may not take it: a crashed replica loses it; a paused
    /// one holds it until it resumes, or loses it.
    fn hold_or_drop(&mut self, to: ReplicaId, event: SimEvent) {
        let hold = self.options.network.hold_while_paused;
        let state = &mut self.replicas[to.index()];
        if state.replica.is_none() {
            self.trace.line(self.now, format_args!("{to} is down: lost {}", event_kind(&event)));
        } else if hold {
            self.trace.line(self.now, format_args!("{to} is paused: holding {}", event_kind(&event)));
            state.held.push(event);
        } else {
            self.trace.line(self.now, format_args!("{to} is paused: lost {}", event_kind(&event)));
        }
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
                Output::Storage(op) => self.store(at, op),
            }
        }
        self.reschedule_timer(at);
    }

    fn send(&mut self, from: ReplicaId, to: ReplicaId, message: Message) {
        let bytes = wire::payload_len(ClusterId(self.options.seed), from, to, &message);
        let bound = wire::size::message_bound(&message, &self.options.limits);
        if bytes > bound {
            let kind = message.kind();
            return self.fail(
                FailureKind::MessageSize,
                format!(
                    "{from} built a {kind} of {bytes} bytes for {to}, over the bound of {bound} bytes its limits set"
                ),
            );
        }
        if message.kind() == "snapshot_chunk" {
            self.maybe_strike_transfer(from, to);
            if !self.may_take(from) {
                return; // The sender crashed or paused as it sent.
            }
        }
        if self.network.is_cut(from, to) {
            self.trace.line(self.now, format_args!("{from} -/-> {to} cut by the partition: {}", message.kind()));
            return;
        }
        match self.network.fate() {
            Fate::Lost => self.trace.line(self.now, format_args!("{from} -x-> {to} lost: {}", message.kind())),
            Fate::Delivered { delay, duplicate_delay } => {
                if let Some(duplicate_delay) = duplicate_delay {
                    self.trace.line(self.now, format_args!("{from} ==> {to} duplicated: {}", message.kind()));
                    self.schedule(
                        nanos(duplicate_delay),
                        SimEvent::Deliver { from, to, message: Box::new(message.clone()) },
                    );
                }
                self.schedule(nanos(delay), SimEvent::Deliver { from, to, message: Box::new(message) });
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
        // A pending deadline that did not move keeps its place (it is not yet due, so
        // converting it again would give the same time).
        if state.timer.is_some_and(|timer| timer.deadline == deadline) {
            return;
        }
        let fires_at = state.clock.true_time_of(deadline).max(now);
        if state.timer.is_some_and(|timer| timer.due.time == fires_at) {
            return;
        }
        state.timer = Some(Timer { deadline, due: self.queue.place(fires_at) });
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
            deliveries: self.deliveries,
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
