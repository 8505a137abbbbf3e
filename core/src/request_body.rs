//! The bodies of write requests as clients send them: the one parser the server
//! runs on every create, replace and merge-patch body, and the one the `http_body`
//! fuzz target feeds.
//!
//! Each refusal is its own [`BodyError`]: a media type the operation does not take,
//! bytes that are not UTF-8, nesting deeper than [`DEPTH_MAX`], JSON that does not
//! parse, a number no note can hold exactly, anything but an object, and an object
//! over the note size limit once compacted (as the store counts it, without the
//! metadata keys). An accepted body therefore fits in a
//! peer frame and decodes on every replica.

use std::collections::BTreeMap;

use serde_json::Value;
use thiserror::Error;

use crate::store::METADATA_KEYS;

pub const JSON_MEDIA_TYPE: &str = "application/json";
pub const MERGE_PATCH_MEDIA_TYPE: &str = "application/merge-patch+json";

/// Deepest nesting of arrays and objects in a body; the object itself is level 1.
/// Peer frames carry bodies as JSON text and serde_json refuses text nested over
/// 128 levels, so a body must stay well below that for every replica to decode the
/// frames that carry it.
pub const DEPTH_MAX: usize = 32;

/// Longest number literal quoted back in an error message.
const LITERAL_QUOTED_MAX: usize = 40;

/// Which write a body is for: each takes its own media types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Create,
    Replace,
    /// RFC 7396; plain `application/json` is taken too.
    MergePatch,
}

impl BodyKind {
    pub fn media_types(self) -> &'static [&'static str] {
        match self {
            BodyKind::Create | BodyKind::Replace => &[JSON_MEDIA_TYPE],
            BodyKind::MergePatch => &[MERGE_PATCH_MEDIA_TYPE, JSON_MEDIA_TYPE],
        }
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("Content-Type must be {}", accepted.join(" or "))]
    UnsupportedMediaType { accepted: &'static [&'static str] },
    #[error("the body is not UTF-8: invalid bytes at offset {offset}")]
    NotUtf8 { offset: usize },
    #[error("the body nests arrays and objects deeper than {DEPTH_MAX} levels")]
    TooDeep,
    #[error("the body is not JSON: {reason}")]
    Malformed { reason: String },
    #[error(
        "the number {literal} cannot be stored exactly: integers must fit in 64 bits and other numbers in a \
         double; send it as a string"
    )]
    NumberOutOfRange { literal: String },
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("the note is {size} bytes as compact JSON (without metadata), over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl BodyError {
    /// A stable name for clients and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::UnsupportedMediaType { .. } => "unsupported_media_type",
            BodyError::NotUtf8 { .. } => "invalid_utf8",
            BodyError::TooDeep => "too_deep",
            BodyError::Malformed { .. } => "malformed_json",
            BodyError::NumberOutOfRange { .. } => "number_out_of_range",
            BodyError::NotAnObject => "not_an_object",
            BodyError::TooLarge { .. } => "payload_too_large",
        }
    }
}

/// Whether a `kind` write may be sent with the `Content-Type` header `content_type`:
/// a server can refuse a body of the wrong type before it reads it.
pub fn check_media_type(kind: BodyKind, content_type: Option<&str>) -> Result<(), BodyError> {
    let accepted = kind.media_types();
    if content_type.map(media_type).is_some_and(|media_type| accepted.contains(&media_type.as_str())) {
        Ok(())
    } else {
        Err(BodyError::UnsupportedMediaType { accepted })
    }
}

/// Parses the body of a `kind` write sent with the `Content-Type` header
/// `content_type`, refusing objects over `bytes_max` bytes of compact JSON.
pub fn parse(kind: BodyKind, content_type: Option<&str>, bytes: &[u8], bytes_max: usize) -> Result<Value, BodyError> {
    check_media_type(kind, content_type)?;
    let text = std::str::from_utf8(bytes).map_err(|error| BodyError::NotUtf8 { offset: error.valid_up_to() })?;
    // Scanned before parsing, so that nesting is refused before serde_json recurses
    // into it, and so that the literal of a number is still at hand.
    scan_tokens(text)?;
    let value: Value =
        serde_json::from_str(text).map_err(|error| BodyError::Malformed { reason: error.to_string() })?;
    if !value.is_object() {
        return Err(BodyError::NotAnObject);
    }
    let size = body_size(&value);
    if size > bytes_max {
        return Err(BodyError::TooLarge { size, limit: bytes_max });
    }
    Ok(value)
}

