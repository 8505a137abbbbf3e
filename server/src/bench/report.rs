//! What a benchmark measured: latencies in HDR histograms (per operation kind and
//! overall), outcomes, throughput; rendered as a table or as JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::mix::OperationKind;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
const LATENCY_MAX_MICROS: u64 = 600_000_000;

/// What one benchmark connection saw; connections' tallies are merged at the end.
#[derive(Clone, Debug)]
pub struct Tally {
    latency: Vec<Histogram<u64>>,
    /// Answers with a definite outcome (2xx, 404, 412), by kind.
    pub answered: [u64; OperationKind::ALL.len()],
    /// 503s, timeouts, lost connections and other answers that say nothing definite.
    pub failed: [u64; OperationKind::ALL.len()],
}

impl Default for Tally {
    fn default() -> Tally {
        let histogram = || Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3).expect("the bounds are valid");
        Tally {
            latency: OperationKind::ALL.iter().map(|_| histogram()).collect(),
            answered: [0; OperationKind::ALL.len()],
            failed: [0; OperationKind::ALL.len()],
        }
    }
}

impl Tally {
    pub fn record(&mut self, kind: OperationKind, latency: Duration, definite: bool) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_MAX_MICROS);
        self.latency[kind.index()].record(micros).expect("the value is clamped to the histogram's range");
        if definite {
            self.answered[kind.index()] += 1;
        } else {
            self.failed[kind.index()] += 1;
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            mine.add(theirs).expect("histograms of equal bounds merge");
        }
        for index in 0..OperationKind::ALL.len() {
            self.answered[index] += other.answered[index];
            self.failed[index] += other.failed[index];
        }
    }

    fn overall(&self) -> Histogram<u64> {
        let mut overall = self.latency[0].clone();
        overall.reset();
        for histogram in &self.latency {
            overall.add(histogram).expect("histograms of equal bounds merge");
        }
        overall
    }

    pub fn operations(&self) -> u64 {
        self.answered.iter().sum::<u64>() + self.failed.iter().sum::<u64>()
    }
}

/// The results of one run, ready to print.
#[derive(Debug)]
pub struct Report {
    pub settings: Value,
    pub elapsed: Duration,
    pub tally: Tally,
    /// The history file and the checker's verdict, when recorded.
    pub history: Option<Value>,
}

fn percentiles(histogram: &Histogram<u64>) -> Value {
    json!({
        "p50": histogram.value_at_quantile(0.50),
        "p90": histogram.value_at_quantile(0.90),
        "p99": histogram.value_at_quantile(0.99),
        "p999": histogram.value_at_quantile(0.999),
        "max": histogram.max(),
    })
}

impl Report {
    fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        let overall = self.tally.overall();
        let answered: u64 = self.tally.answered.iter().sum();
        let by_operation: serde_json::Map<String, Value> = OperationKind::ALL
            .iter()
            .filter(|kind| !self.tally.latency[kind.index()].is_empty())
            .map(|kind| {
                let index = kind.index();
                let entry = json!({
                    "answered": self.tally.answered[index],
                    "failed": self.tally.failed[index],
                    "per_second": self.per_second(self.tally.answered[index]),
                    "latency_us": percentiles(&self.tally.latency[index]),
                });
                (kind.name().to_string(), entry)
            })
            .collect();
        json!({
            "settings": self.settings,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "operations": self.tally.operations(),
            "answered": answered,
            "failed": self.tally.failed.iter().sum::<u64>(),
            "per_second": self.per_second(answered),
            "latency_us": percentiles(&overall),
            "by_operation": by_operation,
            "history": self.history,
        })
    }

    pub fn to_text(&self) -> String {
        let report = self.to_json();
        let mut lines = vec![format!(
            "{} operations in {:.2} s: {:.0} answered/s, {} failed (503, timeout or connection lost)",
            report["operations"],
            self.elapsed.as_secs_f64(),
            report["per_second"].as_f64().unwrap_or_default(),
            report["failed"],
        )];
        lines.push(format!(
            "{:<10} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation", "answered", "failed", "per s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        ));
        let row = |name: &str, entry: &Value| {
            let millis = |key: &str| entry["latency_us"][key].as_f64().unwrap_or_default() / 1000.0;
            format!(
                "{name:<10} {:>9} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                entry["answered"].as_u64().unwrap_or_default(),
                entry["failed"].as_u64().unwrap_or_default(),
                entry["per_second"].as_f64().unwrap_or_default(),
                millis("p50"),
                millis("p90"),
                millis("p99"),
                millis("p999"),
                millis("max"),
            )
        };
        if let Some(by_operation) = report["by_operation"].as_object() {
            for (name, entry) in by_operation {
                lines.push(row(name, entry));
            }
        }
        lines.push(row("all", &report));
        if let Some(history) = &self.history {
            lines.push(format!("history: {history}"));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_merge_and_report_percentiles() {
        let mut first = Tally::default();
        for millis in 1..=100 {
            first.record(OperationKind::Get, Duration::from_millis(millis), true);
        }
        let mut second = Tally::default();
        second.record(OperationKind::Create, Duration::from_secs(2), false);
        first.merge(&second);
        let report = Report { settings: json!({}), elapsed: Duration::from_secs(2), tally: first, history: None };
        let json = report.to_json();
        assert_eq!(json["operations"], 101);
        assert_eq!(json["answered"], 100);
        assert_eq!(json["failed"], 1);
        assert_eq!(json["per_second"], 50.0);
        let p50 = json["by_operation"]["get"]["latency_us"]["p50"].as_u64().unwrap();
        assert!((49_900..=50_100).contains(&p50), "p50 {p50}");
        let max = json["latency_us"]["max"].as_u64().unwrap();
        assert!((1_999_000..=2_001_000).contains(&max), "max {max}");
        assert!(json["by_operation"].get("list").is_none());
        assert!(report.to_text().contains("get"));
    }
}
