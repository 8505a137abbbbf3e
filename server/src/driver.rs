//! The driver: one task per replica that owns the core [`Replica`], is its only
//! writer and the only reader of its clock.
//!
//! Sockets and HTTP handlers send it [`DriverInput`]s over a bounded channel; it
//! feeds them to the replica with the current time, carries out the outputs
//! (peer messages to the [`Outbox`], replies to the waiting HTTP handler, events
//! to logs and metrics, committed changes to the [`Feed`]), and sleeps until the
//! replica's next timeout.

use std::collections::HashMap;
use std::sync::Arc;

use noted_core::storage::StorageOp;
use noted_core::{
    Change, ClientId, ClientRequest, Event, Freshness, Input, Message, Output, Replica, ReplicaId, Reply,
    RequestNumber, Status,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::clock::HostClock;
use crate::failure::Failure;
use crate::feed::{Feed, Subscription};
use crate::metrics::Metrics;
use crate::peer::Outbox;
use crate::peer::faults::TestFaults;
use crate::storage::{StorageHandle, StorageSettings, Unsynced};

/// Inputs waiting for the driver; senders wait when it is full (back-pressure).
const INPUTS_MAX: usize = 4096;
/// Inputs taken at once, without going back to waiting on the channel, the shutdown
/// and the timer: under load the channel is rarely empty.
const INPUTS_PER_WAKE: usize = 256;
/// Waiting clients past which the driver forgets those that gave up.
const WAITING_SWEEP_THRESHOLD: usize = 1024;

/// The answer to one client request.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub reply: Reply,
    pub freshness: Freshness,
}

#[derive(Debug)]
pub enum DriverInput {
    Request {
        request: ClientRequest,
        answer_to: oneshot::Sender<Answer>,
    },
    Message {
        from: ReplicaId,
        message: Message,
    },
    /// A new watcher of the change feed; `from` is the last commit it has seen.
    Watch {
        from: Option<u64>,
        subscribed: oneshot::Sender<Subscription>,
    },
    /// Answered as soon as the driver takes it: it is alive and taking inputs.
    Ping {
        pong: oneshot::Sender<()>,
    },
    /// The storage executor completed this sync: what it covers is durable.
    Synced {
        id: u64,
    },
    /// A sync of the data directory failed: the replica stops.
    StorageFailed {
        message: String,
    },
    /// The data directory takes no writes (full, or failing them); the executor
    /// retries them in order until they go through.
    StorageStalled {
        reason: String,
    },
    /// The writes the executor was retrying went through.
    StorageResumed,
}

/// How the rest of the server talks to a driver. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    inputs: mpsc::Sender<DriverInput>,
    status: watch::Receiver<Status>,
}

impl DriverHandle {
    /// Submits a request; the receiver gets the answer, or is dropped if the driver stops.
    pub async fn request(&self, request: ClientRequest) -> Option<oneshot::Receiver<Answer>> {
        let (answer_to, answer) = oneshot::channel();
        self.inputs.send(DriverInput::Request { request, answer_to }).await.ok()?;
        Some(answer)
    }

    /// Hands a peer's message to the replica; `false` once the driver has stopped.
    pub async fn deliver(&self, from: ReplicaId, message: Message) -> bool {
        self.inputs.send(DriverInput::Message { from, message }).await.is_ok()
    }

    /// Subscribes to the change feed after commit `from` (or from a snapshot);
    /// `None` once the driver has stopped.
    pub async fn watch(&self, from: Option<u64>) -> Option<Subscription> {
        let (subscribed, subscription) = oneshot::channel();
        self.inputs.send(DriverInput::Watch { from, subscribed }).await.ok()?;
        subscription.await.ok()
    }

    /// Whether the driver takes an input within `within`: a driver that stopped, or
    /// is stuck, does not.
    pub async fn is_responsive(&self, within: std::time::Duration) -> bool {
        let (pong, answered) = oneshot::channel();
        let exchange = async { self.inputs.send(DriverInput::Ping { pong }).await.is_ok() && answered.await.is_ok() };
        tokio::time::timeout(within, exchange).await.unwrap_or(false)
    }

