//! A generator of `notes` histories (lin-history) for the linearizability checker:
//! large, heavily concurrent, with unknown outcomes, and linearizable by construction
//! unless a violation is planted.
//!
//! # What it models
//!
//! A correct, linearizable notes store served to `clients` concurrent clients. Each
//! client issues operations one after another; at most `concurrency` operations are
//! outstanding at once (by default every client may have one in flight). An
//! operation's duration is drawn log-uniformly over an order of magnitude (10 to 100
//! ticks), and one in twenty is ten times longer, so that intervals overlap heavily,
//! as in a cluster under faults. The mix is creates, gets, puts, patches and deletes,
//! some writes with `if_match` (the latest version the clients have seen, or an older
//! one), over the `hot_notes` most recently created notes, and lists (some with
//! `after` and `limit`) at `list_share`. Every write carries a token unique to it
//! (`c12`, `w12`, `p12`: the operation's id), so a note's value names the write that
//! made it.
//!
//! # Why it is linearizable by construction
//!
//! Every operation that takes effect gets a linearization point: a completed one
//! inside its interval, one of unknown outcome anywhere after its call. The generator
//! applies the operations to an in-memory notes store in the order of their points and
//! reports what the store answered there: ids from a counter starting at 1, version 1
//! at create and one more per write, RFC 7396 merge patches, `if_match`,
//! `not_found`, pages of lists with `more`. That order respects real time (a point is
//! inside its interval, so an operation that returned before another was called has
//! the earlier point), and the sequential model explains every output in it: it is a
//! linearization. The store here follows `HISTORY-FORMAT.md` as the checker's `notes`
//! model does; a disagreement between the two would show as a generated history the
//! checker refutes.
//!
//! # Unknown outcomes
//!
//! At `unknown_share`, an operation's client times out: the completion is `info`, 300
//! to 1,000 ticks after the call, and until then the operation holds one of the
//! `concurrency` places. A write's effect is applied or not (a coin flip), at a point up
//! to twice the timeout after the call, so sometimes after the `info`, like a request
//! delivered late; a read has no effect. The client, like a real one that timed out,
//! waits up to another timeout and then moves on with new operations: blocking it for
//! the rest of the history would leave long histories with few live clients. When an
//! unknown operation is its client's last, its completion is left out: the history ends
//! with it in flight, as after a crash. `unknown_at` places them by rank in call order:
//! `spread` anywhere, `end` in the last 10% of the operations, `bursts` in three short
//! windows (about half of the operations inside one are unknown); the expected count is
//! `unknown_share` of the operations in each case.
//!
//! # A planted violation
//!
//! `plant: Some(Plant::StaleRead)` generates the history as without it, then plants a
//! stale read in it as [`crate::plant`] does for any recorded history, seeded by the
//! history's seed: one completed `get`, or one entry of a completed `list`, of a note on
//! which a write that established version `v >= 2` *returned before the read was
//! called* reports version `v - 1` with the body the note had then. In every
//! linearization that write precedes the read; after it the note's version is at least
//! `v` or the note is gone for good (versions only grow, ids are never reused), so no
//! linearization can explain the read: the history is certainly illegal. The header's
//! `expect` is then `illegal`, and its `source` names the planted operation:
//! `HISTORY-FORMAT.md` defines no free header field, and `source` is free text saying
//! how the history was made (`noted-sim gen-history` also prints it on standard error).
//!
//! The generator is pure: the same options give the same history, byte for byte
//! (one seeded `ChaCha8Rng`, no clock, ordered maps only).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use crate::history::{Event, EventKind, Expectation, Header, History, ModelName};

/// Where operations of unknown outcome fall in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownAt {
    /// Anywhere, independently.
    Spread,
    /// In the last 10% of the operations, as when a crash ends a run.
    End,
    /// In three short windows.
    Bursts,
}

impl UnknownAt {
    fn name(self) -> &'static str {
        match self {
            UnknownAt::Spread => "spread",
            UnknownAt::End => "end",
            UnknownAt::Bursts => "bursts",
        }
    }
}

