//! A cluster of any protocol under an arbitrary sequence of inputs, forged and
//! replayed messages included: `noted_core::fuzzing::replica_inputs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| noted_core::fuzzing::replica_inputs(bytes));
