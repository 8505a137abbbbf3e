//! Client histories in the lin-history format (JSON lines), and a reader for
//! the Jepsen etcd register logs that Porcupine's test data uses.
//!
//! Versions: this module writes version 2 and reads versions 1 and 2. Version 2 adds
//! room for a store of many shards: `shards` in the header and `shard` on a call (which
//! shard served the operation); each shard's operations are checked as a history of
//! their own, as a shard is a replica group with its own ids. A version 1 history has
//! no `shard`, and one that names a shard is refused rather than misread.
//!
//! The format is specified in `sim/testdata/HISTORY-FORMAT.md`: one header line,
//! then one event per line (`call`, `ok`, `fail`, `info`). This module only
//! knows the format, not the models: it checks what every history must satisfy
//! (unique operation ids, one operation in flight per client, completions after
//! their calls, times that never decrease) and turns the events into
//! [`Operation`]s with positions in real-time order. The checker interprets the
//! `f`, `in` and `out` fields.
//!
//! Real-time order: line order is authoritative, except that among consecutive
//! events carrying the same `t`, calls come before completions (the format's
//! intervals are closed, so two operations that share an instant overlap).
//!
//! Every error names the line it was found on (1-based; the header is line 1).
//! A history built in memory numbers its events as [`History::to_jsonl`] would
//! write them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only value of the header's `format` field.
pub const FORMAT_NAME: &str = "lin-history";
/// The format version this module writes.
pub const FORMAT_VERSION: u64 = 2;
/// The oldest format version this module reads.
pub const OLDEST_FORMAT_VERSION: u64 = 1;

/// Errors found while reading a history. Each names the offending line.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("line {line}: invalid JSON: {source}")]
    Json { line: usize, source: serde_json::Error },
    #[error("line {line}: {reason}")]
    Invalid { line: usize, reason: String },
    #[error("the history is empty: a header line is required")]
    Empty,
    #[error("line {line}: cannot read: {source}")]
    Read { line: usize, source: std::io::Error },
}

impl HistoryError {
    fn invalid(line: usize, reason: impl Into<String>) -> HistoryError {
        HistoryError::Invalid { line, reason: reason.into() }
    }
}

/// Which sequential specification the history is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ModelName {
    #[serde(rename = "notes")]
    Notes,
    #[serde(rename = "cas-register")]
    CasRegister,
}

impl fmt::Display for ModelName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            ModelName::Notes => "notes",
            ModelName::CasRegister => "cas-register",
        })
    }
}

/// The verdict a history's author expects (`expect` in the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expectation {
    Linearizable,
    Illegal,
}

/// The first line of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u64,
    pub model: ModelName,
    /// A register's initial value; absent means "no value".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expectation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How many shards the history's store has (version 2; absent means one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u64>,
    /// Header fields this version does not interpret, kept so that a round trip loses nothing.
    #[serde(flatten)]
    pub other_fields: BTreeMap<String, Value>,
}

impl Header {
    pub fn new(model: ModelName) -> Header {
        Header {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            model,
            init: None,
            expect: None,
            source: None,
            shards: None,
            other_fields: BTreeMap::new(),
        }
    }
}

/// The kind of an event line (`ev`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The operation was invoked.
    Call,
    /// The operation completed and its output is known.
    Ok,
    /// The operation certainly had no effect.
    Fail,
    /// The outcome is unknown: it may take effect at any time after its call, or never.
    Info,
}

/// One event line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "ev")]
    pub kind: EventKind,
    /// Identity of the logical operation this event belongs to.
    pub id: u64,
    pub client: u64,
    /// Optional time that never decreases; line order is authoritative.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    /// The operation's function, on calls only.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The operation's input, on calls only.
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The operation's output, on `ok` only.
    #[serde(rename = "out", default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The shard that served the operation, on calls only (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u64>,
}

impl Event {
    pub fn call(id: u64, client: u64, function: &str, input: Option<Value>) -> Event {
        Event {
            kind: EventKind::Call,
            id,
            client,
            time: None,
            function: Some(function.to_string()),
            input,
            output: None,
            shard: None,
        }
    }

    pub fn ok(id: u64, client: u64, output: Option<Value>) -> Event {
        Event { output, ..Event::completion(EventKind::Ok, id, client) }
    }

