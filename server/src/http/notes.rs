//! The notes API: every replica accepts every request and its core routes it.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use noted_core::request_body::{self, BodyKind};
use noted_core::{
    ClientId, ClientRequest, Consistency, Freshness, Note, NoteId, Operation, Reply, RequestNumber, Version,
};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::driver::Answer;

/// The client's id, for clients that retry: with [`REQUEST_NUMBER_HEADER`], a retry
/// of the same request is answered, not executed again.
pub const CLIENT_ID_HEADER: &str = "noted-client-id";
/// The request's number, strictly increasing per client; a retry repeats it.
pub const REQUEST_NUMBER_HEADER: &str = "noted-request-number";
/// On local reads: `possibly-stale; applied=N`.
pub const FRESHNESS_HEADER: &str = "noted-freshness";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    after: Option<u64>,
    limit: Option<u32>,
    consistency: Option<String>,
}

impl ReadParams {
    fn consistency(&self) -> Result<Consistency, ApiError> {
        match self.consistency.as_deref() {
            None | Some("linearizable") => Ok(Consistency::Linearizable),
            Some("local") => Ok(Consistency::Local),
            Some(other) => Err(ApiError::bad_request(
                "invalid_query",
                format!("consistency must be linearizable or local, not {other:?}"),
            )),
        }
    }
}

type Params = Result<Query<ReadParams>, QueryRejection>;

