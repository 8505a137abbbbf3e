//! Planting a stale read in a notes history: one recorded from real processes, or one
//! that [`crate::gen_history`] generated.
//!
//! One completed `get`, or one entry of a completed `list`, of a note on which a
//! completed write (create, put or patch) had returned version `v >= 2` *before the
//! read was called* (in the history's real-time order) is made to report version
//! `v - 1` with the body the note had at that version. In every linearization that
//! write precedes the read, and after it the note's version is at least `v` or the
//! note is gone for good (versions only grow, ids are never reused): no
//! linearization explains the read, so the history is certainly illegal, whatever
//! else it holds.
//!
//! The body of version `v - 1` is the one the history shows: a read that reported
//! it, or the body of the create or put that returned it (a patch's result is only
//! known from a read). Reads whose note's older body the history does not show are
//! not candidates. The read is the candidate whose call is nearest after a position
//! drawn with the seed (the last candidate when none is after it); the entry of a
//! list is drawn with the seed too. The header then expects `illegal` and its
//! `source` names the planted read.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::gen_history::PlantedRead;
use crate::history::{EventKind, Expectation, History, HistoryError, Outcome};

/// A read that could carry the planted violation.
struct Candidate {
    /// Index in the history's operations.
    operation: usize,
    /// The entry of a list's page, or `None` for a get.
    entry: Option<usize>,
    note: u64,
    established_version: u64,
    /// Index of the write that established it.
    write: usize,
}

