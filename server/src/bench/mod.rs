//! `noted bench`: a load generator against a running cluster.
//!
//! Each of `--connections` tasks keeps one HTTP/1.1 connection to one of the
//! replicas (round robin over `--url`) and sends requests back to back, drawing
//! each operation from the mix. Before the measured phase, `--prefill` notes are
//! created so that reads and updates find notes. Latencies go to HDR histograms
//! kept per connection and merged at the end, so measuring takes no lock.
//!
//! With `--history FILE` or `--check` every operation, prefill included, is
//! recorded as a lin-history (the simulator's format and recorder); `--check`
//! then runs the simulator's linearizability checker on it.
//!
//! Exit status of `noted bench` (see [`Finished::exit_code`]): 0 the run finished
//! (and with `--check` its history is linearizable); 1 the history is not
//! linearizable; 3 the checker gave up, so linearizability is undecided; 2 the run
//! could not be made or finished (no cluster, a file that cannot be written), as
//! for every `noted` command. `noted-sim check` says 2 for undecided, but 2 already
//! means an error for `noted`, hence 3, as in `noted-chaos`.

pub mod connection;
pub mod mix;
pub mod report;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use noted_check::checker::{self, Verdict};
use noted_check::recording::Recorder;
use serde_json::json;

use crate::cli::{BenchArgs, SendTo};
use connection::{Connection, Target};
use report::{Report, Tally};
use worker::{Limit, Shared, Worker};

/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// How a run that finished ended: its report printed, and with `--check` the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Linearizable, or not checked.
    Passed,
    /// The recorded history is not linearizable: why, in words.
    NotLinearizable(String),
    /// The checker gave up (its budget ran out): why, in words.
    Undecided(String),
}

impl Finished {
    pub const NOT_LINEARIZABLE: u8 = 1;
    pub const UNDECIDED: u8 = 3;

    /// The process's exit status (see the module documentation); 2, an error, is
    /// for runs that did not finish.
    pub fn exit_code(&self) -> u8 {
        match self {
            Finished::Passed => 0,
            Finished::NotLinearizable(_) => Finished::NOT_LINEARIZABLE,
            Finished::Undecided(_) => Finished::UNDECIDED,
        }
    }
}

pub async fn run(args: BenchArgs) -> Result<Finished, String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let mut targets = Vec::new();
    for url in &args.urls {
        targets.push(Target::resolve(url).await?);
    }
    if targets.is_empty() {
        return Err("give at least one --url".into());
    }
    if args.send_to == SendTo::Primary {
        let primary = find_primary(&targets).await?;
        eprintln!("noted bench: sending to the primary, {}", primary.address);
        targets = vec![primary];
    }
    let recording = args.history.is_some() || args.check;
    let started = Instant::now();
    let recorder = recording.then(|| {
        Recorder::new(
            &format!("noted bench {}", args.describe()),
            Box::new(move || u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)),
        )
    });
    let limit = match args.operations {
        Some(operations) => Limit::Operations(AtomicU64::new(operations)),
        None => Limit::Duration(Duration::from_secs_f64(args.duration)),
    };
    let shared = Arc::new(Shared {
        mix: args.mix.clone(),
        note_bytes: args.note_bytes,
        local_reads: args.consistency == crate::cli::ConsistencyArg::Local,
        request_timeout: Duration::from_millis(args.timeout_ms),
        highest_id: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        limit,
        recorder,
    });
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut workers: Vec<Worker> = (0..args.connections)
        .map(|index| Worker::new(index as u64, targets[index % targets.len()].clone(), Arc::clone(&shared), seed))
        .collect();

    // Prefill: creates spread over the connections, not measured.
    let per_worker = args.prefill / args.connections as u64;
    let extra = args.prefill % args.connections as u64;
    let prefilled =
        run_workers(workers, |index| per_worker + u64::from((index as u64) < extra), Worker::prefill).await?;
    workers = prefilled.into_iter().map(|(worker, _)| worker).collect();
    if shared.highest_id.load(Ordering::Relaxed) == 0 && args.prefill > 0 {
        return Err("the prefill created no note: is the cluster up and serving?".into());
    }

    let progress = progress_bar(&args);
    let measuring = Instant::now();
    let ticker = {
        let shared = Arc::clone(&shared);
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_INTERVAL).await;
                let done = shared.completed.load(Ordering::Relaxed);
                match shared.limit {
                    Limit::Operations(_) => progress.set_position(done),
                    Limit::Duration(_) => progress.set_position(measuring.elapsed().as_millis() as u64),
                }
                let rate = done as f64 / measuring.elapsed().as_secs_f64().max(1e-9);
                progress.set_message(format!("{done} operations, {rate:.0}/s"));
            }
        })
    };
    let deadline = match shared.limit {
        Limit::Duration(duration) => Some(measuring + duration),
        Limit::Operations(_) => None,
    };
    let finished = run_workers(workers, |_| 0, move |worker, _| worker.measure(deadline)).await?;
    let elapsed = measuring.elapsed();
    ticker.abort();
    // Aborting only asks: the ticker's clone of `shared` is dropped once the task is,
    // and until then the recorder cannot be taken back below.
    let _ = ticker.await;
    progress.finish_and_clear();

    let mut tally = Tally::default();
    for (_, worker_tally) in &finished {
        tally.merge(worker_tally);
    }
    drop(finished);
    let shared = Arc::into_inner(shared).ok_or("the recorder is still shared after the run (a bug in noted bench)")?;
    let history = match shared.recorder {
        Some(recorder) => Some(record_and_check(&args, &recorder)?),
        None => None,
    };
    let report = Report { settings: args.settings_json(seed), elapsed, tally, history };
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    Ok(ending(report.history.as_ref().and_then(|history| history.get("verdict")).and_then(|verdict| verdict.as_str())))
}

