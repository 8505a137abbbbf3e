//! HTTP as clients expect it: early errors read by clients still sending their body,
//! conditional GETs, and cross-origin use by browser pages.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use noted_tests::{Cluster, ClusterOptions};
use reqwest::Method;
use serde_json::{Value, json};

/// A body far over the server's request body limit (256 KiB by default).
const LARGE_BODY_BYTES: usize = 8 * 1024 * 1024;
const ALLOWED_ORIGIN: &str = "https://app.example";
const REFUSED_ORIGIN: &str = "https://evil.example";

/// Status, headers and body of an answer read from a raw connection.
struct RawAnswer {
    status: u16,
    head: String,
    body: Value,
}

/// Writes `head` and a body of `body_bytes` bytes in full, as `http.client` and
/// most libraries do when they do not ask for `100 Continue`, and only then reads.
fn send_whole_body_then_read(cluster: &Cluster, head: &str, body_bytes: usize) -> RawAnswer {
    let mut stream = TcpStream::connect(cluster.addresses[0].client).expect("connect to the client port");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!("{head}Host: noted\r\nContent-Length: {body_bytes}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let body = vec![b' '; body_bytes];
    stream.write_all(&body).expect("the whole body is written: noted neither resets nor closes early");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the answer is read after the body, then the connection ends cleanly");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status line");
    RawAnswer { status, head: head.to_owned(), body: serde_json::from_str(body).unwrap_or(Value::Null) }
}

#[test]
fn early_errors_reach_clients_that_send_the_whole_body_first() {
    let cluster = Cluster::start(ClusterOptions::vr());
    let cases = [
        ("POST /notes HTTP/1.1\r\nContent-Type: application/json\r\n", 413, "payload_too_large"),
        ("PUT /notes/1 HTTP/1.1\r\nContent-Type: application/json\r\nIf-Match: \"x\"\r\n", 400, "invalid_header"),
        ("PUT /notes/abc HTTP/1.1\r\nContent-Type: application/json\r\n", 400, "invalid_id"),
        ("POST /notes HTTP/1.1\r\nContent-Type: text/plain\r\n", 415, "unsupported_media_type"),
    ];
    for (head, status, code) in cases {
        let answer = send_whole_body_then_read(&cluster, head, LARGE_BODY_BYTES);
        let request = head.lines().next().unwrap();
        assert_eq!(answer.status, status, "{request}: {}", answer.head);
        assert_eq!(answer.body["error"]["code"], code, "{request}: {}", answer.body);
    }
    let created = cluster.client(0).json(Method::POST, "/notes", &json!({ "after": "large bodies" })).unwrap();
    assert_eq!(created.status, 201, "the cluster still serves: {}", created.text);
}

#[test]
fn a_matching_if_none_match_answers_304() {
    let cluster = Cluster::start(ClusterOptions::vr());
    let client = cluster.client(0);
    let created = client.json(Method::POST, "/notes", &json!({ "title": "cached" })).unwrap();
    assert_eq!(created.status, 201, "{}", created.text);
    let path = format!("/notes/{}", created.body["id"]);
    let etag = created.header("etag").expect("a note has an ETag").to_owned();
    let get = |if_none_match: &str| {
        client.send(Method::GET, &path, None, &[("if-none-match", if_none_match.to_owned())]).unwrap()
    };
    for matching in [etag.clone(), format!("W/{etag}"), format!("\"0\", {etag}"), "*".to_owned()] {
        let answer = get(&matching);
        assert_eq!(answer.status, 304, "If-None-Match: {matching}: {}", answer.text);
        assert!(answer.text.is_empty(), "304 has no body");
        assert_eq!(answer.header("etag"), Some(etag.as_str()));
    }
    let changed = client.json(Method::PATCH, &path, &json!({ "title": "changed" })).unwrap();
    assert_eq!(changed.status, 200, "{}", changed.text);
    let answer = get(&etag);
    assert_eq!(answer.status, 200, "an old tag no longer matches: {}", answer.text);
    assert_eq!(answer.body["title"], "changed");
    assert_ne!(answer.header("etag"), Some(etag.as_str()));
}

#[test]
fn cors_preflights_and_the_feed_accept_allowed_origins_only() {
    let options =
        ClusterOptions { extra_config: Some(json!({ "allowed_origins": [ALLOWED_ORIGIN] })), ..ClusterOptions::vr() };
    let cluster = Cluster::start(options);
    let client = cluster.client(0);
    let preflight = |origin: &str| {
        let headers = [
            ("origin", origin.to_owned()),
            ("access-control-request-method", "PUT".to_owned()),
            ("access-control-request-headers", "content-type, if-match".to_owned()),
        ];
        client.send(Method::OPTIONS, "/notes/1", None, &headers).unwrap()
    };
    let allowed = preflight(ALLOWED_ORIGIN);
    assert_eq!(allowed.status, 204, "{}", allowed.text);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(ALLOWED_ORIGIN));
    let methods = allowed.header("access-control-allow-methods").unwrap_or_default();
    assert!(["GET", "POST", "PUT", "PATCH", "DELETE"].iter().all(|method| methods.contains(method)), "{methods}");
    let headers = allowed.header("access-control-allow-headers").unwrap_or_default();
    for header in ["content-type", "if-match", "if-none-match", "noted-client-id", "noted-request-number"] {
        assert!(headers.contains(header), "{header} in {headers}");
    }

    let refused = preflight(REFUSED_ORIGIN);
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    assert_eq!(refused.error_code(), Some("cors_refused"));

    let created = client
        .send(
            Method::POST,
            "/notes",
            Some(("application/json", br#"{"title":"cross-origin"}"#.to_vec())),
            &[("origin", ALLOWED_ORIGIN.to_owned())],
        )
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.header("access-control-allow-origin"), Some(ALLOWED_ORIGIN));
    assert!(created.header("access-control-expose-headers").is_some_and(|exposed| exposed.contains("etag")));

    let watch = |origin: Option<&str>| {
        let url = format!("ws://{}/notes/watch", cluster.addresses[0].client);
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse().unwrap());
        }
        match tungstenite::connect(request) {
            Ok((mut socket, _)) => {
                let _ = socket.close(None);
                Ok(())
            }
            Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(error) => panic!("unexpected WebSocket error: {error}"),
        }
    };
    assert_eq!(watch(Some(ALLOWED_ORIGIN)), Ok(()), "an allowed origin opens the feed");
    assert_eq!(watch(None), Ok(()), "a program without Origin opens the feed");
    let own_page = format!("http://{}", cluster.addresses[0].client);
    assert_eq!(watch(Some(&own_page)), Ok(()), "noted's own page opens the feed");
    assert_eq!(watch(Some(REFUSED_ORIGIN)), Err(403), "a hostile page cannot open the feed");
}