    pub fn fail(id: u64, client: u64) -> Event {
        Event::completion(EventKind::Fail, id, client)
    }

    pub fn info(id: u64, client: u64) -> Event {
        Event::completion(EventKind::Info, id, client)
    }

    fn completion(kind: EventKind, id: u64, client: u64) -> Event {
        Event { kind, id, client, time: None, function: None, input: None, output: None, shard: None }
    }

    /// A call served by `shard` (version 2).
    pub fn on_shard(mut self, shard: u64) -> Event {
        self.shard = Some(shard);
        self
    }

    pub fn at(mut self, time: u64) -> Event {
        self.time = Some(time);
        self
    }
}

/// A header and its events, in line order.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub header: Header,
    pub events: Vec<Event>,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Completed with a known output (`Value::Null` when the line had no `out`).
    Ok(Value),
    /// Certainly no effect.
    Failed,
    /// `info`, or no completion at all.
    Unknown,
}

/// One logical operation: a call and its completion, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: u64,
    pub client: u64,
    pub function: String,
    /// `Value::Null` when the call had no `in`.
    pub input: Value,
    pub outcome: Outcome,
    /// Position of the call in real-time order (see the module documentation).
    pub call_position: usize,
    /// Position of the completion in real-time order; `None` when the outcome is unknown,
    /// which the checker treats as a return at the end of time.
    pub return_position: Option<usize>,
    /// The line of the call, for messages.
    pub call_line: usize,
    /// The shard that served it (version 2); `None` in a store of one shard.
    pub shard: Option<u64>,
}

impl Operation {
    /// Whether this operation certainly returned before `other` was called.
    pub fn precedes(&self, other: &Operation) -> bool {
        self.return_position.is_some_and(|position| position < other.call_position)
    }
}

/// The line an event is (or would be) written on: the header is line 1.
pub fn event_line(event_index: usize) -> usize {
    event_index + 2
}

impl History {
    pub fn new(header: Header) -> History {
        History { header, events: Vec::new() }
    }

    /// Reads a lin-history document (version 1 or 2). Blank lines are skipped (but counted).
    pub fn parse_jsonl(text: &str) -> Result<History, HistoryError> {
        let mut header: Option<Header> = None;
        let mut events = Vec::new();
        let mut event_lines = Vec::new();
        for (line_index, line) in text.lines().enumerate() {
            let line_number = line_index + 1;
            if line.trim().is_empty() {
                continue;
            }
            if header.is_none() {
                let parsed: Header =
                    serde_json::from_str(line).map_err(|source| HistoryError::Json { line: line_number, source })?;
                check_header(&parsed, line_number)?;
                header = Some(parsed);
            } else {
                let event: Event =
                    serde_json::from_str(line).map_err(|source| HistoryError::Json { line: line_number, source })?;
                events.push(event);
                event_lines.push(line_number);
            }
        }
        let header = header.ok_or(HistoryError::Empty)?;
        let history = History { header, events };
        history.operations_on_lines(event_lines.into_iter())?;
        Ok(history)
    }

    /// Writes the history in the version its header says (new histories: version 2), one line per event, each ending in a newline.
    pub fn to_jsonl(&self) -> String {
        let mut text = String::new();
        // Serialising these types cannot fail: every key is a string and every value is JSON.
        text.push_str(&serde_json::to_string(&self.header).unwrap_or_default());
        text.push('\n');
        for event in &self.events {
            text.push_str(&serde_json::to_string(event).unwrap_or_default());
            text.push('\n');
        }
        text
    }

    /// Checks the structure and pairs every call with its completion.
    pub fn operations(&self) -> Result<Vec<Operation>, HistoryError> {
        self.operations_on_lines((0..self.events.len()).map(event_line))
    }

    /// The operations in call order, the events being on `lines`.
    fn operations_on_lines(&self, lines: impl Iterator<Item = usize>) -> Result<Vec<Operation>, HistoryError> {
        check_header(&self.header, 1)?;
        let mut assembler = OperationAssembler::new(&self.header);
        for (event, line) in self.events.iter().zip(lines) {
            assembler.push(event.clone(), line)?;
        }
        let mut operations = assembler.finish();
        operations.sort_by_key(|operation| operation.call_position);
        Ok(operations)
    }

