//! The notes API: every replica accepts every request and its core routes it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
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
type Body = Result<Bytes, BytesRejection>;

pub async fn create(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let body = write_body(&app, &headers, body, BodyKind::Create)?;
        let answer = execute(&app, &headers, Operation::Create { body }, Consistency::Linearizable).await?;
        respond(answer, StatusCode::CREATED)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn list(State(app): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    let result = async {
        let Query(params) =
            params.map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
        let operation = Operation::List { after: params.after.map(NoteId), limit: params.limit };
        let answer = execute(&app, &headers, operation, params.consistency()?).await?;
        respond(answer, StatusCode::OK)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn get(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap, params: Params) -> Response {
    let result = async {
        let Query(params) =
            params.map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
        let operation = Operation::Get { id: note_id(&id)? };
        let answer = execute(&app, &headers, operation, params.consistency()?).await?;
        respond(answer, StatusCode::OK)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn replace(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let id = note_id(&id)?;
        let if_match = if_match(&headers)?;
        let body = write_body(&app, &headers, body, BodyKind::Replace)?;
        let answer =
            execute(&app, &headers, Operation::Replace { id, body, if_match }, Consistency::Linearizable).await?;
        respond(answer, StatusCode::OK)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn patch(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let id = note_id(&id)?;
        let if_match = if_match(&headers)?;
        let patch = write_body(&app, &headers, body, BodyKind::MergePatch)?;
        let answer =
            execute(&app, &headers, Operation::Patch { id, patch, if_match }, Consistency::Linearizable).await?;
        respond(answer, StatusCode::OK)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        let id = note_id(&id)?;
        let if_match = if_match(&headers)?;
        let answer = execute(&app, &headers, Operation::Delete { id, if_match }, Consistency::Linearizable).await?;
        respond(answer, StatusCode::NO_CONTENT)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// Sends the request to the replica and waits, within the request timeout, for its answer.
async fn execute(
    app: &AppState,
    headers: &HeaderMap,
    operation: Operation,
    consistency: Consistency,
) -> Result<Answer, ApiError> {
    let (client, request_number) = client_identity(headers)?;
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

/// The body of a write, through core's [`request_body::parse`]: the parser the
/// `http_body` fuzz target exercises.
fn write_body(app: &AppState, headers: &HeaderMap, body: Body, kind: BodyKind) -> Result<Value, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is over the limit")
        } else {
            ApiError::bad_request("bad_body", rejection.body_text())
        }
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    Ok(request_body::parse(kind, content_type, &bytes, app.note_bytes_max)?)
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
    fn client_identity_comes_in_pairs() {
        assert_eq!(
            client_identity(&headers(&[(CLIENT_ID_HEADER, "7"), (REQUEST_NUMBER_HEADER, "2")])),
            Ok((ClientId(7), 2))
        );
        assert!(client_identity(&headers(&[(CLIENT_ID_HEADER, "7")])).is_err());
        assert_eq!(client_identity(&headers(&[])).map(|(_, number)| number), Ok(1));
    }
}
