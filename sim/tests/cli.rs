//! The `noted-sim` binary end to end: a run writes its history and timeline, `check`
//! reads the history back, and exit codes say what happened.

use std::process::Command;

fn noted_sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_noted-sim"))
}

#[test]
fn a_run_writes_a_history_that_check_accepts() {
    let directory = std::env::temp_dir().join(format!("noted-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a temporary directory");
    let history = directory.join("seed-5.jsonl");
    let html = directory.join("seed-5.html");
    let run = noted_sim()
        .args(["run", "--protocol", "remote-write", "--seed", "5", "--history"])
        .arg(&history)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("noted-sim runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert!(stdout.contains("PASS noted-sim run --protocol remote-write --seed 5"), "{stdout}");
    assert!(std::fs::read_to_string(&html).expect("the timeline is written").starts_with("<!DOCTYPE html>"));
    let check = noted_sim().arg("check").arg(&history).output().expect("noted-sim checks");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    std::fs::remove_dir_all(&directory).expect("the temporary directory is removed");
}

#[test]
fn a_seed_may_be_a_git_hash_and_unknown_protocols_are_refused() {
    let run = noted_sim().args(["run", "--protocol", "remote-write", "--seed", "5b9e8b1"]).output().expect("runs");
    assert!(String::from_utf8_lossy(&run.stdout).contains(&format!("seed {}", 0x5b9e8b1)));
    let refused = noted_sim().args(["run", "--protocol", "paxos", "--seed", "1"]).output().expect("runs");
    assert_eq!(refused.status.code(), Some(64), "a wrong command line has its own code, not undecided's 2");
}

fn testdata(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(path)
}

#[test]
fn check_gives_each_verdict_its_own_exit_code() {
    let linearizable =
        noted_sim().arg("check").arg(testdata("notes-histories/n1-ok-basic.jsonl")).output().expect("runs");
    assert_eq!(linearizable.status.code(), Some(0), "{}", String::from_utf8_lossy(&linearizable.stdout));

    let illegal = noted_sim().arg("check").arg(testdata("notes-histories/n2-bad-stale.jsonl")).output().expect("runs");
    assert_eq!(illegal.status.code(), Some(1), "{}", String::from_utf8_lossy(&illegal.stdout));

    // etcd_002 needs far more than ten search steps: with ten the checker cannot decide.
    let undecided = noted_sim()
        .args(["check", "--max-steps", "10"])
        .arg(testdata("jepsen-etcd/etcd_002.jsonl"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&undecided.stdout);
    assert_eq!(undecided.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("UNDECIDED"), "{stdout}");

    let missing = noted_sim().arg("check").arg(testdata("no-such-history.jsonl")).output().expect("runs");
    assert_eq!(missing.status.code(), Some(3), "{}", String::from_utf8_lossy(&missing.stdout));
    let directory = std::env::temp_dir().join(format!("noted-sim-cli-garbage-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a temporary directory");
    let garbage = directory.join("garbage.jsonl");
    std::fs::write(&garbage, "this is not a history\n").expect("written");
    let unreadable = noted_sim().arg("check").arg(&garbage).output().expect("runs");
    assert_eq!(unreadable.status.code(), Some(3), "{}", String::from_utf8_lossy(&unreadable.stdout));
    std::fs::remove_dir_all(&directory).expect("the temporary directory is removed");

    // Several files: the most serious verdict decides the code.
    let mixed = noted_sim()
        .arg("check")
        .arg(testdata("notes-histories/n1-ok-basic.jsonl"))
        .arg(testdata("notes-histories/n2-bad-stale.jsonl"))
        .output()
        .expect("runs");
    assert_eq!(mixed.status.code(), Some(1));
}

#[test]
fn check_prints_one_json_object_per_file() {
    let output = noted_sim()
        .args(["check", "--json", "--timeout", "60", "--max-memory", "1000000000"])
        .arg(testdata("notes-histories/n1-ok-basic.jsonl"))
        .arg(testdata("notes-histories/n2-bad-stale.jsonl"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|line| serde_json::from_str(line).expect("one JSON object a line")).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["verdict"], "linearizable");
    assert_eq!(lines[0]["model"], "notes");
    assert!(lines[0]["operations"].as_u64().is_some_and(|count| count > 0));
    assert!(lines[0]["peak_search_states"].is_u64());
    assert!(lines[0]["milliseconds"].is_f64());
    assert_eq!(lines[1]["verdict"], "not-linearizable");
    assert!(lines[1]["failing_operations"].as_array().is_some_and(|ids| !ids.is_empty()), "{stdout}");
}

#[test]
fn gen_history_writes_the_same_bytes_every_time_and_check_agrees_with_its_expectation() {
    let arguments = [
        "gen-history",
        "--seed",
        "12",
        "--clients",
        "3",
        "--operations",
        "80",
        "--list-share",
        "0.1",
        "--unknown-share",
        "0.05",
        "--unknown-at",
        "bursts",
    ];
    let first = noted_sim().args(arguments).output().expect("runs");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let second = noted_sim().args(arguments).output().expect("runs");
    assert_eq!(first.stdout, second.stdout, "the same arguments give the same bytes");
    let header: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&first.stdout).lines().next().expect("a header line"))
            .expect("the header is JSON");
    assert_eq!(header["expect"], "linearizable");
    assert_eq!(header["model"], "notes");

    let directory = std::env::temp_dir().join(format!("noted-sim-cli-gen-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a temporary directory");
    let linearizable = directory.join("linearizable.jsonl");
    let to_file = noted_sim().args(arguments).arg("-o").arg(&linearizable).output().expect("runs");
    assert!(to_file.status.success() && to_file.stdout.is_empty());
    assert_eq!(std::fs::read(&linearizable).expect("written"), first.stdout, "-o writes what stdout would");
    let check = noted_sim().arg("check").arg(&linearizable).output().expect("runs");
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));

    let illegal = directory.join("illegal.jsonl");
    let planted =
        noted_sim().args(arguments).args(["--plant", "stale-read", "-o"]).arg(&illegal).output().expect("runs");
    assert!(planted.status.success(), "{}", String::from_utf8_lossy(&planted.stderr));
    assert!(String::from_utf8_lossy(&planted.stderr).contains("planted stale read: "));
    let text = std::fs::read_to_string(&illegal).expect("written");
    assert!(text.lines().next().is_some_and(|header| header.contains(r#""expect":"illegal""#)), "{text}");
    let check = noted_sim().arg("check").arg(&illegal).output().expect("runs");
    assert_eq!(check.status.code(), Some(1), "{}", String::from_utf8_lossy(&check.stdout));
    std::fs::remove_dir_all(&directory).expect("the temporary directory is removed");

    let refused = noted_sim()
        .args(["gen-history", "--seed", "1", "--clients", "0", "--operations", "10"])
        .output()
        .expect("runs");
    assert_eq!(refused.status.code(), Some(64));
    let nothing_to_plant = noted_sim()
        .args(["gen-history", "--seed", "1", "--clients", "2", "--operations", "1", "--plant", "stale-read"])
        .output()
        .expect("runs");
    assert_eq!(nothing_to_plant.status.code(), Some(64));
    assert!(nothing_to_plant.stdout.is_empty(), "no history that would pass for a planted one");
}
