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
    assert_eq!(refused.status.code(), Some(2), "clap refuses an unknown protocol");
}