/// A violation to plant in an otherwise linearizable history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Plant {
    /// A read that returns an older version of a note than a write that returned before it.
    StaleRead,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    pub seed: u64,
    pub clients: u64,
    /// Operations over all clients.
    pub operations: u64,
    /// Operations outstanding at once; `None` means one per client.
    pub concurrency: Option<u64>,
    /// The share of operations that are lists, from 0 to 1.
    pub list_share: f64,
    /// The share of operations whose outcome is unknown, from 0 to 1.
    pub unknown_share: f64,
    pub unknown_at: UnknownAt,
    /// How many of the most recently created notes most operations go to.
    pub hot_notes: u64,
    pub plant: Option<Plant>,
}

impl GenOptions {
    /// The defaults of `noted-sim gen-history`.
    pub fn new(seed: u64, clients: u64, operations: u64) -> GenOptions {
        GenOptions {
            seed,
            clients,
            operations,
            concurrency: None,
            list_share: 0.05,
            unknown_share: 0.02,
            unknown_at: UnknownAt::Spread,
            hot_notes: 4,
            plant: None,
        }
    }

    /// Every option in range, or why not.
    pub fn validate(&self) -> Result<(), String> {
        if self.clients == 0 {
            return Err("--clients must be at least 1".to_string());
        }
        if self.concurrency == Some(0) {
            return Err("--concurrency must be at least 1".to_string());
        }
        if self.hot_notes == 0 {
            return Err("--notes must be at least 1".to_string());
        }
        for (name, share) in [("--list-share", self.list_share), ("--unknown-share", self.unknown_share)] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} must be between 0 and 1, not {share}"));
            }
        }
        Ok(())
    }

    fn concurrency(&self) -> u64 {
        self.concurrency.unwrap_or(self.clients).max(1)
    }

    /// The command that generates this history, every option spelled out.
    pub fn command(&self) -> String {
        let mut command = format!(
            "noted-sim gen-history --seed {} --clients {} --operations {} --concurrency {} --list-share {} \
             --unknown-share {} --unknown-at {} --notes {}",
            self.seed,
            self.clients,
            self.operations,
            self.concurrency(),
            self.list_share,
            self.unknown_share,
            self.unknown_at.name(),
            self.hot_notes
        );
        if self.plant == Some(Plant::StaleRead) {
            command.push_str(" --plant stale-read");
        }
        command
    }
}

/// The read a planted violation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantedRead {
    /// The `get` or `list` whose output was changed.
    pub operation: u64,
    pub function: &'static str,
    pub note: u64,
    /// The version the read now reports.
    pub reported_version: u64,
    /// The version the earlier write established.
    pub established_version: u64,
    /// That write, which returned before the read was called.
    pub write: u64,
}

impl std::fmt::Display for PlantedRead {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "stale read: {} operation {} reports note {} at version {}, but write operation {} had \
             returned version {} before it was called",
            self.function, self.operation, self.note, self.reported_version, self.write, self.established_version
        )
    }
}

/// A generated history and what was planted in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub history: History,
    /// `None` when nothing was asked for, or when no read could carry the violation
    /// (then `expect` stays `linearizable`).
    pub planted: Option<PlantedRead>,
}

/// Generates a history (see the module documentation). Options out of range are clamped:
/// call [`GenOptions::validate`] first to refuse them instead.
pub fn generate(options: &GenOptions) -> History {
    generate_with_report(options).history
}

/// Generates a history and says which read, if any, carries the planted violation.
pub fn generate_with_report(options: &GenOptions) -> Generated {
    let mut random = ChaCha8Rng::seed_from_u64(options.seed);
    let schedule = schedule(options, &mut random);
    let operations = run_store(options, &schedule, &mut random);
    let mut header = Header::new(ModelName::Notes);
    header.expect = Some(Expectation::Linearizable);
    header.source = Some(options.command());
    let history = History { header, events: events(&schedule, &operations) };
    let planted = match options.plant {
        // The same planting as `noted-sim plant-stale-read`, seeded by the history's seed.
        Some(Plant::StaleRead) => {
            crate::plant::plant_stale_read(&history, options.seed).expect("a generated history is well formed")
        }
        None => None,
    };
    match planted {
        Some((mut history, planted)) => {
            history.header.expect = Some(Expectation::Illegal);
            history.header.source = Some(format!("{} (planted {planted})", options.command()));
            Generated { history, planted: Some(planted) }
        }
        None => Generated { history, planted: None },
    }
}

/// When an operation happens, decided before what it does.
#[derive(Debug, Clone)]
struct Slot {
    client: u64,
    call: u64,
    /// The return, or the `info` of an unknown outcome.
    end: u64,
    /// The linearization point, when the operation takes effect.
    point: Option<u64>,
    unknown: bool,
    /// An unknown outcome left without a completion line.
    no_completion: bool,
}