    /// Reads a Jepsen etcd register log (see `sim/testdata/README.md`) as a `cas-register` history.
    ///
    /// Each line is `INFO jepsen.util - <process> :<invoke|ok|fail|info> :<read|write|cas> <value>`,
    /// split on any whitespace; the value is `nil`, an integer, `[A B]` or `:timed-out`. A failed cas
    /// is an observation (`ok` with `{"ok":false}`); a failed read has an unknown result and no effect,
    /// so it becomes `fail`; `info` leaves the operation pending. Each line's number becomes `t`.
    pub fn parse_jepsen_log(text: &str) -> Result<History, HistoryError> {
        let mut history = History::new(Header::new(ModelName::CasRegister));
        let mut pending_by_process: BTreeMap<u64, (u64, String)> = BTreeMap::new();
        let mut next_operation_id = 0;
        for (line_index, line) in text.lines().enumerate() {
            let line_number = line_index + 1;
            let tokens: Vec<&str> = line.split_whitespace().collect();
            if tokens.is_empty() {
                continue;
            }
            let Some(kind_index) =
                tokens.iter().position(|token| matches!(*token, ":invoke" | ":ok" | ":fail" | ":info"))
            else {
                return Err(HistoryError::invalid(line_number, "no :invoke, :ok, :fail or :info on the line"));
            };
            let process: u64 = kind_index
                .checked_sub(1)
                .and_then(|index| tokens[index].parse().ok())
                .ok_or_else(|| HistoryError::invalid(line_number, "expected a process number before the event kind"))?;
            let function = match tokens.get(kind_index + 1) {
                Some(&":read") => "read",
                Some(&":write") => "write",
                Some(&":cas") => "cas",
                _ => return Err(HistoryError::invalid(line_number, "expected :read, :write or :cas")),
            };
            let value_text = tokens[kind_index + 2..].join(" ");
            let value = parse_jepsen_value(&value_text)
                .ok_or_else(|| HistoryError::invalid(line_number, format!("cannot read the value {value_text:?}")))?;
            let time = line_number as u64;
            if tokens[kind_index] == ":invoke" {
                if pending_by_process.contains_key(&process) {
                    return Err(HistoryError::invalid(line_number, format!("process {process} invokes twice")));
                }
                let input = match (function, &value) {
                    ("read", _) => None,
                    ("write", JepsenValue::Single(value)) => Some(serde_json::json!({ "value": value })),
                    ("cas", JepsenValue::Pair(from, to)) => Some(serde_json::json!({ "from": from, "to": to })),
                    _ => {
                        return Err(HistoryError::invalid(
                            line_number,
                            format!("{function} cannot take {value_text:?}"),
                        ));
                    }
                };
                let id = next_operation_id;
                next_operation_id += 1;
                pending_by_process.insert(process, (id, function.to_string()));
                history.events.push(Event::call(id, process, function, input).at(time));
                continue;
            }
            let Some((id, called_function)) = pending_by_process.remove(&process) else {
                return Err(HistoryError::invalid(line_number, format!("process {process} completes nothing")));
            };
            if called_function != function {
                return Err(HistoryError::invalid(
                    line_number,
                    format!("process {process} invoked {called_function} but completes {function}"),
                ));
            }
            let event = match (tokens[kind_index], function, value) {
                (":ok", "read", JepsenValue::Single(value)) => {
                    Event::ok(id, process, Some(serde_json::json!({ "value": value })))
                }
                (":ok", "write", _) => Event::ok(id, process, None),
                (":ok", "cas", _) => Event::ok(id, process, Some(serde_json::json!({ "ok": true }))),
                (":fail", "cas", _) => Event::ok(id, process, Some(serde_json::json!({ "ok": false }))),
                (":fail", _, _) => Event::fail(id, process),
                (":info", _, _) => Event::info(id, process),
                _ => {
                    return Err(HistoryError::invalid(
                        line_number,
                        format!("cannot read the completion {value_text:?}"),
                    ));
                }
            };
            history.events.push(event.at(time));
        }
        history.operations()?;
        Ok(history)
    }
}

