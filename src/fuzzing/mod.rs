//! Fuzz target bodies, one `pub fn <target>(data: &[u8])` each: `fuzz/fuzz_targets/<target>.rs`
//! hands them libFuzzer's inputs and `tests/fuzz_regressions.rs` replays the committed seeds and
//! found inputs through them under plain `cargo test`.
//!
//! Each must never panic on any input and checks cheap properties with `assert!` (round-trips,
//! errors that do not depend on secret values), so a broken property is a crash to libFuzzer.
//! Inputs are a flag byte and NUL-separated fields (see each target), so seeds stay readable.

mod extract;
mod kms_response;
mod request;
mod schedule;
mod signature;
mod template;

pub use extract::extract;
pub use kms_response::kms_response;
pub use request::request;
pub use schedule::schedule;
pub use signature::signature;
pub use template::template;

/// A target body.
pub type Target = fn(&[u8]);

/// Every target by name, for the regression replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("extract", extract),
    ("kms_response", kms_response),
    ("request", request),
    ("schedule", schedule),
    ("signature", signature),
    ("template", template),
];

/// The first byte (flags) and the NUL-separated fields after it; missing fields are empty.
fn split(data: &[u8], fields: usize) -> (u8, Vec<&[u8]>) {
    let Some((&flags, rest)) = data.split_first() else {
        return (0, vec![&[][..]; fields]);
    };
    let mut out: Vec<&[u8]> = rest.splitn(fields, |b| *b == 0).collect();
    out.resize(fields, &[]);
    (flags, out)
}

/// A field as text (invalid UTF-8 replaced), as an HTTP stack or the apiserver would hand it on.
fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field).into_owned()
}
