//! Recording what clients saw as a lin-history, for the checker: the
//! simulator's [`Recorder`] with the wall clock, and the model's output of a response.

use std::time::Instant;

use noted_check::recording;
pub use noted_check::recording::{Recorder, user_object};
use serde_json::Value;

use crate::client::HttpResponse;

/// A recorder whose times are microseconds since now.
pub fn recorder(source: &str) -> Recorder {
    let started = Instant::now();
    Recorder::new(source, Box::new(move || u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)))
}

/// The model's output for a definite HTTP answer to `function`, or `None` when the
/// answer says nothing definite (503, or an unexpected status).
pub fn model_output(function: &str, response: &HttpResponse) -> Option<Value> {
    recording::model_output(function, response.status, &response.body)
}