const DURATION_MIN: f64 = 10.0;
const DURATION_MAX: f64 = 100.0;
const LONG_PER_MILLE: u32 = 50;
const TIMEOUT_MIN: u64 = 300;
const TIMEOUT_MAX: u64 = 1000;
const BURSTS: u64 = 3;

/// A coin that lands true with this probability; a probability out of range (or NaN) is clamped.
fn chance(random: &mut ChaCha8Rng, probability: f64) -> bool {
    let probability = if probability.is_nan() { 0.0 } else { probability.clamp(0.0, 1.0) };
    random.random_bool(probability)
}

fn log_uniform(random: &mut ChaCha8Rng, low: f64, high: f64) -> u64 {
    let exponent = random.random_range(low.ln()..high.ln());
    exponent.exp().round() as u64
}

fn duration(random: &mut ChaCha8Rng) -> u64 {
    let base = log_uniform(random, DURATION_MIN, DURATION_MAX);
    if random.random_range(0..1000) < LONG_PER_MILLE { base * 10 } else { base }
}

/// Decides which operations (by their rank in issue order) have unknown outcomes.
struct UnknownPlan {
    at: UnknownAt,
    share: f64,
    operations: u64,
    /// First ranks of the burst windows, and their width.
    bursts: Vec<u64>,
    burst_width: u64,
}

impl UnknownPlan {
    fn new(options: &GenOptions, random: &mut ChaCha8Rng) -> UnknownPlan {
        let expected = options.unknown_share * options.operations as f64;
        // Windows twice as wide as their share, so that half of a window's operations are unknown.
        let burst_width = ((2.0 * expected / BURSTS as f64).ceil() as u64).clamp(1, options.operations.max(1));
        let bursts =
            (0..BURSTS).map(|_| random.random_range(0..=options.operations.saturating_sub(burst_width))).collect();
        UnknownPlan {
            at: options.unknown_at,
            share: options.unknown_share,
            operations: options.operations,
            bursts,
            burst_width,
        }
    }

    fn is_unknown(&self, rank: u64, random: &mut ChaCha8Rng) -> bool {
        if self.share <= 0.0 {
            return false;
        }
        let expected = self.share * self.operations as f64;
        let probability = match self.at {
            UnknownAt::Spread => self.share,
            UnknownAt::End => {
                let tail = self.operations.div_ceil(10).max(1);
                if rank < self.operations - tail.min(self.operations) {
                    return false;
                }
                expected / tail as f64
            }
            UnknownAt::Bursts => {
                if !self.bursts.iter().any(|&start| (start..start + self.burst_width).contains(&rank)) {
                    return false;
                }
                expected / (BURSTS * self.burst_width) as f64
            }
        };
        chance(random, probability)
    }
}

/// Draws every operation's client, interval and point, in call order.
fn schedule(options: &GenOptions, random: &mut ChaCha8Rng) -> Vec<Slot> {
    let clients = options.clients.max(1);
    let concurrency = options.concurrency();
    let unknown_plan = UnknownPlan::new(options, random);
    let mut ready: Vec<u64> = (0..clients).map(|_| random.random_range(0..=10)).collect();
    let mut outstanding: BinaryHeap<Reverse<u64>> = BinaryHeap::new();
    let mut slots: Vec<Slot> = Vec::new();
    // Calls are made in time order, so that the outstanding ends are exactly the operations
    // in flight at each call; a client ready while every place is taken waits for one.
    let mut now = 0;
    for rank in 0..options.operations {
        let client = (0..clients).min_by_key(|&client| (ready[client as usize], client)).unwrap_or(0);
        let mut call = ready[client as usize].max(now);
        // An operation still outstanding at the call holds its place; intervals are closed,
        // so one ending at the call's instant still overlaps it.
        let release = |outstanding: &mut BinaryHeap<Reverse<u64>>, call: u64| {
            while outstanding.peek().is_some_and(|&Reverse(end)| end < call) {
                outstanding.pop();
            }
        };
        release(&mut outstanding, call);
        if outstanding.len() as u64 >= concurrency
            && let Some(Reverse(end)) = outstanding.pop()
        {
            call = call.max(end + 1);
            release(&mut outstanding, call);
        }
        now = call;
        let unknown = unknown_plan.is_unknown(rank, random);
        let (end, point, next_ready) = if unknown {
            let timeout = random.random_range(TIMEOUT_MIN..=TIMEOUT_MAX);
            let end = call + timeout;
            // Applied or not; when applied, possibly after the client gave up.
            let point = random.random_bool(0.5).then(|| call + random.random_range(0..=2 * timeout));
            (end, point, end + 1 + random.random_range(0..=timeout))
        } else {
            let end = call + duration(random);
            let point = random.random_range(call..=end);
            // The next call comes strictly after this return: at the same instant it would overlap.
            (end, Some(point), end + 1 + random.random_range(0..=3))
        };
        outstanding.push(Reverse(end));
        ready[client as usize] = next_ready;
        slots.push(Slot { client, call, end, point, unknown, no_completion: false });
    }
    slots.sort_by_key(|slot| (slot.call, slot.client));
    let mut last_of_client: BTreeMap<u64, usize> = BTreeMap::new();
    for (index, slot) in slots.iter().enumerate() {
        last_of_client.insert(slot.client, index);
    }
    for index in last_of_client.into_values() {
        if slots[index].unknown {
            slots[index].no_completion = true;
        }
    }
    slots
}

