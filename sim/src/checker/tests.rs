//! Verdicts on the sample histories, tricky cases, and a comparison with a brute-force
//! checker on small random histories.

use std::path::PathBuf;

use super::*;

fn data_path(relative: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/")).join(relative)
}

fn verdict_of_file(relative: &str) -> CheckReport {
    check_file(&data_path(relative)).unwrap_or_else(|error| panic!("{error}"))
}

const JEPSEN_EXPECTED: [(&str, bool); 5] =
    [("etcd_000", false), ("etcd_002", true), ("etcd_005", true), ("etcd_040", false), ("etcd_100", true)];

#[test]
fn jepsen_logs_give_their_documented_verdicts() {
    for (name, linearizable) in JEPSEN_EXPECTED {
        let report = verdict_of_file(&format!("jepsen-etcd/{name}.log"));
        assert_eq!(matches!(report.verdict, Verdict::Linearizable), linearizable, "{name}: {:?}", report.verdict);
        if !linearizable {
            assert!(matches!(report.verdict, Verdict::NotLinearizable(_)), "{name}: {:?}", report.verdict);
        }
    }
}

#[test]
fn jepsen_jsonl_files_give_their_documented_verdicts() {
    for (name, linearizable) in JEPSEN_EXPECTED {
        let report = verdict_of_file(&format!("jepsen-etcd/{name}.jsonl"));
        let expectation = report.expect.expect("the conversions say what they expect");
        assert_eq!(report.verdict.agrees_with(expectation), Some(true), "{name}: {:?}", report.verdict);
        assert_eq!(matches!(report.verdict, Verdict::Linearizable), linearizable, "{name}");
    }
}

#[test]
fn notes_histories_give_their_documented_verdicts() {
    let names = [
        ("n1-ok-basic", true),
        ("n2-bad-stale", false),
        ("n3-ok-unknown-create", true),
        ("n4-bad-id-order", false),
        ("n5-ok-concurrent-creates", true),
        ("n6-bad-unknown-create-too-late", false),
    ];
    for (name, linearizable) in names {
        let report = verdict_of_file(&format!("notes-histories/{name}.jsonl"));
        assert_eq!(
            report.verdict.agrees_with(report.expect.expect("expect")),
            Some(true),
            "{name}: {:?}",
            report.verdict
        );
        assert_eq!(matches!(report.verdict, Verdict::Linearizable), linearizable, "{name}");
    }
}