/// The media type of a `Content-Type` value, without parameters, in lower case.
fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Bytes of an object as compact JSON, without the metadata keys the store sets:
/// a note read back and sent again, metadata and all, counts as the store counts it.
fn body_size(value: &Value) -> usize {
    let Value::Object(members) = value else { return compact_size(value) };
    let body: BTreeMap<&String, &Value> =
        members.iter().filter(|(key, _)| !METADATA_KEYS.contains(&key.as_str())).collect();
    compact_size(&body)
}

/// Bytes of `value` as compact JSON, counted as they are written rather than collected:
/// the store measures every body it executes.
pub fn compact_size<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, value).map_or(usize::MAX, |()| counter.0)
}

/// A writer that keeps only the number of bytes written to it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Levels of arrays and objects in `value`: 0 for a scalar, 1 for `{}`.
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// One pass over the text outside strings: refuses nesting deeper than
/// [`DEPTH_MAX`] and number literals that a note cannot hold exactly. Anything else
/// wrong with the text is left for the JSON parser to name.
fn scan_tokens(text: &str) -> Result<(), BodyError> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > DEPTH_MAX {
                    return Err(BodyError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let end = bytes[index..]
                    .iter()
                    .position(|byte| !matches!(byte, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(bytes.len(), |length| index + length);
                check_number(&text[index..end])?;
                index = end;
                continue;
            }
            _ => {}
        }
        index += 1;
    }
    Ok(())
}

