//! Rotation driven by `spec.rotation`: kmsync produces new versions of the KMS secret, the single-
//! call way (`Immediate`) or the staged multi-call way (`Staged`: put pending → register → verify
//! → promote → clean). The planner is pure; the driver performs one step per reconcile and records
//! it in status, so a crash resumes from what KMS and status say.

pub mod plan;
pub mod postgres;
pub mod schedule;
pub mod template;
