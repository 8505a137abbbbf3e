//! Arbitrary bytes as a data directory's superblock, log and checkpoint: `noted_core::fuzzing::disk_open`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| noted_core::fuzzing::disk_open(bytes));
