//! The readable per-event trace of a run, and the hash that proves two runs of one
//! seed did the same thing.
//!
//! Lines are only formatted when the trace is enabled, so exploring many seeds
//! pays nothing for it; replaying a failing seed with the trace on shows exactly
//! what happened, because the run is deterministic.

use core::fmt::{self, Write as _};

use noted_core::protocol::{remote_write, vr};
use noted_core::snapshot::{Chunk, Manifest, SnapshotId};
use noted_core::{Event, Message, Operation, Reply};

/// FNV-1a, 64 bits: a fixed, explicit hash, the same on every platform and run.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub fn new() -> Fnv1a {
        Fnv1a(Fnv1a::OFFSET_BASIS)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(Fnv1a::PRIME);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }

    pub fn hash(bytes: &[u8]) -> u64 {
        let mut hasher = Fnv1a::new();
        hasher.write(bytes);
        hasher.finish()
    }
}

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a::new()
    }
}

#[derive(Debug, Default)]
pub struct Trace {
    enabled: bool,
    text: String,
}

impl Trace {
    pub fn new(enabled: bool) -> Trace {
        Trace { enabled, text: String::new() }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Appends one line stamped with simulated true time in milliseconds.
    pub fn line(&mut self, true_nanos: u64, arguments: fmt::Arguments<'_>) {
        if self.enabled {
            let _ =
                writeln!(self.text, "{:>9}.{:03}ms {arguments}", true_nanos / 1_000_000, (true_nanos / 1_000) % 1_000);
        }
    }

    /// Appends a line without a time stamp (run headers).
    pub fn note(&mut self, arguments: fmt::Arguments<'_>) {
        if self.enabled {
            let _ = writeln!(self.text, "{arguments}");
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// A one-line description of an operation, naming its note.
pub fn describe_operation(operation: &Operation) -> String {
    let condition = |if_match: &Option<u64>| if_match.map_or(String::new(), |version| format!(" if-match {version}"));
    match operation {
        Operation::Create { body } => format!("create {body}"),
        Operation::Get { id } => format!("get {id}"),
        Operation::List { after, limit } => format!(
            "list after {} limit {}",
            after.map_or("-".to_string(), |after| after.to_string()),
            limit.map_or("-".to_string(), |limit| limit.to_string())
        ),
        Operation::Replace { id, body, if_match } => format!("replace {id}{} {body}", condition(if_match)),
        Operation::Patch { id, patch, if_match } => format!("patch {id}{} {patch}", condition(if_match)),
        Operation::Delete { id, if_match } => format!("delete {id}{}", condition(if_match)),
    }
}

pub fn describe_reply(reply: &Reply) -> String {
    match reply {
        Reply::Note { note } => {
            format!("{} v{} {}", note.id, note.version, serde_json::Value::Object((*note.body).clone()))
        }
        Reply::Page { page } => {
            let notes: Vec<String> = page.notes.iter().map(|note| format!("{} v{}", note.id, note.version)).collect();
            format!("page [{}]", notes.join(", "))
        }
        Reply::Deleted { id } => format!("deleted {id}"),
        Reply::Refused { refusal } => format!("refused {refusal:?}"),
    }
}

/// A one-line description of a peer message: its kind and what it carries.
pub fn describe_message(message: &Message) -> String {
    match message {
        Message::RemoteWrite(message) => match message {
            remote_write::Message::Forward { request } => format!(
                "forward {}#{} {}",
                request.client,
                request.request_number,
                describe_operation(&request.operation)
            ),
            remote_write::Message::ForwardReply { client, request_number, reply } => {
                format!("forward_reply {client}#{request_number} {}", describe_reply(reply))
            }
            remote_write::Message::Update { entries, latest_sequence } if entries.is_empty() => {
                format!("update (heartbeat) latest {latest_sequence}")
            }
            remote_write::Message::Update { entries, latest_sequence } => {
                let updates: Vec<String> = entries
                    .iter()
                    .map(|update| {
                        format!(
                            "s{} {}#{} {}",
                            update.sequence,
                            update.client,
                            update.request_number,
                            describe_operation(&update.operation)
                        )
                    })
                    .collect();
                format!("update [{}] latest {latest_sequence}", updates.join("; "))
            }
            remote_write::Message::UpdateAck { applied, behind } => {
                format!("update_ack applied {applied}{}", if *behind { " behind" } else { "" })
            }
            remote_write::Message::Snapshot { manifest } => describe_manifest(manifest),
            remote_write::Message::GetSnapshotChunk { snapshot, chunk } => describe_chunk_request(snapshot, *chunk),
            remote_write::Message::SnapshotChunk { chunk } => describe_chunk(chunk),
            remote_write::Message::SnapshotUnavailable { snapshot } => format!("{snapshot} unavailable"),
        },
        Message::LocalWrite(message) => message.kind().to_string(),
        Message::Vr(message) => describe_vr_message(message),
    }
}

fn describe_vr_message(message: &vr::Message) -> String {
    let entries = |entries: &[vr::Entry]| -> String {
        let described: Vec<String> = entries
            .iter()
            .map(|entry| {
                format!(
                    "op{} v{} {}#{} {}",
                    entry.op_number,
                    entry.view,
                    entry.client,
                    entry.request_number,
                    describe_operation(&entry.operation)
                )
            })
            .collect();
        described.join("; ")
    };
    match message {
        vr::Message::Prepare { view, commit_number, entries: prepared } => {
            format!("prepare v{view} [{}] commit {commit_number}", entries(prepared))
        }
        vr::Message::PrepareOk { view, op_number } => format!("prepare_ok v{view} op{op_number}"),
        vr::Message::Commit { view, commit_number } => format!("commit v{view} commit {commit_number}"),
        vr::Message::StartViewChange { view } => format!("start_view_change v{view}"),
        vr::Message::DoViewChange { view, log_view, commit_number, after, entries: log } => format!(
            "do_view_change v{view} log of v{log_view} commit {commit_number} log after op{after}: {} entries",
            log.len()
        ),
        vr::Message::StartView { view, commit_number, after, entries: log } => {
            format!("start_view v{view} commit {commit_number} log after op{after}: {} entries", log.len())
        }
        vr::Message::Recovery { nonce } => format!("recovery nonce {nonce:x}"),
        vr::Message::RecoveryResponse { view, responder, .. } => format!(
            "recovery_response v{view} {:?} op{} commit {}",
            responder.status, responder.op_number, responder.commit_number,
        ),
        vr::Message::GetState { view, op_number } => format!("get_state v{view} after op{op_number}"),
        vr::Message::NewState { view, op_number, commit_number, snapshot: Some(manifest), .. } => {
            format!("new_state v{view} op{op_number} commit {commit_number}: fetch {}", describe_manifest(manifest))
        }
        vr::Message::NewState { view, op_number, commit_number, after, snapshot: None, entries: log } => {
            format!("new_state v{view} op{op_number} commit {commit_number} [{}] after op{after}", entries(log))
        }
        vr::Message::GetSnapshotChunk { snapshot, chunk } => describe_chunk_request(snapshot, *chunk),
        vr::Message::SnapshotChunk { chunk } => describe_chunk(chunk),
        vr::Message::SnapshotUnavailable { snapshot } => format!("{snapshot} unavailable"),
        vr::Message::ConfirmView { view, round } => format!("confirm_view v{view} round {round}"),
        vr::Message::ConfirmViewOk { view, round } => format!("confirm_view_ok v{view} round {round}"),
        vr::Message::Forward { request } => {
            format!("forward {}#{} {}", request.client, request.request_number, describe_operation(&request.operation))
        }
        vr::Message::ForwardReply { client, request_number, reply } => {
            format!("forward_reply {client}#{request_number} {}", describe_reply(reply))
        }
    }
}

fn describe_manifest(manifest: &Manifest) -> String {
    format!("{} ({} client records, {} notes)", manifest.id, manifest.clients, manifest.store.notes)
}

fn describe_chunk_request(snapshot: &SnapshotId, chunk: u64) -> String {
    format!("get_snapshot_chunk {chunk} of {snapshot}")
}

fn describe_chunk(chunk: &Chunk) -> String {
    let notes: Vec<String> = chunk.notes.iter().map(|note| format!("{} v{}", note.id, note.version)).collect();
    format!(
        "snapshot_chunk {} of {} pieces {}..{}: {} client records, notes [{}]",
        chunk.index,
        chunk.snapshot,
        chunk.first,
        chunk.first + chunk.pieces(),
        chunk.clients.len(),
        notes.join(", ")
    )
}

pub fn describe_event(event: &Event) -> String {
    match event {
        Event::Dropped { from, reason } => format!("dropped a message from {from}: {reason:?}"),
        Event::Forwarded { client, request_number, to } => format!("forwarded {client}#{request_number} to {to}"),
        Event::Ordered { sequence, client, request_number, operation } => {
            format!("ordered {client}#{request_number} {operation} as s{sequence}")
        }
        Event::Acknowledged { sequence, client, request_number } => {
            format!("acknowledged s{sequence} ({client}#{request_number}) by every backup")
        }
        Event::Retransmitted { to, first_sequence, entries } => {
            format!("retransmitted {entries} updates from s{first_sequence} to {to}")
        }
        Event::SnapshotSent { to, sequence } => format!("sent a snapshot at s{sequence} to {to}"),
        Event::SnapshotInstalled { from, sequence } => format!("installed a snapshot at s{sequence} from {from}"),
        Event::OwnershipAcquired { item, epoch, from } => format!("acquired {item} (epoch {epoch}) from {from}"),
        Event::OwnershipHandedOff { item, epoch, to } => format!("handed {item} (epoch {epoch}) off to {to}"),
        Event::Overloaded { queue } => format!("overloaded: {queue} queue full"),
        Event::ViewChangeStarted { view } => format!("started a view change to v{view}"),
        Event::ViewStarted { view, primary } => format!("view v{view} started with {primary} as primary"),
        Event::Recovered { view, op_number } => format!("recovered in v{view} at op{op_number}"),
        Event::Committed { change } => format!("applied change {}: {} {}", change.commit, change.operation, change.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(Fnv1a::hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv1a::hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv1a::hash(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