    /// The replica's status after its latest input.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }
}

pub struct Driver {
    replica: Replica,
    clock: HostClock,
    inputs: mpsc::Receiver<DriverInput>,
    outbox: Outbox,
    /// Clients waiting for their answer, by request. A client that retries while its
    /// first attempt still waits has two entries; both get the answer.
    waiting: HashMap<(ClientId, RequestNumber), Vec<oneshot::Sender<Answer>>>,
    status: watch::Sender<Status>,
    metrics: Arc<Metrics>,
    feed: Feed,
    /// Test-only: the driver panics, or stops taking inputs, on these client requests (see [`TestFaults`]).
    panic_at_request: Option<u64>,
    stall_at_request: Option<u64>,
    requests_taken: u64,
    /// The data directory's executor (disk storage), and the operations of the
    /// input being handled, handed to it in one batch.
    storage: Option<StorageHandle>,
    storage_operations: Vec<StorageOp>,
    /// Why the replica must stop, once its storage failed.
    stopped_by: Option<Failure>,
    repairing: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("replica", &self.replica.status().replica).finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver for a replica started now from its storage, and the handle to reach it.
    pub fn new(
        config: noted_core::Config,
        storage: &StorageSettings,
        outbox: Outbox,
        metrics: Arc<Metrics>,
        faults: TestFaults,
    ) -> Result<(Driver, DriverHandle), Failure> {
        let mut clock = HostClock::start();
        let (replica, data_dir) = crate::storage::open_replica(config, storage, clock.now())?;
        let (inputs_sender, inputs) = mpsc::channel(INPUTS_MAX);
        let storage = match (data_dir, storage) {
            (Some(dir), StorageSettings::Disk { unsynced, .. }) => {
                if *unsynced == Unsynced::HeldInMemory {
                    warn!("test storage mode: unsynced writes are held in memory and lost when the process dies");
                }
                let handle =
                    crate::storage::executor::spawn(dir, *unsynced, inputs_sender.clone(), Arc::clone(&metrics))
                        .map_err(|error| Failure::general(format!("cannot start the storage thread: {error}")))?;
                Some(handle)
            }
            _ => None,
        };
        let repairing = replica.status().repairing;
        if repairing {
            metrics.storage_repair(true);
            warn!(
                "the data directory is damaged: this replica repairs it from its peers before it takes part in a view change"
            );
        }
        let (status, status_receiver) = watch::channel(replica.status());
        let driver = Driver {
            replica,
            clock,
            inputs,
            outbox,
            waiting: HashMap::new(),
            status,
            metrics,
            feed: Feed::new(),
            panic_at_request: faults.panic_at_request,
            stall_at_request: faults.stall_at_request,
            requests_taken: 0,
            storage,
            storage_operations: Vec::new(),
            stopped_by: None,
            repairing,
        };
        Ok((driver, DriverHandle { inputs: inputs_sender, status: status_receiver }))
    }

    /// Runs until `shutdown`, then fails every waiting client by dropping its
    /// sender. Ends by itself, with the reason, when its storage failed.
    pub async fn run(mut self, shutdown: CancellationToken) -> Option<Failure> {
        loop {
            if self.stopped_by.is_some() {
                break;
            }
            let deadline = self.replica.next_timeout().map(|at| self.clock.deadline(at));
            let input = tokio::select! {
                () = shutdown.cancelled() => break,
                input = self.inputs.recv() => match input {
                    Some(input) => input,
                    None => break,
                },
                () = sleep_until_some(deadline) => {
                    self.handle(Input::Timeout);
                    continue;
                }
            };
            self.dispatch(input);
            for _ in 1..INPUTS_PER_WAKE {
                // A deadline that passed while inputs were handled goes first: under a
                // burst of heavy inputs the primary's heartbeats must still leave on time.
                self.handle_timeout_if_due();
                match self.inputs.try_recv() {
                    Ok(input) => self.dispatch(input),
                    Err(_) => break,
                }
            }
            if self.stopped_by.is_some() {
                break;
            }
            if self.stall_at_request.is_some_and(|request| self.requests_taken >= request) {
                warn!("test fault: the driver stops taking inputs");
                shutdown.cancelled().await;
                break;
            }
        }
        let status = self.replica.status();
        info!(replica = %status.replica, waiting = self.waiting.len(), "replica stopped");
        self.stopped_by
    }