/// Turns events, given in line order, into operations as they complete, and checks on the way
/// what every history must satisfy. A reader hands each operation on as soon as it completes
/// and keeps nothing else of it, so a history is never held whole ([`OperationStream`]).
///
/// Positions: the events of a run that shares one `t` are held until the run ends, then
/// numbered calls first (see the module documentation).
#[derive(Debug)]
pub struct OperationAssembler {
    version: u64,
    /// The run of events with the current `t`, not yet positioned.
    run: Vec<RunEvent>,
    run_time: Option<u64>,
    next_position: usize,
    previous_time: Option<u64>,
    /// Every operation id seen, for the rules on ids; a few words each.
    ids: BTreeMap<u64, IdState>,
    in_flight_by_client: BTreeMap<u64, u64>,
    /// Positioned calls whose completion has not been positioned yet.
    pending: BTreeMap<u64, Operation>,
    completed: Vec<Operation>,
}

#[derive(Debug, Clone, Copy)]
enum IdState {
    Called { client: u64 },
    Completed { line: usize },
}

#[derive(Debug)]
enum RunEvent {
    Call(Operation),
    Completion { id: u64, kind: EventKind, output: Option<Value> },
}

impl OperationAssembler {
    /// An assembler for events under `header` (whose version decides what a call may carry).
    pub fn new(header: &Header) -> OperationAssembler {
        OperationAssembler {
            version: header.version,
            run: Vec::new(),
            run_time: None,
            next_position: 0,
            previous_time: None,
            ids: BTreeMap::new(),
            in_flight_by_client: BTreeMap::new(),
            pending: BTreeMap::new(),
            completed: Vec::new(),
        }
    }

    /// Takes the next event, found on `line`.
    pub fn push(&mut self, event: Event, line: usize) -> Result<(), HistoryError> {
        if let Some(time) = event.time {
            if self.previous_time.is_some_and(|previous| time < previous) {
                return Err(HistoryError::invalid(line, format!("time t={time} is earlier than the line before")));
            }
            self.previous_time = Some(time);
        }
        let run_event = self.validate(event.kind, event, line)?;
        if !self.run.is_empty() && (self.run_time.is_none() || self.run_time != run_event.1) {
            self.close_run();
        }
        self.run_time = run_event.1;
        self.run.push(run_event.0);
        Ok(())
    }

    /// Operations completed since the last call, in completion order.
    pub fn take_completed(&mut self) -> Vec<Operation> {
        std::mem::take(&mut self.completed)
    }

    /// Ends the history: the operations not yet taken, those never completed last (their
    /// outcome is unknown).
    pub fn finish(mut self) -> Vec<Operation> {
        self.close_run();
        let mut operations = std::mem::take(&mut self.completed);
        operations.extend(std::mem::take(&mut self.pending).into_values());
        operations
    }

    fn validate(
        &mut self,
        kind: EventKind,
        event: Event,
        line: usize,
    ) -> Result<(RunEvent, Option<u64>), HistoryError> {
        let time = event.time;
        if kind == EventKind::Call {
            let Some(function) = event.function else {
                return Err(HistoryError::invalid(line, "a call needs a function (\"f\")"));
            };
            if event.output.is_some() {
                return Err(HistoryError::invalid(line, "a call has no output (\"out\")"));
            }
            if self.ids.contains_key(&event.id) {
                return Err(HistoryError::invalid(line, format!("operation id {} is called twice", event.id)));
            }
            if let Some(other) = self.in_flight_by_client.insert(event.client, event.id) {
                return Err(HistoryError::invalid(
                    line,
                    format!(
                        "client {} calls operation {} while operation {other} is in flight",
                        event.client, event.id
                    ),
                ));
            }
            if event.shard.is_some() && self.version < 2 {
                return Err(HistoryError::invalid(line, "a shard needs version 2 of the format"));
            }
            self.ids.insert(event.id, IdState::Called { client: event.client });
            let operation = Operation {
                id: event.id,
                client: event.client,
                function,
                input: event.input.unwrap_or(Value::Null),
                outcome: Outcome::Unknown,
                call_position: 0,
                return_position: None,
                call_line: line,
                shard: event.shard,
            };
            return Ok((RunEvent::Call(operation), time));
        }
        if event.function.is_some() || event.input.is_some() || event.shard.is_some() {
            return Err(HistoryError::invalid(line, "a completion has no function, input or shard"));
        }
        if kind != EventKind::Ok && event.output.is_some() {
            return Err(HistoryError::invalid(line, "only an ok completion has an output"));
        }
        match self.ids.get(&event.id) {
            None => {
                return Err(HistoryError::invalid(line, format!("operation {} completes before its call", event.id)));
            }
            Some(IdState::Completed { line: previous_line }) => {
                return Err(HistoryError::invalid(
                    line,
                    format!("operation {} already completed on line {previous_line}", event.id),
                ));
            }
            Some(&IdState::Called { client }) if client != event.client => {
                return Err(HistoryError::invalid(
                    line,
                    format!("operation {} was called by client {client}, not {}", event.id, event.client),
                ));
            }
            Some(IdState::Called { .. }) => {}
        }
        self.ids.insert(event.id, IdState::Completed { line });
        self.in_flight_by_client.remove(&event.client);
        Ok((RunEvent::Completion { id: event.id, kind, output: event.output }, time))
    }

