//! The failure report: what failed, the one command that replays it, the shortest
//! failing part of the history, and the message trace of the notes involved.

use core::fmt::Write as _;
use std::collections::BTreeSet;

use crate::history::History;
use crate::linearizability::{LinearizabilityVerdict, is_violation};
use crate::minimize::{Minimized, minimize, operation_ids};
use crate::outcome::{FailureKind, RunOutcome};
use crate::{RunRequest, run};

/// Checks allowed while minimizing one history.
const MINIMIZE_CHECKS_MAX: usize = 600;
/// Trace lines shown in a report; the full trace is one `--trace` away.
const TRACE_LINES_MAX: usize = 400;

#[derive(Debug)]
pub struct FailureReport {
    pub kind: FailureKind,
    pub message: String,
    pub replay_command: String,
    /// The shortest failing history found (linearizability failures), else `None`.
    pub minimized: Option<Minimized>,
    /// Convergence failures: every operation on the notes the replicas disagree about.
    pub divergent_history: Option<History>,
    /// Trace lines that mention the requests and notes involved.
    pub trace_excerpt: Vec<String>,
}

/// Builds the report of a failed run: minimizes the history and replays the seed with
/// the trace on to pick out the lines of the notes involved.
pub fn failure_report(request: &RunRequest, outcome: &RunOutcome) -> Option<FailureReport> {
    let failure = outcome.failure.as_ref()?;
    let hint = match &outcome.linearizability {
        Some(LinearizabilityVerdict::NotLinearizable { operation_ids, .. }) => Some(operation_ids.as_slice()),
        _ => None,
    };
    let minimized = (failure.kind == FailureKind::Linearizability)
        .then(|| minimize(&outcome.history, hint, MINIMIZE_CHECKS_MAX, is_violation));
    let traced = if outcome.trace.is_empty() {
        run(&RunRequest { trace: true, ..*request }).trace
    } else {
        outcome.trace.clone()
    };
    let divergent_history = (!failure.notes.is_empty()).then(|| history_of_notes(&outcome.history, &failure.notes));
    let mut focus = minimized.as_ref().map(|minimized| focus_words(&minimized.whole, &minimized.history, outcome));
    if let Some(history) = &divergent_history {
        let whole: BTreeSet<u64> = history.events.iter().map(|event| event.id).collect();
        let words = focus.get_or_insert_with(|| focus_words(&whole, history, outcome));
        words.extend(failure.notes.iter().map(|id| format!("note-{id}")));
        // Where a replica's state was replaced wholesale, notes can differ without a write naming them.
        words.insert("installed".into());
    }
    let trace_excerpt = match focus {
        Some(words) => traced.lines().filter(|line| mentions_any(line, &words)).map(str::to_string).collect(),
        // Without a history to focus on, the end of the trace shows what led to the failure.
        None => {
            let lines: Vec<&str> = traced.lines().collect();
            lines[lines.len().saturating_sub(TRACE_LINES_MAX)..].iter().map(|line| line.to_string()).collect()
        }
    };
    Some(FailureReport {
        kind: failure.kind,
        message: failure.message.clone(),
        replay_command: outcome.options.replay_command(),
        minimized,
        divergent_history,
        trace_excerpt,
    })
}

/// The operations of `history` that name one of `notes`: the creates that made
/// them and every other operation on their ids (lists left out).
fn history_of_notes(history: &History, notes: &[u64]) -> History {
    let named = |value: &Option<serde_json::Value>| {
        value
            .as_ref()
            .and_then(|value| value.get("id"))
            .and_then(serde_json::Value::as_u64)
            .is_some_and(|id| notes.contains(&id))
    };
    let involved: BTreeSet<u64> = history
        .events
        .iter()
        .filter(|event| named(&event.input) || named(&event.output))
        .map(|event| event.id)
        .collect();
    let mut excerpt = History::new(history.header.clone());
    excerpt.events = history.events.iter().filter(|event| involved.contains(&event.id)).cloned().collect();
    excerpt
}

/// Words that name the involved requests (`C3#17`) and notes (`note-2`) in trace lines.
fn focus_words(whole: &BTreeSet<u64>, history: &History, outcome: &RunOutcome) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for id in whole {
        if let Some((client, request_number)) = outcome.origins.get(id) {
            words.insert(format!("{client}#{request_number}"));
        }
    }
    for event in history.events.iter().filter(|event| whole.contains(&event.id)) {
        for value in [&event.input, &event.output].into_iter().flatten() {
            collect_note_ids(value, &mut words);
        }
    }
    words
}

fn collect_note_ids(value: &serde_json::Value, words: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(members) => {
            for (key, member) in members {
                if key == "id"
                    && let Some(id) = member.as_u64()
                {
                    words.insert(format!("note-{id}"));
                }
                if key != "body" && key != "note" && key != "patch" {
                    collect_note_ids(member, words);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_note_ids(item, words)),
        _ => {}
    }
}

fn mentions_any(line: &str, words: &BTreeSet<String>) -> bool {
    line.split(|character: char| !(character.is_ascii_alphanumeric() || character == '-' || character == '#'))
        .any(|word| words.contains(word))
}

impl FailureReport {
    pub fn render(&self, outcome: &RunOutcome) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "FAILURE {} (exit code {}): {}", self.kind, self.kind.exit_code(), self.message);
        let _ = writeln!(text, "seed: {}", outcome.options.seed);
        let _ = writeln!(text, "replay: {}", self.replay_command);
        if let Some(minimized) = &self.minimized {
            let _ = writeln!(
                text,
                "shortest failing history: {} of {} operations, with {} other writes kept as unknown outcomes:",
                minimized.whole.len(),
                outcome.operations(),
                operation_ids(&minimized.history).len() - minimized.whole.len()
            );
            for line in minimized.history.to_jsonl().lines() {
                let _ = writeln!(text, "  {line}");
            }
        }
        if let Some(history) = &self.divergent_history {
            let _ = writeln!(
                text,
                "history of the notes the replicas disagree about: {} of {} operations:",
                operation_ids(history).len(),
                outcome.operations()
            );
            for line in history.to_jsonl().lines() {
                let _ = writeln!(text, "  {line}");
            }
        }
        let shown = self.trace_excerpt.len().min(TRACE_LINES_MAX);
        let heading = if self.minimized.is_some() || self.divergent_history.is_some() {
            "message trace of the requests and notes involved"
        } else {
            "the message trace up to the failure"
        };
        let _ = writeln!(text, "{heading} ({shown} lines):");
        for line in self.trace_excerpt.iter().take(TRACE_LINES_MAX) {
            let _ = writeln!(text, "  {line}");
        }
        text
    }
}

/// Operation ids the report marks as violating (for the HTML timeline).
pub fn violating_operations(report: Option<&FailureReport>) -> BTreeSet<u64> {
    report.and_then(|report| report.minimized.as_ref()).map(|minimized| minimized.whole.clone()).unwrap_or_default()
}