/// What one operation did.
#[derive(Debug, Clone)]
struct Done {
    function: &'static str,
    input: Value,
    /// The store's answer; also computed for unknown outcomes, which never report it.
    output: Option<Value>,
}

#[derive(Debug, Default)]
struct Store {
    creates_done: u64,
    notes: BTreeMap<u64, (Value, u64)>,
}

fn error(code: &str) -> Value {
    json!({ "error": { "code": code } })
}

impl Store {
    fn apply(&mut self, function: &str, input: &Value) -> Value {
        let id = input.get("id").and_then(Value::as_u64).unwrap_or(0);
        let if_match = input.get("if_match").and_then(Value::as_u64);
        match function {
            "create" => {
                self.creates_done += 1;
                let id = self.creates_done;
                let body = input["body"].clone();
                self.notes.insert(id, (body, 1));
                json!({ "id": id, "version": 1 })
            }
            "get" => match self.notes.get(&id) {
                Some((note, version)) => json!({ "note": note, "version": version }),
                None => error("not_found"),
            },
            "list" => {
                let after = input.get("after").and_then(Value::as_u64).unwrap_or(0);
                let limit = input.get("limit").and_then(Value::as_u64);
                let mut remaining = self.notes.range(after.saturating_add(1)..);
                let page: Vec<Value> = remaining
                    .by_ref()
                    .take(limit.map_or(usize::MAX, |limit| limit as usize))
                    .map(|(id, (note, version))| json!({ "id": id, "version": version, "note": note }))
                    .collect();
                let more = remaining.next().is_some();
                // Without a limit the page is every note, and says nothing of more.
                match limit {
                    Some(_) => json!({ "notes": page, "more": more }),
                    None => json!({ "notes": page }),
                }
            }
            "put" | "patch" | "delete" => {
                let Some((note, version)) = self.notes.get(&id) else { return error("not_found") };
                if if_match.is_some_and(|expected| expected != *version) {
                    return error("precondition_failed");
                }
                let version = version + 1;
                match function {
                    "delete" => {
                        self.notes.remove(&id);
                        json!({})
                    }
                    "put" => {
                        let body = input["body"].clone();
                        self.notes.insert(id, (body, version));
                        json!({ "version": version })
                    }
                    _ => {
                        let body = merge_patch(note, &input["patch"]);
                        self.notes.insert(id, (body.clone(), version));
                        json!({ "version": version, "note": body })
                    }
                }
            }
            _ => error("bad_request"),
        }
    }
}

/// RFC 7396 JSON Merge Patch.
fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch_fields) = patch else { return patch.clone() };
    let mut fields = match target {
        Value::Object(fields) => fields.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch_fields {
        if value.is_null() {
            fields.remove(key);
        } else {
            let merged = merge_patch(fields.get(key).unwrap_or(&Value::Null), value);
            fields.insert(key.clone(), merged);
        }
    }
    Value::Object(fields)
}

/// What the clients have learnt from completed operations, to aim the next ones.
#[derive(Debug, Default)]
struct Knowledge {
    /// Ids in the order they were learnt.
    ids: Vec<u64>,
    seen: BTreeSet<u64>,
    highest_id: u64,
    /// The highest version seen of each note.
    versions: BTreeMap<u64, u64>,
}