/// The history with one read made stale (see the module documentation), and which;
/// `Ok(None)` when no read qualifies. Errs when the history is malformed.
pub fn plant_stale_read(history: &History, seed: u64) -> Result<Option<(History, PlantedRead)>, HistoryError> {
    let operations = history.operations()?;
    let mut random = ChaCha8Rng::seed_from_u64(seed);
    // Each note's completed writes: (return position, version, operation), and every
    // body the history shows for a (note, version).
    let mut writes: BTreeMap<u64, Vec<(usize, u64, usize)>> = BTreeMap::new();
    let mut bodies: BTreeMap<(u64, u64), Value> = BTreeMap::new();
    for (index, operation) in operations.iter().enumerate() {
        let Outcome::Ok(output) = &operation.outcome else { continue };
        if output.get("error").is_some() {
            continue;
        }
        let version = output.get("version").and_then(Value::as_u64);
        let (note, body) = match operation.function.as_str() {
            "create" => (output.get("id").and_then(Value::as_u64), operation.input.get("body")),
            "put" => (operation.input.get("id").and_then(Value::as_u64), operation.input.get("body")),
            "patch" => (operation.input.get("id").and_then(Value::as_u64), None),
            "get" => {
                if let (Some(note), Some(version), Some(body)) =
                    (operation.input.get("id").and_then(Value::as_u64), version, output.get("note"))
                {
                    bodies.entry((note, version)).or_insert_with(|| body.clone());
                }
                continue;
            }
            "list" => {
                for listed in output.get("notes").and_then(Value::as_array).into_iter().flatten() {
                    let id = listed.get("id").and_then(Value::as_u64);
                    let version = listed.get("version").and_then(Value::as_u64);
                    if let (Some(id), Some(version), Some(body)) = (id, version, listed.get("note")) {
                        bodies.entry((id, version)).or_insert_with(|| body.clone());
                    }
                }
                continue;
            }
            _ => continue,
        };
        let (Some(note), Some(version), Some(returned)) = (note, version, operation.return_position) else { continue };
        if let Some(body) = body {
            bodies.entry((note, version)).or_insert_with(|| body.clone());
        }
        writes.entry(note).or_default().push((returned, version, index));
    }
    // By return position, each with the highest version returned so far and its write.
    for note_writes in writes.values_mut() {
        note_writes.sort_unstable();
        let mut highest = (0, 0);
        for write in note_writes.iter_mut() {
            highest = highest.max((write.1, write.2));
            (write.1, write.2) = highest;
        }
    }
    let established_before = |note: u64, call: usize| -> Option<(u64, usize)> {
        let note_writes = writes.get(&note)?;
        let returned = note_writes.partition_point(|&(position, ..)| position < call);
        let &(_, version, write) = note_writes.get(returned.checked_sub(1)?)?;
        (version >= 2 && bodies.contains_key(&(note, version - 1))).then_some((version, write))
    };
    let mut candidates: Vec<Candidate> = Vec::new();
    for (index, operation) in operations.iter().enumerate() {
        let Outcome::Ok(output) = &operation.outcome else { continue };
        match operation.function.as_str() {
            "get" if output.get("note").is_some() => {
                let Some(note) = operation.input.get("id").and_then(Value::as_u64) else { continue };
                if let Some((established_version, write)) = established_before(note, operation.call_position) {
                    candidates.push(Candidate { operation: index, entry: None, note, established_version, write });
                }
            }
            "list" => {
                for (entry, listed) in output.get("notes").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let Some(note) = listed.get("id").and_then(Value::as_u64) else { continue };
                    if let Some((established_version, write)) = established_before(note, operation.call_position) {
                        candidates.push(Candidate {
                            operation: index,
                            entry: Some(entry),
                            note,
                            established_version,
                            write,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    // The read called first at or after a random position (candidates are in call order).
    let position = random.random_range(0..history.events.len().max(1));
    let read = candidates
        .iter()
        .find(|candidate| operations[candidate.operation].call_position >= position)
        .unwrap_or(&candidates[candidates.len() - 1])
        .operation;
    let entries: Vec<&Candidate> = candidates.iter().filter(|candidate| candidate.operation == read).collect();
    let chosen = entries[random.random_range(0..entries.len())];
    let reported_version = chosen.established_version - 1;
    let body = bodies[&(chosen.note, reported_version)].clone();
    let read_id = operations[chosen.operation].id;
    let mut planted = history.clone();
    let completion = planted
        .events
        .iter_mut()
        .find(|event| event.id == read_id && event.kind == EventKind::Ok)
        .and_then(|event| event.output.as_mut())
        .expect("a completed read has its ok line");
    let target = match chosen.entry {
        None => completion,
        Some(entry) => &mut completion["notes"][entry],
    };
    target["version"] = json!(reported_version);
    target["note"] = body;
    let report = PlantedRead {
        operation: read_id,
        function: if chosen.entry.is_some() { "list" } else { "get" },
        note: chosen.note,
        reported_version,
        established_version: chosen.established_version,
        write: operations[chosen.write].id,
    };
    planted.header.expect = Some(Expectation::Illegal);
    planted.header.source = Some(match &history.header.source {
        Some(source) => format!("{source} (planted {report})"),
        None => format!("(planted {report})"),
    });
    Ok(Some((planted, report)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{Verdict, check};
    use crate::gen_history::{GenOptions, generate};

    #[test]
    fn a_planted_read_reports_the_version_before_one_returned_before_it_and_breaks_the_history() {
        for seed in 1..=6 {
            let options = GenOptions { list_share: 0.1, ..GenOptions::new(seed, 3, 120) };
            let history = generate(&options);
            assert_eq!(check(&history).unwrap(), Verdict::Linearizable, "{}", options.command());
            let (planted, report) = plant_stale_read(&history, seed).unwrap().expect("a read to plant in");
            assert_eq!(report.reported_version + 1, report.established_version);
            assert_eq!(planted.header.expect, Some(Expectation::Illegal));
            assert!(planted.header.source.as_deref().is_some_and(|source| source.contains("planted")));
            // Only the planted read's completion differs.
            let differing: Vec<usize> =
                (0..history.events.len()).filter(|&index| history.events[index] != planted.events[index]).collect();
            assert_eq!(differing.len(), 1);
            assert_eq!(planted.events[differing[0]].id, report.operation);
            let operations = planted.operations().unwrap();
            let read = operations.iter().find(|operation| operation.id == report.operation).unwrap();
            let write = operations.iter().find(|operation| operation.id == report.write).unwrap();
            assert!(write.precedes(read));
            match check(&planted).unwrap() {
                Verdict::NotLinearizable(counterexample) => {
                    assert!(counterexample.operation_ids.contains(&report.operation), "{counterexample:?}")
                }
                other => panic!("seed {seed}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_history_without_a_second_write_has_nothing_to_plant() {
        let history = History::parse_jsonl(
            "{\"format\":\"lin-history\",\"version\":1,\"model\":\"notes\"}\n\
             {\"ev\":\"call\",\"id\":0,\"client\":0,\"f\":\"create\",\"in\":{\"body\":{\"t\":1}}}\n\
             {\"ev\":\"ok\",\"id\":0,\"client\":0,\"out\":{\"id\":1,\"version\":1}}\n\
             {\"ev\":\"call\",\"id\":1,\"client\":0,\"f\":\"get\",\"in\":{\"id\":1}}\n\
             {\"ev\":\"ok\",\"id\":1,\"client\":0,\"out\":{\"note\":{\"t\":1},\"version\":1}}\n",
        )
        .unwrap();
        assert!(plant_stale_read(&history, 1).unwrap().is_none());
    }
}
