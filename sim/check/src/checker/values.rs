//! Interned JSON values, so that model states are small, cheap to clone and ordered
//! (the memo of the search is an ordered set of states).

use std::collections::BTreeMap;

use serde_json::Value;

/// A JSON value's number in a [`ValueTable`]; equal numbers mean equal canonical JSON.
pub(crate) type ValueId = u32;

/// Values numbered by their canonical text. `serde_json`'s maps are ordered by key (the
/// `preserve_order` feature is off in this workspace), so the text is canonical: two values
/// get the same number exactly when they are equal as JSON.
#[derive(Debug, Default)]
pub(crate) struct ValueTable {
    id_by_text: BTreeMap<String, ValueId>,
    values: Vec<Value>,
}

impl ValueTable {
    pub(crate) fn intern(&mut self, value: &Value) -> ValueId {
        let text = value.to_string();
        if let Some(&id) = self.id_by_text.get(&text) {
            return id;
        }
        let id = ValueId::try_from(self.values.len()).expect("fewer than 2^32 distinct values in one history");
        self.values.push(value.clone());
        self.id_by_text.insert(text, id);
        id
    }

    pub(crate) fn get(&self, id: ValueId) -> &Value {
        &self.values[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_does_not_matter() {
        let mut table = ValueTable::default();
        let first: Value = serde_json::from_str(r#"{"a":1,"b":{"c":2,"d":3}}"#).expect("json");
        let second: Value = serde_json::from_str(r#"{"b":{"d":3,"c":2},"a":1}"#).expect("json");
        assert_eq!(table.intern(&first), table.intern(&second));
        assert_ne!(table.intern(&first), table.intern(&Value::Null));
    }
}