    fn dispatch(&mut self, input: DriverInput) {
        match input {
            DriverInput::Request { request, answer_to } => {
                self.requests_taken += 1;
                if self.panic_at_request == Some(self.requests_taken) {
                    panic!("test fault: the driver panics on client request {}", self.requests_taken);
                }
                info!(
                    client = %request.client,
                    request_number = request.request_number,
                    operation = request.operation.name(),
                    consistency = ?request.consistency,
                    "client request"
                );
                self.remember(request.client, request.request_number, answer_to);
                self.handle(Input::Request(request));
            }
            DriverInput::Message { from, message } => self.handle(Input::Message { from, message }),
            DriverInput::Synced { id } => self.handle(Input::Synced { id }),
            DriverInput::StorageFailed { message } => self.stop(Failure::storage_failed(format!(
                "the data directory failed: {message}; the replica stopped and recovers from its disk and its \
                 peers when started again"
            ))),
            DriverInput::StorageStalled { reason } => {
                warn!(
                    %reason,
                    "the data directory takes no writes: this replica takes no prepares (a primary steps down) \
                     until they go through"
                );
                self.metrics.storage_stalled(Some(reason));
                self.handle(Input::StorageStalled);
            }
            DriverInput::StorageResumed => {
                info!("the data directory takes writes again: this replica takes part again");
                self.metrics.storage_stalled(None);
                self.handle(Input::StorageResumed);
            }
            DriverInput::Ping { pong } => {
                let _ = pong.send(());
            }
            DriverInput::Watch { from, subscribed } => {
                debug!(?from, published = self.feed.published(), "watcher subscribed");
                // A watcher that already left needs nothing.
                let _ = subscribed.send(self.feed.subscribe(from, self.replica.store()));
            }
        }
    }

    /// Stops taking inputs: nothing more leaves this replica (a message sent after
    /// a failed write could promise what the disk does not hold).
    fn stop(&mut self, failure: Failure) {
        error!(error = %failure, "replica stopping");
        self.stopped_by = Some(failure);
    }

    fn handle_timeout_if_due(&mut self) {
        let due = self.replica.next_timeout().is_some_and(|at| at <= self.clock.now());
        if due {
            self.handle(Input::Timeout);
        }
    }

    fn remember(&mut self, client: ClientId, request_number: RequestNumber, answer_to: oneshot::Sender<Answer>) {
        if self.waiting.len() >= WAITING_SWEEP_THRESHOLD {
            self.waiting.retain(|_, senders| {
                senders.retain(|sender| !sender.is_closed());
                !senders.is_empty()
            });
        }
        self.waiting.entry((client, request_number)).or_default().push(answer_to);
    }