    fn close_run(&mut self) {
        let run = std::mem::take(&mut self.run);
        let (calls, completions): (Vec<RunEvent>, Vec<RunEvent>) =
            run.into_iter().partition(|event| matches!(event, RunEvent::Call(_)));
        for event in calls.into_iter().chain(completions) {
            let position = self.next_position;
            self.next_position += 1;
            match event {
                RunEvent::Call(mut operation) => {
                    operation.call_position = position;
                    self.pending.insert(operation.id, operation);
                }
                RunEvent::Completion { id, kind, output } => {
                    // Validation saw this operation's call on an earlier line, and calls are
                    // positioned before the completions of their run.
                    let mut operation = self.pending.remove(&id).expect("a completion follows its positioned call");
                    match kind {
                        EventKind::Ok => {
                            operation.outcome = Outcome::Ok(output.unwrap_or(Value::Null));
                            operation.return_position = Some(position);
                        }
                        EventKind::Fail => {
                            operation.outcome = Outcome::Failed;
                            operation.return_position = Some(position);
                        }
                        EventKind::Info | EventKind::Call => {}
                    }
                    self.completed.push(operation);
                }
            }
        }
    }
}

/// Reads a lin-history line by line and yields its operations as they complete, so that
/// memory holds the current line and the operations in flight, never the whole history.
pub struct OperationStream<R> {
    reader: R,
    line: String,
    line_number: usize,
    header: Header,
    /// `None` once the input has ended (or failed).
    assembler: Option<OperationAssembler>,
    ready: std::vec::IntoIter<Operation>,
}

impl<R> fmt::Debug for OperationStream<R> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OperationStream")
            .field("line_number", &self.line_number)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<R: std::io::BufRead> OperationStream<R> {
    /// Reads up to and including the header.
    pub fn new(reader: R) -> Result<OperationStream<R>, HistoryError> {
        let mut stream = OperationStream {
            reader,
            line: String::new(),
            line_number: 0,
            header: Header::new(ModelName::Notes),
            assembler: None,
            ready: Vec::new().into_iter(),
        };
        loop {
            if !stream.read_line()? {
                return Err(HistoryError::Empty);
            }
            if !stream.line.trim().is_empty() {
                break;
            }
        }
        let header: Header = serde_json::from_str(&stream.line)
            .map_err(|source| HistoryError::Json { line: stream.line_number, source })?;
        check_header(&header, stream.line_number)?;
        stream.assembler = Some(OperationAssembler::new(&header));
        stream.header = header;
        Ok(stream)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads the next line into `self.line`; false at the end of the input.
    fn read_line(&mut self) -> Result<bool, HistoryError> {
        self.line.clear();
        self.line_number += 1;
        match self.reader.read_line(&mut self.line) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(source) => Err(HistoryError::Read { line: self.line_number, source }),
        }
    }

    fn advance(&mut self) -> Result<(), HistoryError> {
        if self.assembler.is_none() {
            return Ok(());
        }
        if !self.read_line()? {
            if let Some(assembler) = self.assembler.take() {
                self.ready = assembler.finish().into_iter();
            }
            return Ok(());
        }
        if self.line.trim().is_empty() {
            return Ok(());
        }
        let event: Event =
            serde_json::from_str(&self.line).map_err(|source| HistoryError::Json { line: self.line_number, source })?;
        if let Some(assembler) = self.assembler.as_mut() {
            assembler.push(event, self.line_number)?;
            self.ready = assembler.take_completed().into_iter();
        }
        Ok(())
    }
}

