//! Checks shared by the tests of each protocol.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::cluster::Cluster;

/// Every operation of the API through `via`, checking statuses, headers and bodies.
pub fn every_operation_through(cluster: &Cluster, via: usize) {
    let client = cluster.client(via);
    let title = format!("written through replica {via}");

    let created = client.json(Method::POST, "/notes", &json!({ "title": title, "body": "x" })).unwrap();
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_u64().expect("an id");
    assert_eq!(created.header("location"), Some(format!("/notes/{id}").as_str()));
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(created.body["version"], 1);
    assert!(created.body["created_at"].as_str().is_some_and(|at| at.starts_with("20")), "{}", created.text);

    for reader in 0..cluster.replica_count() {
        let read = cluster.client(reader).get_path(&format!("/notes/{id}")).unwrap();
        assert_eq!(read.status, 200, "read through {reader}: {}", read.text);
        assert_eq!(read.body["title"], title.as_str());
        assert_eq!(read.header("etag"), Some("\"1\""));
    }

    let path = format!("/notes/{id}");
    let replaced = client
        .send(
            Method::PUT,
            &path,
            Some(("application/json", json!({ "title": "replaced" }).to_string().into_bytes())),
            &[("if-match", "\"1\"".into())],
        )
        .unwrap();
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.header("etag"), Some("\"2\""));
    assert_eq!(replaced.body.get("body"), None, "replace drops fields that are not given");

    let stale = client
        .send(
            Method::PUT,
            &path,
            Some(("application/json", json!({ "title": "lost" }).to_string().into_bytes())),
            &[("if-match", "\"1\"".into())],
        )
        .unwrap();
    assert_eq!(stale.status, 412, "{}", stale.text);
    assert_eq!(stale.error_code(), Some("precondition_failed"));

    let patched = client
        .send(
            Method::PATCH,
            &path,
            Some(("application/merge-patch+json", json!({ "tags": ["a"], "title": null }).to_string().into_bytes())),
            &[],
        )
        .unwrap();
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["tags"], json!(["a"]));
    assert_eq!(patched.body.get("title"), None, "null removes a member (RFC 7396)");
    assert_eq!(patched.body["version"], 3);
    let patched_as_json = client.json(Method::PATCH, &path, &json!({ "more": 1 })).unwrap();
    assert_eq!(patched_as_json.status, 200, "{}", patched_as_json.text);

    let listed = client.get_path(&format!("/notes?after={}&limit=5", id - 1)).unwrap();
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body["notes"][0]["id"], id);

    let local = client.get_path(&format!("{path}?consistency=local")).unwrap();
    assert_eq!(local.status, 200, "{}", local.text);
    assert!(local.header("noted-freshness").is_some_and(|value| value.starts_with("possibly-stale; applied=")));

    let deleted = client.send(Method::DELETE, &path, None, &[("if-match", "\"4\"".into())]).unwrap();
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let gone = client.get_path(&path).unwrap();
    assert_eq!(gone.status, 404);
    assert_eq!(gone.error_code(), Some("not_found"));
    let deleted_again = client.send(Method::DELETE, &path, None, &[]).unwrap();
    assert_eq!(deleted_again.status, 404);
}

/// The client API also speaks HTTP/2 (cleartext, with prior knowledge).
pub fn http2_is_served(cluster: &Cluster) {
    let http2 = reqwest::blocking::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let response = http2.get(format!("{}/notes?consistency=local", cluster.url(0))).send().unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

/// The value of one sample of `/metrics`, 0 when absent.
pub fn metric(cluster: &Cluster, replica: usize, sample: &str) -> u64 {
    let metrics = cluster.client(replica).get_path("/metrics").map(|response| response.text).unwrap_or_default();
    let prefix = format!("{sample} ");
    metrics.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|count| count.parse().ok()).unwrap_or(0)
}

/// A retried create (same client id and request number) makes one note.
pub fn retried_create_is_exactly_once(cluster: &Cluster) {
    let identity = [("noted-client-id", "4242".to_string()), ("noted-request-number", "1".to_string())];
    let body = json!({ "title": "once" }).to_string().into_bytes();
    let mut ids = Vec::new();
    for via in 0..cluster.replica_count() {
        let response = cluster
            .client(via)
            .send(Method::POST, "/notes", Some(("application/json", body.clone())), &identity)
            .unwrap();
        assert_eq!(response.status, 201, "{}", response.text);
        ids.push(response.body["id"].clone());
    }
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "one note for every retry: {ids:?}");
}