pub async fn create(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let identity = client_identity(&headers)?;
        let body = write_body(&app, &headers, body, BodyKind::Create).await?;
        let answer = execute(&app, identity, Operation::Create { body }, Consistency::Linearizable).await?;
        respond(answer, StatusCode::CREATED)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn list(State(app): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    let result = async {
        let Query(params) =
            params.map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
        let operation = Operation::List { after: params.after.map(NoteId), limit: params.limit };
        let answer = execute(&app, client_identity(&headers)?, operation, params.consistency()?).await?;
        respond(answer, StatusCode::OK)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn get(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap, params: Params) -> Response {
    let result = async {
        let Query(params) =
            params.map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
        let operation = Operation::Get { id: note_id(&id)? };
        let unless = if_none_match(&headers);
        let answer = execute(&app, client_identity(&headers)?, operation, params.consistency()?).await?;
        if let (Some(unless), Reply::Note { note }) = (&unless, &answer.reply)
            && unless.matches(note.version)
        {
            return Ok(not_modified(note, &answer));
        }
        respond(answer, StatusCode::OK)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn replace(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let id = note_id(&id)?;
        let if_match = if_match(&headers)?;
        let identity = client_identity(&headers)?;
        let body = write_body(&app, &headers, body, BodyKind::Replace).await?;
        let answer =
            execute(&app, identity, Operation::Replace { id, body, if_match }, Consistency::Linearizable).await?;
        respond(answer, StatusCode::OK)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn patch(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let id = note_id(&id)?;
        let if_match = if_match(&headers)?;
        let identity = client_identity(&headers)?;
        let patch = write_body(&app, &headers, body, BodyKind::MergePatch).await?;
        let answer =
            execute(&app, identity, Operation::Patch { id, patch, if_match }, Consistency::Linearizable).await?;
        respond(answer, StatusCode::OK)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        let id = note_id(&id)?;
        let if_match = if_match(&headers)?;
        let identity = client_identity(&headers)?;
        let answer = execute(&app, identity, Operation::Delete { id, if_match }, Consistency::Linearizable).await?;
        respond(answer, StatusCode::NO_CONTENT)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// Sends the request to the replica and waits, within the request timeout, for its answer.
async fn execute(
    app: &AppState,
    (client, request_number): (ClientId, RequestNumber),
    operation: Operation,
    consistency: Consistency,
) -> Result<Answer, ApiError> {
    let request = ClientRequest { client, request_number, operation, consistency };
    let waiting = async {
        let answer =
            app.driver.request(request).await.ok_or_else(|| ApiError::unavailable("the replica is stopping"))?;
        answer.await.map_err(|_| ApiError::unavailable("the replica is stopping"))
    };
    tokio::time::timeout(app.request_timeout, waiting).await.unwrap_or_else(|_| Err(ApiError::timeout()))
}

fn client_identity(headers: &HeaderMap) -> Result<(ClientId, RequestNumber), ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        headers
            .get(name)
            .map(|value| {
                value.to_str().ok().and_then(|text| text.trim().parse::<u64>().ok()).ok_or_else(|| {
                    ApiError::bad_request("invalid_header", format!("{name} must be a non-negative integer"))
                })
            })
            .transpose()
    };
    match (number(CLIENT_ID_HEADER)?, number(REQUEST_NUMBER_HEADER)?) {
        (Some(client), Some(request_number)) if request_number > 0 => Ok((ClientId(client), request_number)),
        // A client that does not retry: a fresh identity per request, so it is never taken for a retry.
        (None, None) => Ok((ClientId(rand::random()), 1)),
        _ => Err(ApiError::bad_request(
            "invalid_header",
            format!("{CLIENT_ID_HEADER} and {REQUEST_NUMBER_HEADER} go together, and request numbers start at 1"),
        )),
    }
}

fn note_id(text: &str) -> Result<NoteId, ApiError> {
    text.parse::<u64>()
        .map(NoteId)
        .map_err(|_| ApiError::bad_request("invalid_id", format!("note ids are positive integers, not {text:?}")))
}

/// `If-Match: "3"` (also `W/"3"` or `3`); `*` asks for no particular version.
fn if_match(headers: &HeaderMap) -> Result<Option<Version>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let tag = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    tag.parse::<Version>().map(Some).map_err(|_| {
        ApiError::bad_request("invalid_header", format!("If-Match must be an ETag like \"3\", not {text}"))
    })
}

/// `If-None-Match` of a conditional `GET`: `*` or a list of entity tags.
#[derive(Clone, Debug, PartialEq, Eq)]
enum IfNoneMatch {
    Any,
    /// The versions named; tags that name no version never match.
    Versions(Vec<Version>),
}

impl IfNoneMatch {
    /// Weak comparison (RFC 9110, 13.1.2): `W/"3"` matches version 3 as `"3"` does.
    fn matches(&self, version: Version) -> bool {
        match self {
            IfNoneMatch::Any => true,
            IfNoneMatch::Versions(versions) => versions.contains(&version),
        }
    }
}

/// Every `If-None-Match` header of the request, tags separated by commas.
fn if_none_match(headers: &HeaderMap) -> Option<IfNoneMatch> {
    let mut versions = Vec::new();
    let mut present = false;
    for value in headers.get_all(header::IF_NONE_MATCH) {
        present = true;
        for tag in value.to_str().unwrap_or_default().split(',').map(str::trim).filter(|tag| !tag.is_empty()) {
            if tag == "*" {
                return Some(IfNoneMatch::Any);
            }
            let opaque = tag.strip_prefix("W/").unwrap_or(tag);
            if let Some(version) = opaque.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) {
                versions.extend(version.parse::<Version>().ok());
            }
        }
    }
    present.then_some(IfNoneMatch::Versions(versions))
}

/// 304 Not Modified: no body, the tag the client already holds.
fn not_modified(note: &Note, answer: &Answer) -> Response {
    let mut response = (StatusCode::NOT_MODIFIED, etag(note)).into_response();
    if let Freshness::PossiblyStale { applied } = answer.freshness {
        let value = HeaderValue::from_str(&format!("possibly-stale; applied={applied}")).expect("ascii");
        response.headers_mut().insert(FRESHNESS_HEADER, value);
    }
    response
}

/// The body of a write, through core's [`request_body::parse`]: the parser the
/// `http_body` fuzz target exercises. Called after every check that needs no body,
/// and refuses a wrong media type before reading, so that an early error is sent
/// without waiting for a large body (the connection discards what is left of it,
/// see [`super::serve`]).
async fn write_body(app: &AppState, headers: &HeaderMap, body: Body, kind: BodyKind) -> Result<Value, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    request_body::check_media_type(kind, content_type)?;
    let bytes = axum::body::to_bytes(body, app.request_body_bytes_max).await.map_err(|error| {
        if is_over_the_limit(&error) {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is over the limit")
        } else {
            ApiError::bad_request("bad_body", format!("cannot read the request body: {error}"))
        }
    })?;
    Ok(request_body::parse(kind, content_type, &bytes, app.note_bytes_max)?)
}

/// Whether reading a body failed because it is longer than the limit.
fn is_over_the_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

fn respond(answer: Answer, success: StatusCode) -> Result<Response, ApiError> {
    let mut response = match answer.reply {
        Reply::Note { note } => {
            let mut response = (success, etag(&note), Json(note.client_view())).into_response();
            if success == StatusCode::CREATED {
                let location = HeaderValue::from_str(&format!("/notes/{}", note.id.0)).expect("digits are a header");
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Reply::Page { page } => {
            /// Keys in sorted order, as a serde_json object would have them.
            #[derive(serde::Serialize)]
            struct PageBody<'a> {
                next_after: Option<u64>,
                notes: Vec<noted_core::store::ClientView<'a>>,
            }
            let notes = page.notes.iter().map(Note::client_view).collect();
            Json(PageBody { next_after: page.next_after.map(|id| id.0), notes }).into_response()
        }
        Reply::Deleted { .. } => StatusCode::NO_CONTENT.into_response(),
        Reply::Refused { refusal } => return Err(refusal.into()),
    };
    if let Freshness::PossiblyStale { applied } = answer.freshness {
        let value = HeaderValue::from_str(&format!("possibly-stale; applied={applied}")).expect("ascii");
        response.headers_mut().insert(FRESHNESS_HEADER, value);
    }
    Ok(response)
}

fn etag(note: &Note) -> [(header::HeaderName, HeaderValue); 1] {
    let value = HeaderValue::from_str(&format!("\"{}\"", note.version)).expect("digits are a header");
    [(header::ETAG, value)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn if_match_accepts_strong_weak_and_bare_tags() {
        assert_eq!(if_match(&headers(&[("if-match", "\"3\"")])), Ok(Some(3)));
        assert_eq!(if_match(&headers(&[("if-match", "W/\"4\"")])), Ok(Some(4)));
        assert_eq!(if_match(&headers(&[("if-match", "*")])), Ok(None));
        assert!(if_match(&headers(&[("if-match", "\"x\"")])).is_err());
    }

    #[test]
    fn if_none_match_takes_strong_and_weak_tags_lists_and_star() {
        let matches =
            |value: &str, version| if_none_match(&headers(&[("if-none-match", value)])).unwrap().matches(version);
        assert!(matches("\"3\"", 3));
        assert!(matches("W/\"3\"", 3));
        assert!(matches("\"1\", W/\"3\" ,\"9\"", 3));
        assert!(matches("*", 42));
        assert!(!matches("\"4\"", 3));
        assert!(!matches("\"x\", 3", 3), "a tag must be quoted");
        assert_eq!(if_none_match(&headers(&[])), None);
    }

    #[test]
    fn client_identity_comes_in_pairs() {
        assert_eq!(
            client_identity(&headers(&[(CLIENT_ID_HEADER, "7"), (REQUEST_NUMBER_HEADER, "2")])),
            Ok((ClientId(7), 2))
        );
        assert!(client_identity(&headers(&[(CLIENT_ID_HEADER, "7")])).is_err());
        assert_eq!(client_identity(&headers(&[])).map(|(_, number)| number), Ok(1));
    }
}
