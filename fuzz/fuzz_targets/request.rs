//! libFuzzer entry for `kmsync::fuzzing::request` (inputs and properties are documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsync::fuzzing::request(data));