impl<R: std::io::BufRead> Iterator for OperationStream<R> {
    type Item = Result<Operation, HistoryError>;

    /// The next operation to complete; after an error, nothing more.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(operation) = self.ready.next() {
                return Some(Ok(operation));
            }
            self.assembler.as_ref()?;
            if let Err(error) = self.advance() {
                self.assembler = None;
                return Some(Err(error));
            }
        }
    }
}

fn check_header(header: &Header, line: usize) -> Result<(), HistoryError> {
    if header.format != FORMAT_NAME {
        return Err(HistoryError::invalid(line, format!("format is {:?}, expected {FORMAT_NAME:?}", header.format)));
    }
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&header.version) {
        return Err(HistoryError::invalid(
            line,
            format!(
                "version {} is not supported (this build reads {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})",
                header.version
            ),
        ));
    }
    if header.shards.is_some() && header.version < 2 {
        return Err(HistoryError::invalid(line, "shards need version 2 of the format"));
    }
    Ok(())
}

enum JepsenValue {
    Single(Value),
    Pair(Value, Value),
}

fn parse_jepsen_scalar(text: &str) -> Option<Value> {
    match text {
        "nil" => Some(Value::Null),
        _ => text.parse::<i64>().ok().map(Value::from),
    }
}

fn parse_jepsen_value(text: &str) -> Option<JepsenValue> {
    if text == ":timed-out" {
        return Some(JepsenValue::Single(Value::Null));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        let parts: Vec<&str> = inner.split_whitespace().collect();
        if let [from, to] = parts.as_slice() {
            return Some(JepsenValue::Pair(parse_jepsen_scalar(from)?, parse_jepsen_scalar(to)?));
        }
        return None;
    }
    parse_jepsen_scalar(text).map(JepsenValue::Single)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_path(relative: &str) -> String {
        format!("{}/../testdata/{relative}", env!("CARGO_MANIFEST_DIR"))
    }

    fn read_data(relative: &str) -> String {
        std::fs::read_to_string(data_path(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
    }

    const JEPSEN_NAMES: [&str; 5] = ["etcd_000", "etcd_002", "etcd_005", "etcd_040", "etcd_100"];
    const NOTES_NAMES: [&str; 6] = [
        "n1-ok-basic",
        "n2-bad-stale",
        "n3-ok-unknown-create",
        "n4-bad-id-order",
        "n5-ok-concurrent-creates",
        "n6-bad-unknown-create-too-late",
    ];

    #[test]
    fn every_sample_round_trips_through_the_writer() {
        let mut paths: Vec<String> = JEPSEN_NAMES.iter().map(|name| format!("jepsen-etcd/{name}.jsonl")).collect();
        paths.extend(NOTES_NAMES.iter().map(|name| format!("notes-histories/{name}.jsonl")));
        for path in paths {
            let history = History::parse_jsonl(&read_data(&path)).unwrap_or_else(|error| panic!("{path}: {error}"));
            let written = history.to_jsonl();
            let reread = History::parse_jsonl(&written).expect("the writer's output must parse");
            assert_eq!(reread, history, "{path}");
            assert_eq!(reread.to_jsonl(), written, "{path}");
        }
    }

    #[test]
    fn jepsen_logs_read_as_their_jsonl_conversions() {
        for name in JEPSEN_NAMES {
            let from_log = History::parse_jepsen_log(&read_data(&format!("jepsen-etcd/{name}.log"))).expect(name);
            let from_jsonl = History::parse_jsonl(&read_data(&format!("jepsen-etcd/{name}.jsonl"))).expect(name);
            assert_eq!(from_log.header.model, ModelName::CasRegister);
            assert_eq!(from_log.events, from_jsonl.events, "{name}");
        }
    }

    #[test]
    fn equal_times_put_calls_before_completions() {
        let mut history = History::new(Header::new(ModelName::CasRegister));
        history.events.push(Event::call(0, 0, "read", None).at(1));
        history.events.push(Event::ok(0, 0, Some(serde_json::json!({ "value": null }))).at(2));
        history.events.push(Event::call(1, 1, "read", None).at(2));
        history.events.push(Event::ok(1, 1, Some(serde_json::json!({ "value": null }))).at(3));
        let operations = history.operations().expect("valid");
        assert!(!operations[0].precedes(&operations[1]), "closed intervals touching at t=2 overlap");
        history.events[2].time = Some(3);
        history.events[3].time = Some(4);
        let operations = history.operations().expect("valid");
        assert!(operations[0].precedes(&operations[1]));
    }

    /// Version 1 histories (every file under `sim/testdata/` but two is one) read as they
    /// are; what only version 2 has is refused in version 1; a later version is refused.
    #[test]
    fn version_2_is_written_and_versions_1_and_2_are_read() {
        let mut history = History::new(Header::new(ModelName::Notes));
        assert_eq!(history.header.version, 2);
        history.header.shards = Some(2);
        history.events.push(Event::call(0, 0, "get", Some(serde_json::json!({"id": 1}))).on_shard(1).at(1));
        history.events.push(Event::ok(0, 0, Some(serde_json::json!({"error": "not_found"}))).at(2));
        let text = history.to_jsonl();
        assert!(text.starts_with(r#"{"format":"lin-history","version":2,"model":"notes","shards":2}"#), "{text}");
        let read = History::parse_jsonl(&text).expect("version 2 reads back");
        assert_eq!(read, history);
        assert_eq!(read.operations().expect("valid")[0].shard, Some(1));

        let version_1 = text.replacen(r#""version":2"#, r#""version":1"#, 1).replacen(r#","shards":2"#, "", 1);
        let error = History::parse_jsonl(&version_1).expect_err("a shard in version 1");
        assert!(error.to_string().contains("line 2: a shard needs version 2"), "{error}");
        let without_shard = version_1.replacen(r#","shard":1"#, "", 1);
        let read = History::parse_jsonl(&without_shard).expect("version 1 reads");
        assert_eq!((read.header.version, read.operations().expect("valid")[0].shard), (1, None));

        let version_3 = text.replacen(r#""version":2"#, r#""version":3"#, 1);
        let error = History::parse_jsonl(&version_3).expect_err("version 3");
        assert!(error.to_string().contains("this build reads 1 to 2"), "{error}");
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let header = r#"{"format":"lin-history","version":1,"model":"notes"}"#;
        let cases = [
            (format!("{header}\n{{\"ev\":\"call\",\"id\":0,\"client\":0,\"f\":\"get\"}}\nnot json"), 3),
            (format!("{header}\n{{\"ev\":\"ok\",\"id\":0,\"client\":0}}"), 2),
            (format!("{header}\n{{\"ev\":\"call\",\"id\":0,\"client\":0}}"), 2),
            (
                format!(
                    "{header}\n{{\"ev\":\"call\",\"id\":0,\"client\":0,\"f\":\"get\"}}\n{{\"ev\":\"call\",\"id\":1,\"client\":0,\"f\":\"get\"}}"
                ),
                3,
            ),
            (
                format!(
                    "{header}\n{{\"ev\":\"call\",\"id\":0,\"client\":0,\"f\":\"get\",\"t\":5}}\n\n{{\"ev\":\"ok\",\"id\":0,\"client\":0,\"t\":4}}"
                ),
                4,
            ),
            (
                format!(
                    "{header}\n{{\"ev\":\"call\",\"id\":0,\"client\":0,\"f\":\"get\"}}\n{{\"ev\":\"ok\",\"id\":0,\"client\":0}}\n{{\"ev\":\"ok\",\"id\":0,\"client\":0}}"
                ),
                4,
            ),
            (
                format!(
                    "{header}\n{{\"ev\":\"call\",\"id\":0,\"client\":0,\"f\":\"get\"}}\n{{\"ev\":\"fail\",\"id\":0,\"client\":0,\"out\":{{}}}}"
                ),
                3,
            ),
            (format!("{header}\n{{\"ev\":\"bogus\",\"id\":0,\"client\":0}}"), 2),
            ("{\"format\":\"other\",\"version\":1,\"model\":\"notes\"}".to_string(), 1),
            ("{\"format\":\"lin-history\",\"version\":1,\"model\":\"queue\"}".to_string(), 1),
        ];
        for (text, expected_line) in cases {
            let streamed = OperationStream::new(text.as_bytes())
                .and_then(|stream| stream.collect::<Result<Vec<_>, _>>())
                .expect_err(&text);
            assert_eq!(error_line(&streamed), expected_line, "{text}: {streamed}");
            let error = History::parse_jsonl(&text).expect_err(&text);
            let line = match error {
                HistoryError::Json { line, .. }
                | HistoryError::Invalid { line, .. }
                | HistoryError::Read { line, .. } => line,
                HistoryError::Empty => 0,
            };
            assert_eq!(line, expected_line, "{text}: {error}");
        }
        assert!(matches!(History::parse_jsonl("\n\n"), Err(HistoryError::Empty)));
    }

    fn error_line(error: &HistoryError) -> usize {
        match error {
            HistoryError::Json { line, .. } | HistoryError::Invalid { line, .. } | HistoryError::Read { line, .. } => {
                *line
            }
            HistoryError::Empty => 0,
        }
    }

    fn streamed_in_call_order(text: &str) -> Vec<Operation> {
        let mut operations = OperationStream::new(text.as_bytes())
            .and_then(|stream| stream.collect::<Result<Vec<_>, _>>())
            .expect("the stream reads what parse_jsonl reads");
        operations.sort_by_key(|operation| operation.call_position);
        operations
    }

    /// The stream hands operations on as they complete, and keeps nothing of them: sorted
    /// by call, they are what the whole history gives, positions and lines included.
    #[test]
    fn the_stream_yields_the_operations_of_the_whole_history() {
        let mut paths: Vec<String> = JEPSEN_NAMES.iter().map(|name| format!("jepsen-etcd/{name}.jsonl")).collect();
        paths.extend(NOTES_NAMES.iter().map(|name| format!("notes-histories/{name}.jsonl")));
        for path in paths {
            let text = read_data(&path);
            let whole = History::parse_jsonl(&text).expect("a sample");
            let expected = whole.operations().expect("valid");
            // Blank lines count, so the lines of operations differ from `event_line` here.
            assert_eq!(streamed_in_call_order(&text).len(), expected.len(), "{path}");
            let compact = whole.to_jsonl();
            assert_eq!(streamed_in_call_order(&compact), expected, "{path}");
        }
        let mut history = History::new(Header::new(ModelName::Notes));
        history.events.push(Event::call(0, 0, "get", Some(serde_json::json!({"id": 1}))).at(5));
        history.events.push(Event::call(1, 1, "get", Some(serde_json::json!({"id": 1}))).at(6));
        history.events.push(Event::ok(0, 0, Some(serde_json::json!({"error": "not_found"}))).at(6));
        history.events.push(Event::call(2, 2, "create", Some(serde_json::json!({"body": {}}))).at(6));
        history.events.push(Event::info(1, 1));
        let streamed = streamed_in_call_order(&history.to_jsonl());
        assert_eq!(streamed, history.operations().expect("valid"));
        let positions: Vec<_> =
            streamed.iter().map(|operation| (operation.call_position, operation.return_position)).collect();
        assert_eq!(positions, [(0, Some(3)), (1, None), (2, None)], "calls of a run come before its completions");
    }

    #[test]
    fn a_line_that_is_not_text_is_an_error_naming_it() {
        let mut bytes = br#"{"format":"lin-history","version":2,"model":"notes"}"#.to_vec();
        bytes.extend_from_slice(b"\n\xff\xfe\n");
        let error = OperationStream::new(bytes.as_slice())
            .and_then(|stream| stream.collect::<Result<Vec<_>, _>>())
            .expect_err("not UTF-8");
        assert!(matches!(error, HistoryError::Read { line: 2, .. }), "{error}");
        assert!(matches!(OperationStream::new(&b"\n \n"[..]), Err(HistoryError::Empty)));
    }

    #[test]
    fn bad_jepsen_lines_are_errors_naming_the_line() {
        let cases = [
            ("INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:write\t1", 2),
            ("INFO  jepsen.util - 0\t:invoke\t:frob\tnil", 1),
            ("INFO  jepsen.util - 0\t:invoke\t:cas\t[1]", 1),
            ("INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\tnil", 2),
            ("garbage", 1),
            ("INFO  jepsen.util - x\t:invoke\t:read\tnil", 1),
        ];
        for (text, expected_line) in cases {
            match History::parse_jepsen_log(text) {
                Err(HistoryError::Invalid { line, .. }) => assert_eq!(line, expected_line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
