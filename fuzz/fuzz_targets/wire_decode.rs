//! Arbitrary bytes into the peer frame decoder: `noted_core::fuzzing::wire_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| noted_core::fuzzing::wire_decode(bytes));