    fn handle(&mut self, input: Input) {
        if self.stopped_by.is_some() {
            return;
        }
        let now = self.clock.now();
        let outputs = self.replica.handle(now, input);
        let mut changes: Vec<Change> = Vec::new();
        for output in outputs {
            match output {
                Output::Send { to, message } => {
                    debug!(%to, kind = message.kind(), "send");
                    self.outbox.send(to, message);
                }
                Output::Reply { client, request_number, reply, freshness } => {
                    self.answer(client, request_number, reply, freshness)
                }
                Output::Event(event) => {
                    self.log_event(&event);
                    if let Event::Committed { change } = event {
                        changes.push(change);
                    }
                }
                Output::Storage(operation) => self.storage_operations.push(operation),
            }
        }
        if !self.storage_operations.is_empty() {
            let operations = std::mem::take(&mut self.storage_operations);
            let submitted = self.storage.as_ref().is_some_and(|storage| storage.submit(operations));
            if !submitted {
                self.stop(Failure::storage_failed("the storage thread stopped; the replica stops"));
            }
        }
        self.feed.publish(changes, self.replica.store());
        let status = self.replica.status();
        if status.repairing != self.repairing {
            self.repairing = status.repairing;
            self.metrics.storage_repair(status.repairing);
            if status.repairing {
                warn!("damage found: this replica repairs its log from its peers");
            } else {
                info!(
                    view = status.view,
                    op_number = status.op_number,
                    "repair complete: the replica holds its view's log again"
                );
            }
        }
        // Readers of the status are woken only when it changed.
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            if changed {
                *current = status;
            }
            changed
        });
    }

    fn answer(&mut self, client: ClientId, request_number: RequestNumber, reply: Reply, freshness: Freshness) {
        info!(%client, request_number, reply = reply_summary(&reply), ?freshness, "reply");
        let mut waiting = self.waiting.remove(&(client, request_number)).unwrap_or_default();
        // The client may have given up; its retry will be answered from the client table.
        // Nearly always one waits: the last one gets the reply itself, not a copy.
        let last = waiting.pop();
        for answer_to in waiting {
            let _ = answer_to.send(Answer { reply: reply.clone(), freshness });
        }
        if let Some(answer_to) = last {
            let _ = answer_to.send(Answer { reply, freshness });
        }
    }

    fn log_event(&self, event: &Event) {
        self.metrics.event(event_kind(event));
        match event {
            Event::Dropped { from, reason } => {
                self.metrics.peer_dropped("core", reason.label());
                debug!(%from, ?reason, "dropped a peer message");
            }
            Event::Forwarded { client, request_number, to } => {
                info!(%client, request_number, primary = %to, "forward to primary")
            }
            Event::Ordered { sequence, client, request_number, operation } => {
                info!(op_number = sequence, %client, request_number, operation, "replicate (ordered)")
            }
            Event::Acknowledged { sequence, client, request_number } => {
                info!(op_number = sequence, %client, request_number, "acknowledged by a quorum; committed")
            }
            Event::Retransmitted { to, first_sequence, entries } => {
                debug!(%to, first_op_number = first_sequence, entries, "retransmit")
            }
            Event::SnapshotSent { to, sequence } => info!(%to, op_number = sequence, "state transfer: snapshot sent"),
            Event::SnapshotInstalled { from, sequence } => {
                info!(%from, op_number = sequence, "state transfer: snapshot installed")
            }
            Event::OwnershipAcquired { item, epoch, from } => info!(item, epoch, %from, "primary role acquired"),
            Event::OwnershipHandedOff { item, epoch, to } => info!(item, epoch, %to, "primary role handed off"),
            Event::ViewChangeStarted { view } => {
                self.metrics.view_change();
                warn!(view, "view change started")
            }
            Event::ViewStarted { view, primary } => info!(view, %primary, "view started"),
            Event::Recovered { view, op_number } => info!(view, op_number, "recovered"),
            Event::Overloaded { queue } => warn!(queue, "overloaded; request refused"),
            Event::Committed { change } => {
                debug!(commit = change.commit, operation = change.operation, id = %change.id, "applied")
            }
        }
    }
}

async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::Dropped { .. } => "dropped",
        Event::Forwarded { .. } => "forwarded",
        Event::Ordered { .. } => "ordered",
        Event::Acknowledged { .. } => "acknowledged",
        Event::Retransmitted { .. } => "retransmitted",
        Event::SnapshotSent { .. } => "snapshot_sent",
        Event::SnapshotInstalled { .. } => "snapshot_installed",
        Event::OwnershipAcquired { .. } => "ownership_acquired",
        Event::OwnershipHandedOff { .. } => "ownership_handed_off",
        Event::ViewChangeStarted { .. } => "view_change_started",
        Event::ViewStarted { .. } => "view_started",
        Event::Recovered { .. } => "recovered",
        Event::Overloaded { .. } => "overloaded",
        Event::Committed { .. } => "committed",
    }
}

fn reply_summary(reply: &Reply) -> String {
    match reply {
        Reply::Note { note } => format!("{} v{}", note.id, note.version),
        Reply::Page { page } => format!("{} notes", page.notes.len()),
        Reply::Deleted { id } => format!("{id} deleted"),
        Reply::Refused { refusal } => format!("refused: {refusal:?}"),
    }
}