/// Every replica's local copy of the notes, once they agree.
pub fn converged_notes(cluster: &Cluster, replicas: &[usize]) -> Value {
    match notes_once_converged(cluster, replicas, CONVERGENCE_TIMEOUT) {
        Ok(notes) => notes,
        Err(copies) => panic!("replicas' stores did not converge within {CONVERGENCE_TIMEOUT:?}: {copies}"),
    }
}

/// How long replicas may take to agree once nothing disturbs them.
pub const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(20);

/// Every replica's local copy of the notes once they agree, or, after `timeout`,
/// the last copies seen (as one JSON array, by replica).
pub fn notes_once_converged(cluster: &Cluster, replicas: &[usize], timeout: Duration) -> Result<Value, Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let copies: Vec<Value> =
            replicas.iter().map(|replica| local_copy(cluster, *replica).unwrap_or_default()).collect();
        if copies.iter().all(|copy| copy == &copies[0] && copy.get("notes").is_some()) {
            return Ok(copies[0].clone());
        }
        if Instant::now() >= deadline {
            return Err(Value::Array(copies));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every note `replica` holds, read page by page with `consistency=local`, as
/// `{"notes": [...]}`; `None` when it does not answer.
pub fn local_copy(cluster: &Cluster, replica: usize) -> Option<Value> {
    let mut notes = Vec::new();
    let mut path = "/notes?consistency=local".to_string();
    loop {
        let response = cluster.client(replica).get_path(&path).ok().filter(|response| response.status == 200)?;
        notes.extend(response.body["notes"].as_array()?.iter().cloned());
        match response.body["next_after"].as_u64() {
            Some(after) => path = format!("/notes?consistency=local&after={after}"),
            None => return Some(json!({ "notes": notes })),
        }
    }
}

/// A request that must be refused: method, path, body, expected status and error code.
type BadRequest = (Method, &'static str, Option<(&'static str, Vec<u8>)>, u16, &'static str);

/// Malformed requests get their status and JSON error; the cluster keeps serving.
pub fn bad_input_is_refused(cluster: &Cluster) {
    let client = cluster.client(0);
    let cases: Vec<BadRequest> = vec![
        (Method::POST, "/notes", Some(("application/json", b"{\"title\":".to_vec())), 400, "malformed_json"),
        (Method::POST, "/notes", Some(("application/json", b"[1,2]".to_vec())), 400, "not_an_object"),
        (Method::POST, "/notes", Some(("text/plain", b"{}".to_vec())), 415, "unsupported_media_type"),
        (Method::POST, "/notes", None, 415, "unsupported_media_type"),
        (Method::PATCH, "/notes/1", Some(("text/plain", b"{}".to_vec())), 415, "unsupported_media_type"),
        (Method::POST, "/notes", Some(("application/json", oversized_body())), 413, "payload_too_large"),
        (Method::GET, "/nothing/here", None, 404, "not_found"),
        (Method::DELETE, "/notes", None, 405, "method_not_allowed"),
        (Method::POST, "/notes/1", None, 405, "method_not_allowed"),
        (Method::GET, "/notes/abc", None, 400, "invalid_id"),
        (Method::GET, "/notes?consistency=sometimes", None, 400, "invalid_query"),
        (
            Method::POST,
            "/notes",
            Some(("application/json", json!({ "id": 99 }).to_string().into_bytes())),
            400,
            "invalid",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let response = client.send(method.clone(), path, body, &[]).unwrap();
        assert_eq!(response.status, status, "{method} {path}: {}", response.text);
        assert_eq!(response.error_code(), Some(code), "{method} {path}: {}", response.text);
        assert!(response.body["error"]["message"].is_string(), "{method} {path}: {}", response.text);
    }
    let created = client.json(Method::POST, "/notes", &json!({ "after": "bad input" })).unwrap();
    assert_eq!(created.status, 201, "the cluster still serves: {}", created.text);
}

fn oversized_body() -> Vec<u8> {
    let filler = "x".repeat(400 * 1024);
    json!({ "title": filler }).to_string().into_bytes()
}