/// The run's end from the verdict in its report (absent without `--check`).
fn ending(verdict: Option<&str>) -> Finished {
    match verdict {
        Some("linearizable") | None => Finished::Passed,
        Some(verdict) if verdict.starts_with("undecided") => {
            Finished::Undecided(format!("the history of the run is {verdict}"))
        }
        Some(verdict) => Finished::NotLinearizable(format!("the history of the run is {verdict}")),
    }
}

impl BenchArgs {
    /// The command line that reproduces the run's settings.
    fn describe(&self) -> String {
        let limit = match self.operations {
            Some(operations) => format!("--operations {operations}"),
            None => format!("--duration {}", self.duration),
        };
        format!(
            "--url {} --send-to {:?} --connections {} {limit} --mix {} --note-bytes {} --prefill {} --consistency {:?}",
            self.urls.join(","),
            self.send_to,
            self.connections,
            self.mix,
            self.note_bytes,
            self.prefill,
            self.consistency,
        )
        .to_lowercase()
    }

    fn settings_json(&self, seed: u64) -> serde_json::Value {
        json!({
            "urls": self.urls,
            "send_to": format!("{:?}", self.send_to).to_lowercase(),
            "connections": self.connections,
            "duration_s": self.operations.is_none().then_some(self.duration),
            "operations": self.operations,
            "mix": self.mix.to_string(),
            "note_bytes": self.note_bytes,
            "prefill": self.prefill,
            "consistency": format!("{:?}", self.consistency).to_lowercase(),
            "seed": seed,
        })
    }
}

/// The target whose `/status` reports the primary role. A cluster in a view change
/// has none for a moment, so the replicas are asked a few times.
async fn find_primary(targets: &[Target]) -> Result<Target, String> {
    const ATTEMPTS: u32 = 50;
    const PAUSE: Duration = Duration::from_millis(100);
    let mut last_error = String::new();
    for _ in 0..ATTEMPTS {
        for target in targets {
            match role_of(target).await {
                Ok(role) if role == "primary" => return Ok(target.clone()),
                Ok(_) => {}
                Err(error) => last_error = error,
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
    let urls: Vec<String> = targets.iter().map(|target| target.address.to_string()).collect();
    Err(format!(
        "none of {} reported the primary role in {:?}{}",
        urls.join(", "),
        PAUSE * ATTEMPTS,
        if last_error.is_empty() { String::new() } else { format!(" (last error: {last_error})") }
    ))
}

/// The `role` in a replica's `/status`.
async fn role_of(target: &Target) -> Result<String, String> {
    let mut connection = Connection::open(target).await?;
    let response = connection.send(axum::http::Method::GET, "/status", &[], None).await?;
    let status: serde_json::Value = serde_json::from_slice(&response.body)
        .map_err(|error| format!("{} answered /status with no JSON: {error}", target.address))?;
    Ok(status.get("role").and_then(|role| role.as_str()).unwrap_or_default().to_string())
}

/// Runs `job` on every worker in its own task and gives each worker back with its tally.
async fn run_workers<F, Fut>(
    workers: Vec<Worker>,
    count_for: impl Fn(usize) -> u64,
    job: F,
) -> Result<Vec<(Worker, Tally)>, String>
where
    F: Fn(Worker, u64) -> Fut,
    Fut: Future<Output = (Worker, Tally)> + Send + 'static,
{
    let tasks: Vec<_> =
        workers.into_iter().enumerate().map(|(index, worker)| tokio::spawn(job(worker, count_for(index)))).collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.map_err(|error| format!("a benchmark connection failed: {error}"))?);
    }
    Ok(results)
}

fn progress_bar(args: &BenchArgs) -> ProgressBar {
    let (length, unit) = match args.operations {
        Some(operations) => (operations, "ops"),
        None => ((args.duration * 1000.0) as u64, "ms"),
    };
    let progress = ProgressBar::new(length);
    progress.set_style(
        ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit} {{msg}}"))
            .expect("the template is valid"),
    );
    progress
}

/// Writes the history when asked to, and checks it when asked to.
fn record_and_check(args: &BenchArgs, recorder: &Recorder) -> Result<serde_json::Value, String> {
    let history = recorder.history();
    let mut summary = json!({ "events": history.events.len() });
    if let Some(path) = &args.history {
        std::fs::write(path, history.to_jsonl())
            .map_err(|error| format!("cannot write the history to {}: {error}", path.display()))?;
        summary["file"] = json!(path.display().to_string());
    }
    if args.check {
        let checking = Instant::now();
        let verdict = checker::check(&history).map_err(|error| format!("the history cannot be checked: {error}"))?;
        summary["check_ms"] = json!(checking.elapsed().as_secs_f64() * 1e3);
        summary["verdict"] = json!(match &verdict {
            Verdict::Linearizable => "linearizable".to_string(),
            Verdict::NotLinearizable(counterexample) =>
                format!("not linearizable: {} (operations {:?})", counterexample.reason, counterexample.operation_ids),
            Verdict::Unknown { steps, .. } => format!("undecided: the checker gave up after {steps} steps"),
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecided_check_has_its_own_exit_code() {
        assert_eq!(ending(None), Finished::Passed);
        assert_eq!(ending(Some("linearizable")).exit_code(), 0);
        let failed = ending(Some("not linearizable: no order (operations [3])"));
        assert!(matches!(failed, Finished::NotLinearizable(ref why) if why.contains("not linearizable")));
        assert_eq!(failed.exit_code(), 1);
        let undecided = ending(Some("undecided: the checker gave up after 20000000 steps"));
        assert!(matches!(undecided, Finished::Undecided(_)));
        assert_eq!(undecided.exit_code(), 3);
    }
}
