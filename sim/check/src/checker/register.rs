//! The `cas-register` model: one register holding a JSON value or nothing.
//!
//! `read` -> `{value}` (null = no value), `write {value}`, `cas {from, to}` -> `{ok}`.
//! The initial value is the header's `init` (absent = no value). No value and JSON
//! null are the same thing, as a read cannot tell them apart.

use serde_json::Value;

use super::search::{Model, fingerprint_of};
use super::values::{ValueId, ValueTable};
use super::{CheckError, PreparedOperations, base_operation};
use crate::history::{Operation, Outcome};

#[derive(Debug, Clone)]
pub(crate) enum RegisterCall {
    Read,
    Write { value: ValueId },
    CompareAndSet { from: ValueId, to: ValueId },
}

/// What the completion revealed; `Anything` when nothing (unknown outcome, or no `out`).
#[derive(Debug, Clone)]
pub(crate) enum RegisterObservation {
    Anything,
    Value(ValueId),
    CompareAndSetSucceeded(bool),
}

#[derive(Debug, Clone)]
pub(crate) struct RegisterOperation {
    call: RegisterCall,
    observation: RegisterObservation,
}

#[derive(Debug)]
pub(crate) struct RegisterModel {
    initial_value: ValueId,
}

/// Keys of register states, a domain of their own.
const REGISTER_DOMAIN: u64 = 0x7265_6769_7374_6572;

impl Model for RegisterModel {
    type State = ValueId;
    type Operation = RegisterOperation;
    /// The value before the step.
    type Undo = ValueId;

    fn initial_state(&self) -> ValueId {
        self.initial_value
    }

    fn fingerprint(&self, state: &ValueId) -> u128 {
        fingerprint_of(REGISTER_DOMAIN, &[u64::from(*state)])
    }

    fn step(&mut self, state: &mut ValueId, operation: &RegisterOperation) -> Option<ValueId> {
        let before = *state;
        let after = match (&operation.call, &operation.observation) {
            (RegisterCall::Read, RegisterObservation::Value(value)) => (*value == before).then_some(before)?,
            (RegisterCall::Read, _) => before,
            (RegisterCall::Write { value }, _) => *value,
            (RegisterCall::CompareAndSet { from, to }, observation) => {
                let succeeds = *from == before;
                match observation {
                    RegisterObservation::CompareAndSetSucceeded(observed) if *observed != succeeds => return None,
                    _ if succeeds => *to,
                    _ => before,
                }
            }
        };
        *state = after;
        Some(before)
    }

    fn undo(&mut self, state: &mut ValueId, before: ValueId) {
        *state = before;
    }

    fn never_changes_state(&self, operation: &RegisterOperation) -> bool {
        matches!(
            (&operation.call, &operation.observation),
            (RegisterCall::Read, _)
                | (RegisterCall::CompareAndSet { .. }, RegisterObservation::CompareAndSetSucceeded(false))
        )
    }

    fn may_observe(&self, observer: &RegisterOperation, _unknown: &RegisterOperation) -> bool {
        // One object: any observed output may depend on any write.
        !matches!(observer.observation, RegisterObservation::Anything)
    }

    fn conflicts(&self, _unknown: &RegisterOperation, _next: &RegisterOperation) -> bool {
        true
    }
}

fn field<'a>(operation: &Operation, value: &'a Value, name: &str) -> Result<&'a Value, CheckError> {
    value.get(name).ok_or_else(|| CheckError::operation(operation, format!("the input has no {name:?}")))
}

/// Turns the history's operations into the model and its search operations.
pub(crate) fn prepare(
    operations: &[Operation],
    initial_value: Option<&Value>,
) -> Result<PreparedOperations<RegisterModel>, CheckError> {
    let mut values = ValueTable::default();
    let model = RegisterModel { initial_value: values.intern(initial_value.unwrap_or(&Value::Null)) };
    let mut prepared = Vec::new();
    for operation in operations {
        let call = match operation.function.as_str() {
            "read" => RegisterCall::Read,
            "write" => RegisterCall::Write { value: values.intern(field(operation, &operation.input, "value")?) },
            "cas" => RegisterCall::CompareAndSet {
                from: values.intern(field(operation, &operation.input, "from")?),
                to: values.intern(field(operation, &operation.input, "to")?),
            },
            other => return Err(CheckError::operation(operation, format!("cas-register has no function {other:?}"))),
        };
        let observation = match (&operation.outcome, &call) {
            // A failed operation had no effect, and an unknown read constrains nothing.
            (Outcome::Failed, _) | (Outcome::Unknown, RegisterCall::Read) => continue,
            (Outcome::Unknown, _) => RegisterObservation::Anything,
            (Outcome::Ok(output), RegisterCall::Read) => match output.get("value") {
                Some(value) => RegisterObservation::Value(values.intern(value)),
                None => RegisterObservation::Anything,
            },
            (Outcome::Ok(_), RegisterCall::Write { .. }) => RegisterObservation::Anything,
            (Outcome::Ok(output), RegisterCall::CompareAndSet { .. }) => match output.get("ok") {
                Some(Value::Bool(succeeded)) => RegisterObservation::CompareAndSetSucceeded(*succeeded),
                Some(_) => return Err(CheckError::operation(operation, "a cas output's \"ok\" must be a boolean")),
                None => RegisterObservation::Anything,
            },
        };
        prepared.push(base_operation(operation, RegisterOperation { call, observation }));
    }
    Ok(PreparedOperations { model, operations: prepared })
}
