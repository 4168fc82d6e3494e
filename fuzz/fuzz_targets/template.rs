//! libFuzzer entry for `kmsync::fuzzing::template` (inputs and properties are documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsync::fuzzing::template(data));