impl Knowledge {
    fn learn(&mut self, id: u64, version: Option<u64>) {
        if self.seen.insert(id) {
            self.ids.push(id);
            self.highest_id = self.highest_id.max(id);
        }
        if let Some(version) = version {
            let known = self.versions.entry(id).or_insert(version);
            *known = (*known).max(version);
        }
    }

    fn learn_from(&mut self, done: &Done) {
        let Some(output) = &done.output else { return };
        if output.get("error").is_some() {
            return;
        }
        let version = output.get("version").and_then(Value::as_u64);
        match done.function {
            "create" => {
                if let Some(id) = output.get("id").and_then(Value::as_u64) {
                    self.learn(id, version);
                }
            }
            "get" | "put" | "patch" => {
                if let Some(id) = done.input.get("id").and_then(Value::as_u64) {
                    self.learn(id, version);
                }
            }
            "list" => {
                for entry in output["notes"].as_array().into_iter().flatten() {
                    if let Some(id) = entry.get("id").and_then(Value::as_u64) {
                        self.learn(id, entry.get("version").and_then(Value::as_u64));
                    }
                }
            }
            _ => {}
        }
    }

    /// Mostly one of the hot notes; sometimes any note known, or one not known to exist yet
    /// (a concurrent create may have made it).
    fn pick_id(&self, hot: u64, random: &mut ChaCha8Rng) -> u64 {
        let highest = self.highest_id;
        let roll = random.random_range(0..100);
        if self.ids.is_empty() || roll >= 95 {
            return highest + random.random_range(1..=2);
        }
        if roll >= 85 {
            return self.ids[random.random_range(0..self.ids.len())];
        }
        let hot = (hot as usize).clamp(1, self.ids.len());
        self.ids[self.ids.len() - 1 - random.random_range(0..hot)]
    }

    /// Usually the latest version seen (which concurrent writes may have made stale), else an older one.
    fn pick_if_match(&self, id: u64, random: &mut ChaCha8Rng) -> Option<u64> {
        if random.random_range(0..100) >= 30 {
            return None;
        }
        let latest = self.versions.get(&id).copied().unwrap_or(1);
        Some(if latest > 1 && random.random_range(0..100) < 30 { random.random_range(1..latest) } else { latest })
    }
}

fn choose_call(options: &GenOptions, rank: u64, knowledge: &Knowledge, random: &mut ChaCha8Rng) -> Done {
    let token = |prefix: &str| Value::String(format!("{prefix}{rank}"));
    if chance(random, options.list_share) {
        let mut input = Map::new();
        if random.random_bool(0.5) {
            let id = knowledge.pick_id(options.hot_notes, random);
            input.insert("after".to_string(), json!(id.saturating_sub(random.random_range(1..=2))));
        }
        if random.random_bool(0.5) {
            input.insert("limit".to_string(), json!(random.random_range(1..=3)));
        }
        return Done { function: "list", input: Value::Object(input), output: None };
    }
    // Creates fill the hot set first, then replace the notes deletes remove.
    let create_percent = if (knowledge.ids.len() as u64) < options.hot_notes { 50 } else { 10 };
    let roll = random.random_range(0..100);
    if roll < create_percent {
        let mut body = Map::new();
        body.insert("title".to_string(), token("c"));
        if random.random_bool(0.5) {
            body.insert("tag".to_string(), json!("new"));
        }
        return Done { function: "create", input: json!({ "body": body }), output: None };
    }
    let id = knowledge.pick_id(options.hot_notes, random);
    let roll = random.random_range(0..100);
    let (function, mut input) = if roll < 40 {
        ("get", json!({ "id": id }))
    } else if roll < 65 {
        let mut body = Map::new();
        body.insert("title".to_string(), token("w"));
        if random.random_bool(0.3) {
            body.insert("extra".to_string(), json!({ "by": token("w") }));
        }
        ("put", json!({ "id": id, "body": body }))
    } else if roll < 93 {
        const KEYS: [&str; 3] = ["title", "tag", "extra"];
        let mut patch = Map::new();
        let key = KEYS[random.random_range(0..KEYS.len())];
        patch.insert(key.to_string(), token("p"));
        if random.random_bool(0.3) {
            let removed = KEYS[random.random_range(0..KEYS.len())];
            if removed != key {
                patch.insert(removed.to_string(), Value::Null);
            }
        }
        ("patch", json!({ "id": id, "patch": patch }))
    } else {
        ("delete", json!({ "id": id }))
    };
    if function != "get"
        && let Some(version) = knowledge.pick_if_match(id, random)
    {
        input["if_match"] = json!(version);
    }
    Done { function, input, output: None }
}