/// Refuses a well-formed JSON number literal that would not be stored as written:
/// an integer outside `i64`/`u64`, or a number beyond the range of a double.
fn check_number(literal: &str) -> Result<(), BodyError> {
    if !is_json_number(literal) {
        return Ok(());
    }
    let is_integer = !literal.contains(['.', 'e', 'E']);
    let exact = if is_integer {
        literal.parse::<i64>().is_ok() || literal.parse::<u64>().is_ok()
    } else {
        literal.parse::<f64>().is_ok_and(f64::is_finite)
    };
    if exact {
        return Ok(());
    }
    let mut quoted: String = literal.chars().take(LITERAL_QUOTED_MAX).collect();
    if literal.len() > LITERAL_QUOTED_MAX {
        quoted.push_str("...");
    }
    Err(BodyError::NumberOutOfRange { literal: quoted })
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, as RFC 8259 section 6 has it.
fn is_json_number(literal: &str) -> bool {
    fn digits(text: &str) -> (usize, &str) {
        let count = text.bytes().take_while(u8::is_ascii_digit).count();
        (count, &text[count..])
    }
    let rest = literal.strip_prefix('-').unwrap_or(literal);
    let (count, rest) = digits(rest);
    if count == 0 || (count > 1 && literal.trim_start_matches('-').starts_with('0')) {
        return false;
    }
    let rest = match rest.strip_prefix('.') {
        Some(fraction) => match digits(fraction) {
            (0, _) => return false,
            (_, rest) => rest,
        },
        None => rest,
    };
    let rest = match rest.strip_prefix(['e', 'E']) {
        Some(exponent) => match digits(exponent.strip_prefix(['+', '-']).unwrap_or(exponent)) {
            (0, _) => return false,
            (_, rest) => rest,
        },
        None => rest,
    };
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LIMIT: usize = 1024;

    fn create(body: &[u8]) -> Result<Value, BodyError> {
        parse(BodyKind::Create, Some("application/json"), body, LIMIT)
    }

    fn code(body: &[u8]) -> &'static str {
        create(body).expect_err("refused").code()
    }

    #[test]
    fn an_object_is_accepted_whatever_its_media_type_parameters() {
        let parsed = parse(BodyKind::Create, Some("Application/JSON; charset=utf-8"), br#"{"a":[1,2.5,null]}"#, LIMIT);
        assert_eq!(parsed, Ok(json!({"a": [1, 2.5, null]})));
    }

    #[test]
    fn merge_patches_take_both_media_types_and_other_writes_only_json() {
        let body = br#"{"a":null}"#;
        assert!(parse(BodyKind::MergePatch, Some(MERGE_PATCH_MEDIA_TYPE), body, LIMIT).is_ok());
        assert!(parse(BodyKind::MergePatch, Some(JSON_MEDIA_TYPE), body, LIMIT).is_ok());
        for content_type in [Some(MERGE_PATCH_MEDIA_TYPE), Some("text/plain"), Some(""), None] {
            let refused = parse(BodyKind::Replace, content_type, body, LIMIT).expect_err("refused");
            assert_eq!(refused.code(), "unsupported_media_type", "{content_type:?}");
            assert_eq!(refused.to_string(), "Content-Type must be application/json");
        }
    }

    #[test]
    fn each_kind_of_bad_body_has_its_own_code() {
        assert_eq!(code(b"{\"a\":\"\xff\"}"), "invalid_utf8");
        assert_eq!(code(b"{\"a\":"), "malformed_json");
        assert_eq!(code(b"[1]"), "not_an_object");
        assert_eq!(code(b"\"text\""), "not_an_object");
        let large = format!("{{\"a\":\"{}\"}}", "x".repeat(LIMIT));
        assert_eq!(code(large.as_bytes()), "payload_too_large");
    }

    #[test]
    fn the_size_limit_counts_compact_json_without_metadata() {
        let padded = format!("{{\"a\":1{}}}", " ".repeat(2 * LIMIT));
        assert_eq!(create(padded.as_bytes()), Ok(json!({"a": 1})));
        let filler = "x".repeat(LIMIT - 8);
        let echoed = json!({ "a": filler, "id": 1, "version": 1, "created_at": "2026-01-01T00:00:00Z" });
        assert!(compact_size(&echoed) > LIMIT);
        assert!(create(echoed.to_string().as_bytes()).is_ok(), "a note read back can be sent again");
    }

    #[test]
    fn the_counted_size_is_the_length_of_the_compact_encoding() {
        let value = json!({ "title": "caf\u{e9} \"quoted\"", "tags": [1, 2.5, null, true], "nested": { "a": {} } });
        assert_eq!(compact_size(&value), serde_json::to_vec(&value).expect("a value encodes").len());
    }

    #[test]
    fn nesting_is_refused_before_it_is_parsed() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(DEPTH_MAX - 1), "]".repeat(DEPTH_MAX - 1));
        assert_eq!(create(deep.as_bytes()).map(|value| depth(&value)), Ok(DEPTH_MAX));
        let deeper = format!("{{\"a\":{}{}}}", "[".repeat(DEPTH_MAX), "]".repeat(DEPTH_MAX));
        assert_eq!(code(deeper.as_bytes()), "too_deep");
        assert_eq!(code("[".repeat(100_000).as_bytes()), "too_deep");
        let in_a_string = format!("{{\"a\":\"{}\"}}", "[".repeat(100));
        assert!(create(in_a_string.as_bytes()).is_ok(), "brackets in strings are text");
        assert!(create(br#"{"a":"\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}"#).is_ok(), "escaped quotes");
    }

    #[test]
    fn numbers_a_note_cannot_hold_exactly_are_refused() {
        for body in [
            "{\"a\":1e999999}".to_string(),
            "{\"a\":-1e400}".to_string(),
            "{\"a\":18446744073709551616}".to_string(),
            "{\"a\":-9223372036854775809}".to_string(),
            format!("{{\"a\":{}}}", "9".repeat(100)),
        ] {
            let refused = create(body.as_bytes()).expect_err(&body);
            assert_eq!(refused.code(), "number_out_of_range", "{body}");
            assert!(refused.to_string().len() < 200, "the literal is quoted briefly: {refused}");
        }
        for body in ["{\"a\":18446744073709551615}", "{\"a\":-9223372036854775808}", "{\"a\":1e308,\"b\":1e-999}"] {
            assert!(create(body.as_bytes()).is_ok(), "{body}");
        }
        assert_eq!(code(b"{\"a\":01}"), "malformed_json", "not a JSON number: the parser names it");
        assert!(create(br#"{"99999999999999999999999":"digits in a key"}"#).is_ok());
    }

    #[test]
    fn json_numbers_follow_the_rfc_grammar() {
        for good in ["0", "-0", "12", "1.5", "-1.5e10", "1E+2", "0.0e-0"] {
            assert!(is_json_number(good), "{good}");
        }
        for bad in ["-", "01", "1.", ".5", "1e", "1e+", "--1", "1-2", "+1", "1.2.3"] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn depth_counts_levels_of_arrays_and_objects() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [[], {"b": [1]}]})), 4);
    }
}
