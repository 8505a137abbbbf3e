//! The chaos fixtures (`sim/testdata/chaos/`, see its README): a history recorded
//! from real `noted serve` processes under `noted-chaos`, and a copy with one
//! planted stale read. The checker must find the first linearizable and the second
//! not, with the planted read among the operations it blames. Both are gzipped
//! lin-histories, read through `check_file_with` as `noted-sim check` reads them.

use std::io::Read;
use std::path::{Path, PathBuf};

use noted_sim::checker::{CheckOptions, Verdict, check_file_with};
use noted_sim::history::{Expectation, History};

const RECORDED: &str = "vr-3-replicas-seed-11-75s.jsonl.gz";
const PLANTED: &str = "vr-3-replicas-seed-11-75s-planted-stale-read.jsonl.gz";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/chaos").join(name)
}

fn read(name: &str) -> History {
    let file = std::fs::File::open(fixture(name)).expect("the chaos fixtures are part of the repository");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut text).expect("a gzipped fixture");
    History::parse_jsonl(&text).expect("a lin-history")
}

#[test]
fn the_recorded_chaos_history_is_linearizable() {
    let report = check_file_with(&fixture(RECORDED), &CheckOptions::default()).expect("the fixture is checked");
    assert_eq!(report.expect, Some(Expectation::Linearizable));
    assert_eq!(report.verdict, Verdict::Linearizable, "peak states {}", report.peak_states);
}

#[test]
fn the_planted_stale_read_is_found() {
    // The planted copy differs from the recording in one completion: the planted read's.
    let (recorded, planted) = (read(RECORDED), read(PLANTED));
    assert_eq!(recorded.events.len(), planted.events.len());
    let differing: Vec<u64> = recorded
        .events
        .iter()
        .zip(&planted.events)
        .filter(|(before, after)| before != after)
        .map(|(_, after)| after.id)
        .collect();
    assert_eq!(differing.len(), 1, "one read was planted");
    let report = check_file_with(&fixture(PLANTED), &CheckOptions::default()).expect("the fixture is checked");
    assert_eq!(report.expect, Some(Expectation::Illegal));
    match report.verdict {
        Verdict::NotLinearizable(counterexample) => assert!(
            counterexample.operation_ids.contains(&differing[0]),
            "the failing operations {:?} include the planted read {}",
            counterexample.operation_ids,
            differing[0]
        ),
        other => panic!("the planted history is not linearizable, but the checker said {other:?}"),
    }
}

/// `.jsonl.gz` and `.log.gz` are decompressed and read as their inner extension says:
/// the same verdict as the plain file (etcd_000 is not linearizable, etcd_002 is).
#[test]
fn a_gzipped_file_is_read_as_its_inner_extension_says() {
    let directory = std::env::temp_dir().join(format!("noted-sim-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a temporary directory");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/jepsen-etcd");
    for name in ["etcd_000.log", "etcd_002.log", "etcd_000.jsonl", "etcd_002.jsonl"] {
        let plain = data.join(name);
        let gzipped = directory.join(format!("{name}.gz"));
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, &std::fs::read(&plain).expect("the etcd samples are here"))
            .expect("compress");
        std::fs::write(&gzipped, encoder.finish().expect("compress")).expect("write the gzipped copy");
        let expected = check_file_with(&plain, &CheckOptions::default()).expect("the plain file is checked");
        let read = check_file_with(&gzipped, &CheckOptions::default()).expect("the gzipped copy is checked");
        assert_eq!(
            (read.model, read.verdict, read.operation_count),
            (expected.model, expected.verdict, expected.operation_count),
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&directory);
}