/// Chooses each operation's input at its call and computes its output at its point.
fn run_store(options: &GenOptions, slots: &[Slot], random: &mut ChaCha8Rng) -> Vec<Done> {
    // At one instant: calls, then points (in operation order), then returns; so an operation
    // is called before its point and its point comes before its return.
    const CALL: u8 = 0;
    const POINT: u8 = 1;
    const RETURN: u8 = 2;
    let mut moments: Vec<(u64, u8, usize)> = Vec::with_capacity(slots.len() * 3);
    for (index, slot) in slots.iter().enumerate() {
        moments.push((slot.call, CALL, index));
        if let Some(point) = slot.point {
            moments.push((point, POINT, index));
        }
        if !slot.unknown {
            moments.push((slot.end, RETURN, index));
        }
    }
    moments.sort_unstable();
    let mut store = Store::default();
    let mut knowledge = Knowledge::default();
    let mut done: Vec<Option<Done>> = vec![None; slots.len()];
    for (_, moment, index) in moments {
        match moment {
            CALL => done[index] = Some(choose_call(options, index as u64, &knowledge, random)),
            POINT => {
                let Some(operation) = done[index].as_mut() else { continue };
                let read = matches!(operation.function, "get" | "list");
                if !(slots[index].unknown && read) {
                    operation.output = Some(store.apply(operation.function, &operation.input));
                }
            }
            _ => {
                if let Some(operation) = &done[index] {
                    knowledge.learn_from(operation);
                }
            }
        }
    }
    let mut operations: Vec<Done> = done.into_iter().flatten().collect();
    for (operation, slot) in operations.iter_mut().zip(slots) {
        if slot.unknown {
            operation.output = None;
        }
    }
    operations
}

