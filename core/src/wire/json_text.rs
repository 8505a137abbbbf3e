//! JSON values inside messages, for `#[serde(with = "crate::wire::json_text")]`.
//!
//! A human-readable format (JSON: server answers, traces, histories) carries the
//! value as itself, exactly as a plain field would. A compact format (the peer
//! frames' postcard) carries its compact JSON text instead: postcard records no
//! shapes, so it can only read back types whose shape the Rust type fixes, and a
//! JSON value's does not.
//!
//! Reading the text back is `serde_json::from_str`, with its limit of 128 levels of
//! nesting: far above [`crate::request_body::DEPTH_MAX`], so every body a replica
//! accepts travels, and no text can nest deep enough to exhaust the stack.

use core::fmt;
use core::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::ser::{self, Serialize, Serializer};

pub fn serialize<T, S>(value: &T, serializer: S) -> Result<S::Ok, S::Error>
where
    T: Serialize,
    S: Serializer,
{
    if serializer.is_human_readable() {
        return value.serialize(serializer);
    }
    let text = serde_json::to_string(value).map_err(ser::Error::custom)?;
    serializer.serialize_str(&text)
}

pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: DeserializeOwned,
    D: Deserializer<'de>,
{
    if deserializer.is_human_readable() {
        return T::deserialize(deserializer);
    }
    deserializer.deserialize_str(JsonTextVisitor(PhantomData))
}

struct JsonTextVisitor<T>(PhantomData<T>);

impl<T: DeserializeOwned> Visitor<'_> for JsonTextVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("the JSON text of a value")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        serde_json::from_str(text).map_err(|error| E::custom(format_args!("JSON text in a message: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::{Map, Value, json};

    #[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
    struct Carrier {
        #[serde(with = "super")]
        value: Value,
        #[serde(with = "super")]
        object: Map<String, Value>,
    }

    fn carrier(value: Value) -> Carrier {
        let object = json!({ "in": value.clone(), "z": [1, 2.5, -3] }).as_object().cloned().expect("an object");
        Carrier { value, object }
    }

    fn values() -> Vec<Value> {
        vec![
            json!(null),
            json!({ "title": "é ✓ 🎉 \u{0}\"\\", "nested": { "deeper": [[{ "a": [] }]] }, "empty": {} }),
            json!([u64::MAX, i64::MIN, 0.1, -0.0, 1e308, 5e-324, 1.0, 123_456_789.125]),
            json!("text"),
            json!(true),
        ]
    }

    #[test]
    fn json_shows_the_value_itself() {
        let json = serde_json::to_value(carrier(json!({ "a": [1] }))).expect("encodes");
        assert_eq!(json, json!({ "value": { "a": [1] }, "object": { "in": { "a": [1] }, "z": [1, 2.5, -3] } }));
        assert_eq!(serde_json::from_value::<Carrier>(json).expect("decodes"), carrier(json!({ "a": [1] })));
    }

    #[test]
    fn postcard_carries_the_text_and_reads_back_the_same_value() {
        for value in values() {
            let bytes = postcard::to_allocvec(&carrier(value.clone())).expect("encodes");
            let decoded: Carrier = postcard::from_bytes(&bytes).expect("decodes");
            assert_eq!(decoded, carrier(value.clone()));
            let Value::Array(numbers) = &decoded.value else { continue };
            // Floats come back bit for bit, not merely equal.
            let bits = |numbers: &[Value]| numbers.iter().map(|n| n.as_f64().map(f64::to_bits)).collect::<Vec<_>>();
            assert_eq!(bits(numbers), bits(value.as_array().expect("an array")));
        }
    }

    #[test]
    fn text_that_is_not_json_of_the_type_is_an_error() {
        #[derive(serde::Serialize)]
        struct Texts<'a>(&'a str, &'a str);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for (value, object) in
            [("{", "{}"), ("1", "[1]"), ("1 2", "{}"), ("1", "{\"a\":1e999}"), (deep.as_str(), "{}"), ("1", "")]
        {
            let bytes = postcard::to_allocvec(&Texts(value, object)).expect("encodes");
            assert!(postcard::from_bytes::<Carrier>(&bytes).is_err(), "{value:?} {object:?}");
        }
    }
}
