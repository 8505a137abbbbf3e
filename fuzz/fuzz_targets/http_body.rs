//! Request bodies and merge patches through the server's parser, the note store and
//! peer frames: `noted_core::fuzzing::http_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| noted_core::fuzzing::http_body(bytes));