fn events(slots: &[Slot], operations: &[Done]) -> Vec<Event> {
    let mut timed: Vec<(u64, EventKind, u64, Event)> = Vec::with_capacity(slots.len() * 2);
    for (index, (slot, operation)) in slots.iter().zip(operations).enumerate() {
        let id = index as u64;
        let call = Event::call(id, slot.client, operation.function, Some(operation.input.clone())).at(slot.call);
        timed.push((slot.call, EventKind::Call, id, call));
        if slot.no_completion {
            continue;
        }
        let completion = if slot.unknown {
            Event::info(id, slot.client)
        } else {
            Event::ok(id, slot.client, operation.output.clone())
        };
        timed.push((slot.end, completion.kind, id, completion.at(slot.end)));
    }
    timed.sort_by_key(|&(time, kind, id, _)| (time, kind != EventKind::Call, id));
    timed.into_iter().map(|(.., event)| event).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{Verdict, check};
    use crate::history::{Operation, Outcome};

    fn options(seed: u64, list_share: f64, unknown_share: f64, unknown_at: UnknownAt) -> GenOptions {
        GenOptions { list_share, unknown_share, unknown_at, ..GenOptions::new(seed, 3, 60) }
    }

    /// Small histories of every kind: lists or not, unknown outcomes (placed each way) or not.
    fn small_variants(seed: u64) -> Vec<GenOptions> {
        vec![
            options(seed, 0.0, 0.0, UnknownAt::Spread),
            options(seed, 0.1, 0.0, UnknownAt::Spread),
            options(seed, 0.0, 0.05, UnknownAt::Spread),
            options(seed, 0.1, 0.05, UnknownAt::Spread),
            options(seed, 0.1, 0.05, UnknownAt::End),
            options(seed, 0.1, 0.05, UnknownAt::Bursts),
        ]
    }

    #[test]
    fn the_same_options_give_the_same_bytes() {
        for plant in [None, Some(Plant::StaleRead)] {
            let options = GenOptions { plant, ..GenOptions::new(7, 5, 400) };
            assert_eq!(generate(&options).to_jsonl(), generate(&options).to_jsonl());
            let other = GenOptions { seed: 8, ..options.clone() };
            assert_ne!(generate(&options).to_jsonl(), generate(&other).to_jsonl());
        }
    }

    fn well_formed(operation: &Operation) -> Result<(), String> {
        let input = &operation.input;
        let number = |value: &Value, name: &str| value.get(name).is_none_or(Value::is_u64);
        let needs_id = matches!(operation.function.as_str(), "get" | "put" | "patch" | "delete");
        let shaped = match operation.function.as_str() {
            "create" => input["body"].is_object(),
            "get" => true,
            "put" => input["body"].is_object(),
            "patch" => input["patch"].is_object(),
            "delete" => true,
            "list" => number(input, "after") && number(input, "limit"),
            other => return Err(format!("unknown function {other}")),
        };
        if !shaped || (needs_id && !input["id"].is_u64()) || !number(input, "if_match") {
            return Err(format!("bad input {input}"));
        }
        let Outcome::Ok(output) = &operation.outcome else { return Ok(()) };
        if let Some(code) = output.get("error") {
            let code = code["code"].as_str().unwrap_or_default();
            let allowed = match operation.function.as_str() {
                "get" => code == "not_found",
                "put" | "patch" | "delete" => code == "not_found" || code == "precondition_failed",
                _ => false,
            };
            return if allowed { Ok(()) } else { Err(format!("{} cannot fail with {output}", operation.function)) };
        }
        let shaped = match operation.function.as_str() {
            "create" => output["id"].as_u64().is_some_and(|id| id >= 1) && output["version"] == 1,
            "get" => output["note"].is_object() && output["version"].is_u64(),
            "put" => output["version"].as_u64().is_some_and(|version| version >= 2),
            "patch" => output["version"].as_u64().is_some_and(|version| version >= 2) && output["note"].is_object(),
            "delete" => output == &json!({}),
            _ => output["notes"].as_array().is_some_and(|notes| {
                notes.iter().all(|entry| entry["id"].is_u64() && entry["version"].is_u64() && entry["note"].is_object())
                    && notes.windows(2).all(|pair| pair[0]["id"].as_u64() < pair[1]["id"].as_u64())
                    && notes.len() as u64 <= input.get("limit").and_then(Value::as_u64).unwrap_or(u64::MAX)
            }),
        };
        if shaped { Ok(()) } else { Err(format!("{} answered {output}", operation.function)) }
    }

    #[test]
    fn every_history_parses_and_its_operations_are_well_formed() {
        let mut variants: Vec<GenOptions> = (0..4).flat_map(small_variants).collect();
        variants.push(GenOptions { concurrency: Some(2), ..GenOptions::new(3, 6, 500) });
        variants.push(GenOptions { unknown_share: 0.3, unknown_at: UnknownAt::Bursts, ..GenOptions::new(4, 4, 500) });
        variants.push(GenOptions { plant: Some(Plant::StaleRead), ..GenOptions::new(5, 10, 1000) });
        for options in variants {
            let generated = generate_with_report(&options);
            let text = generated.history.to_jsonl();
            let parsed = History::parse_jsonl(&text).unwrap_or_else(|error| panic!("{options:?}: {error}"));
            assert_eq!(parsed, generated.history);
            let operations = parsed.operations().expect("parsed");
            assert_eq!(operations.len() as u64, options.operations, "{options:?}");
            for operation in &operations {
                well_formed(operation)
                    .unwrap_or_else(|error| panic!("{options:?}: operation {}: {error}", operation.id));
            }
            let expect = if options.plant.is_some() { Expectation::Illegal } else { Expectation::Linearizable };
            assert_eq!(parsed.header.expect, Some(expect), "{options:?}");
            assert!(parsed.header.source.as_deref().is_some_and(|source| source.starts_with(&options.command())));
        }
    }

    /// The most operations in flight at one instant, counting an unknown outcome until its `info`.
    fn peak_in_flight(history: &History) -> usize {
        let mut in_flight = 0usize;
        let mut peak = 0;
        for event in &history.events {
            if event.kind == EventKind::Call {
                in_flight += 1;
                peak = peak.max(in_flight);
            } else {
                in_flight -= 1;
            }
        }
        peak
    }

    #[test]
    fn operations_overlap_up_to_the_concurrency_and_no_more() {
        let everyone = generate(&GenOptions::new(1, 8, 2000));
        assert_eq!(peak_in_flight(&everyone), 8);
        let limited = generate(&GenOptions { concurrency: Some(3), ..GenOptions::new(1, 8, 2000) });
        assert_eq!(peak_in_flight(&limited), 3);
        // Heavy overlap: with 8 clients, most calls find several others in flight.
        let operations = everyone.operations().expect("valid");
        let overlapping = operations
            .iter()
            .filter(|operation| {
                operations
                    .iter()
                    .filter(|other| {
                        other.id != operation.id && !operation.precedes(other) && !other.precedes(operation)
                    })
                    .count()
                    >= 4
            })
            .count();
        assert!(overlapping * 2 > operations.len(), "{overlapping} of {}", operations.len());
    }

    #[test]
    fn unknown_outcomes_fall_where_asked() {
        let operations = 2000;
        let unknown_ids = |unknown_at| -> Vec<u64> {
            let options = GenOptions { unknown_share: 0.05, unknown_at, ..GenOptions::new(11, 10, operations) };
            let history = generate(&options);
            history
                .operations()
                .expect("valid")
                .iter()
                .filter(|op| op.outcome == Outcome::Unknown)
                .map(|op| op.id)
                .collect()
        };
        let spread = unknown_ids(UnknownAt::Spread);
        assert!((50..=150).contains(&spread.len()), "{}", spread.len());
        assert!(spread.first() < Some(&(operations / 4)) && spread.last() > Some(&(operations * 3 / 4)));
        let end = unknown_ids(UnknownAt::End);
        assert!((50..=150).contains(&end.len()), "{}", end.len());
        assert!(end.iter().all(|&id| id >= operations * 9 / 10), "{end:?}");
        let bursts = unknown_ids(UnknownAt::Bursts);
        assert!((50..=150).contains(&bursts.len()), "{}", bursts.len());
        // Three windows of about 67 operations each.
        let gaps = bursts.windows(2).filter(|pair| pair[1] - pair[0] > 100).count();
        assert!(gaps <= 2, "{bursts:?}");
    }

    #[test]
    fn options_out_of_range_are_clamped_not_fatal() {
        let options = GenOptions {
            clients: 0,
            concurrency: Some(0),
            hot_notes: 0,
            list_share: f64::NAN,
            unknown_share: 7.0,
            ..GenOptions::new(1, 0, 50)
        };
        assert!(options.validate().is_err());
        let history = generate(&options);
        assert_eq!(history.operations().expect("valid").len(), 50);
    }

    #[test]
    fn a_planted_read_reports_an_older_version_than_a_write_that_returned_before_it() {
        for seed in 0..20 {
            let options = GenOptions { plant: Some(Plant::StaleRead), ..GenOptions::new(seed, 3, 60) };
            let generated = generate_with_report(&options);
            let planted = generated.planted.expect("a 60-operation history has a read to plant");
            let unplanted = generate(&GenOptions { plant: None, ..options.clone() });
            let operations = generated.history.operations().expect("valid");
            let read = &operations[planted.operation as usize];
            let write = &operations[planted.write as usize];
            assert!(write.precedes(read));
            assert_eq!(planted.reported_version + 1, planted.established_version);
            let Outcome::Ok(write_output) = &write.outcome else { panic!("the write completed") };
            assert_eq!(write_output["version"], planted.established_version);
            // Only the planted read differs from the history without it.
            let differing: Vec<usize> = (0..generated.history.events.len())
                .filter(|&index| generated.history.events[index] != unplanted.events[index])
                .collect();
            assert_eq!(differing.len(), 1, "seed {seed}");
            assert_eq!(generated.history.events[differing[0]].id, planted.operation);
            assert!(generated.history.header.source.as_deref().is_some_and(|source| source.contains("planted")));
        }
    }

    #[test]
    fn the_checker_decides_small_histories_as_generated() {
        let mut undecided = Vec::new();
        for seed in 0..40 {
            for options in small_variants(seed) {
                for plant in [None, Some(Plant::StaleRead)] {
                    let options = GenOptions { plant, ..options.clone() };
                    let generated = generate_with_report(&options);
                    assert_eq!(generated.planted.is_some(), plant.is_some(), "{}", options.command());
                    match check(&generated.history).expect("checkable") {
                        Verdict::Linearizable => assert!(plant.is_none(), "{}", options.command()),
                        Verdict::NotLinearizable(counterexample) => {
                            assert!(plant.is_some(), "{}: {counterexample:?}", options.command())
                        }
                        Verdict::Unknown { .. } => undecided.push(options.command()),
                    }
                }
            }
        }
        assert!(undecided.is_empty(), "undecided: {undecided:#?}");
    }
}
