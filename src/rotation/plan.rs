//! The rotation planner: a pure function from (spec, recorded progress, what KMS shows, now,
//! triggers) to the one next step. Because it trusts KMS for what happened and status only for
//! what was intended, a crash anywhere resumes without a second pending version, and the end state
//! is always "old current, nothing pending" or "new current, old previous".

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::crd::rotation::{RotationSpec, RotationStatus, RotationStrategy};
use crate::rotation::schedule;

pub const CURRENT: &str = "ACSCurrent";
/// Default label of a version in flight.
pub const DEFAULT_PENDING_STAGE: &str = "KmsyncPending";

/// Progress recorded in `status.rotation.phase`.
pub mod phase {
    pub const IDLE: &str = "Idle";
    /// A version id is reserved; it may or may not exist in KMS yet.
    pub const STARTED: &str = "Started";
    /// The new version exists in KMS (pending, or current for Immediate).
    pub const PUT: &str = "Put";
    pub const REGISTERED: &str = "Registered";
    pub const VERIFIED: &str = "Verified";
    pub const PROMOTED: &str = "Promoted";
    pub const FAILED: &str = "Failed";
}

/// One version as KMS lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionView {
    pub id: String,
    pub stages: Vec<String>,
}

/// The KMS secret as seen before deciding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KmsView {
    pub exists: bool,
    pub versions: Vec<VersionView>,
}

impl KmsView {
    pub fn stages_of(&self, id: &str) -> Option<&[String]> {
        self.versions
            .iter()
            .find(|v| v.id == id)
            .map(|v| v.stages.as_slice())
    }

    pub fn current(&self) -> Option<&str> {
        self.versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == CURRENT))
            .map(|v| v.id.as_str())
    }
}

/// Everything the planner looks at.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub spec: &'a RotationSpec,
    pub status: &'a RotationStatus,
    pub view: &'a KmsView,
    pub now: Timestamp,
    /// When the ManagedSecret was created (the schedule's origin before any rotation).
    pub created: Timestamp,
    /// Value of the `kmsync.io/rotate` annotation.
    pub trigger: Option<&'a str>,
    /// Value of the `kmsync.io/approve` annotation (manual approval).
    pub approval: Option<&'a str>,
    pub uid: &'a str,
}

/// Why nothing happens now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Next scheduled rotation.
    Scheduled,
    /// A rotation was asked for, but `minInterval` has not passed since the last one.
    MinInterval,
    /// The KMS secret does not exist and `createIfMissing` is not set.
    SecretMissing,
    /// A staged version waits for `kmsync.io/approve: <versionId>`.
    Approval,
    /// Another rotation reached the global cap; retry soon.
    Capacity,
}

/// The one next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Wait {
        until: Option<Timestamp>,
        why: Waiting,
    },
    /// `CreateSecret` with a generated value (bootstrap).
    Create {
        version_id: String,
    },
    /// Reserve the attempt's version id in status before touching KMS.
    Start {
        version_id: String,
    },
    /// Generate and `PutSecretValue` (stages: `None` = Immediate, else the pending stage).
    Put {
        version_id: String,
        stages: Option<Vec<String>>,
    },
    Register {
        version_id: String,
    },
    Verify {
        version_id: String,
    },
    /// `UpdateSecretVersionStage ACSCurrent MoveToVersion`.
    Promote {
        version_id: String,
    },
    /// Remove the pending stage from the promoted version.
    Clean {
        version_id: String,
        stage: String,
    },
    /// Record success; the sync that follows delivers the new value.
    Finish {
        version_id: String,
    },
    /// Failure before promotion: drop the pending stage (if any) and record the failure.
    Abort {
        version_id: String,
        stage: Option<String>,
    },
}

/// The deterministic version id of attempt `sequence` of this object.
pub fn version_id(uid: &str, sequence: i64) -> String {
    let digest = hex::encode(Sha256::digest(format!("{uid}:{sequence}").as_bytes()));
    format!("kmsync-r{sequence}-{}", &digest[..8])
}

pub fn pending_stage(spec: &RotationSpec) -> String {
    spec.pending_stage
        .clone()
        .unwrap_or_else(|| DEFAULT_PENDING_STAGE.to_string())
}

fn parse_time(text: &Option<String>) -> Option<Timestamp> {
    text.as_deref().and_then(|t| t.parse().ok())
}

/// Decides the next step. Errors are spec problems (bad duration or cron).
pub fn plan(inputs: &Inputs<'_>) -> Result<Step, String> {
    let status = inputs.status;
    if let Some(version_id) = status.pending_version_id.clone() {
        return Ok(resume(inputs, version_id));
    }
    let next_sequence = sequence(status) + 1;
    if !inputs.view.exists {
        return Ok(match inputs.spec.create_if_missing {
            Some(_) => Step::Create {
                version_id: version_id(inputs.uid, next_sequence),
            },
            None => Step::Wait {
                until: None,
                why: Waiting::SecretMissing,
            },
        });
    }
    let last = parse_time(&status.last_rotation_time);
    let scheduled = match status
        .next_rotation_time
        .as_ref()
        .and_then(|t| t.parse::<Timestamp>().ok())
    {
        Some(next) => next,
        None => schedule::next_scheduled(inputs.spec, last.unwrap_or(inputs.created))?,
    };
    let asked = inputs.trigger.is_some() && inputs.trigger != status.last_trigger.as_deref();
    if !asked && inputs.now < scheduled {
        return Ok(Step::Wait {
            until: Some(scheduled),
            why: Waiting::Scheduled,
        });
    }
    if let Some(earliest) = schedule::earliest_allowed(inputs.spec, last)?
        && inputs.now < earliest
    {
        return Ok(Step::Wait {
            until: Some(earliest),
            why: Waiting::MinInterval,
        });
    }
    Ok(Step::Start {
        version_id: version_id(inputs.uid, next_sequence),
    })
}

/// Rotations started so far, as recorded (the version id's sequence number).
fn sequence(status: &RotationStatus) -> i64 {
    status.sequence.unwrap_or(0)
}

/// Continues a rotation whose version id is reserved, from what KMS shows.
fn resume(inputs: &Inputs<'_>, version_id: String) -> Step {
    let spec = inputs.spec;
    let staged = spec.strategy == RotationStrategy::Staged;
    let pending = pending_stage(spec);
    let phase = inputs.status.phase.as_deref().unwrap_or(phase::STARTED);
    let Some(stages) = inputs.view.stages_of(&version_id) else {
        if phase == phase::FAILED {
            // A definite failure before anything was written (the put itself was refused, or
            // the value could not be generated): the attempt is over. Writing again would repeat
            // the refused call in a loop.
            return Step::Abort {
                version_id,
                stage: None,
            };
        }
        // Not in KMS (never written, or gone): write it, whatever status said.
        let stages = staged.then(|| vec![pending]);
        return Step::Put { version_id, stages };
    };
    if stages.iter().any(|s| s == CURRENT) {
        return if staged && stages.contains(&pending) {
            Step::Clean {
                version_id,
                stage: pending,
            }
        } else {
            Step::Finish { version_id }
        };
    }
    if !staged {
        // Immediate writes become current at once; if it is not current now, something else
        // took ACSCurrent since. The attempt is over either way.
        return Step::Finish { version_id };
    }
    if phase == phase::FAILED {
        let stage = stages.contains(&pending).then_some(pending);
        return Step::Abort { version_id, stage };
    }
    let manual = spec
        .register
        .as_ref()
        .is_some_and(|r| r.manual_approval.is_some());
    match phase {
        phase::STARTED | phase::PUT if !manual => Step::Register { version_id },
        phase::REGISTERED => Step::Verify { version_id },
        phase::VERIFIED | phase::PROMOTED => Step::Promote { version_id },
        _ if manual && inputs.approval == Some(version_id.as_str()) => Step::Promote { version_id },
        _ if manual => Step::Wait {
            until: None,
            why: Waiting::Approval,
        },
        _ => Step::Register { version_id },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> RotationSpec {
        serde_json::from_value(json).unwrap()
    }

    fn staged() -> RotationSpec {
        spec(serde_json::json!({"interval": "720h", "strategy": "Staged",
            "register": {"webhook": {"url": "https://hook.example/r", "signingSecretRef": {"name": "k"}}}}))
    }

    fn immediate() -> RotationSpec {
        spec(serde_json::json!({"interval": "720h"}))
    }

    fn view(versions: &[(&str, &[&str])]) -> KmsView {
        KmsView {
            exists: true,
            versions: versions
                .iter()
                .map(|(id, stages)| VersionView {
                    id: id.to_string(),
                    stages: stages.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn inputs<'a>(
        spec: &'a RotationSpec,
        status: &'a RotationStatus,
        view: &'a KmsView,
        now: &str,
    ) -> Inputs<'a> {
        Inputs {
            spec,
            status,
            view,
            now: at(now),
            created: at("2026-01-01T00:00:00Z"),
            trigger: None,
            approval: None,
            uid: "uid-1",
        }
    }

    fn in_flight(phase: &str) -> RotationStatus {
        RotationStatus {
            phase: Some(phase.into()),
            pending_version_id: Some("X".into()),
            sequence: Some(1),
            ..RotationStatus::default()
        }
    }

    #[test]
    fn version_ids_are_deterministic_and_distinct_per_attempt() {
        assert_eq!(version_id("uid-1", 3), version_id("uid-1", 3));
        assert_ne!(version_id("uid-1", 3), version_id("uid-1", 4));
        assert_ne!(version_id("uid-1", 3), version_id("uid-2", 3));
        assert!(
            version_id("uid-1", 3).starts_with("kmsync-r3-") && version_id("uid-1", 3).len() <= 64
        );
    }

    #[test]
    fn idle_waits_for_the_schedule_then_starts() {
        let s = immediate();
        let status = RotationStatus::default();
        let v = view(&[("v1", &["ACSCurrent"])]);
        let step = plan(&inputs(&s, &status, &v, "2026-01-10T00:00:00Z")).unwrap();
        assert_eq!(
            step,
            Step::Wait {
                until: Some(at("2026-01-31T00:00:00Z")),
                why: Waiting::Scheduled
            }
        );
        let step = plan(&inputs(&s, &status, &v, "2026-01-31T00:00:01Z")).unwrap();
        assert_eq!(
            step,
            Step::Start {
                version_id: version_id("uid-1", 1)
            }
        );
    }

    #[test]
    fn the_annotation_triggers_once_and_respects_min_interval() {
        let s = immediate();
        let v = view(&[("v1", &["ACSCurrent"])]);
        let mut status = RotationStatus::default();
        let mut i = inputs(&s, &status, &v, "2026-01-02T00:00:00Z");
        i.trigger = Some("now");
        assert!(matches!(plan(&i).unwrap(), Step::Start { .. }));

        status.last_trigger = Some("now".into());
        status.last_rotation_time = Some("2026-01-02T00:00:00Z".into());
        status.next_rotation_time = Some("2026-02-01T00:00:00Z".into());
        status.sequence = Some(1);
        let mut i = inputs(&s, &status, &v, "2026-01-02T00:05:00Z");
        i.trigger = Some("now");
        assert!(
            matches!(
                plan(&i).unwrap(),
                Step::Wait {
                    why: Waiting::Scheduled,
                    ..
                }
            ),
            "same value: no second rotation"
        );
        i.trigger = Some("again");
        assert_eq!(
            plan(&i).unwrap(),
            Step::Wait {
                until: Some(at("2026-01-02T00:10:00Z")),
                why: Waiting::MinInterval
            }
        );
        i.now = at("2026-01-02T00:10:00Z");
        assert_eq!(
            plan(&i).unwrap(),
            Step::Start {
                version_id: version_id("uid-1", 2)
            }
        );
    }

    #[test]
    fn a_missing_secret_is_created_only_when_asked() {
        let mut s = immediate();
        let status = RotationStatus::default();
        let missing = KmsView::default();
        assert_eq!(
            plan(&inputs(&s, &status, &missing, "2026-01-02T00:00:00Z")).unwrap(),
            Step::Wait {
                until: None,
                why: Waiting::SecretMissing
            }
        );
        s.create_if_missing = Some(Default::default());
        assert!(matches!(
            plan(&inputs(&s, &status, &missing, "2026-01-02T00:00:00Z")).unwrap(),
            Step::Create { .. }
        ));
    }

    #[test]
    fn immediate_resumes_from_what_kms_shows() {
        let s = immediate();
        let status = in_flight(phase::STARTED);
        let before_put = view(&[("v1", &["ACSCurrent"])]);
        assert_eq!(
            plan(&inputs(&s, &status, &before_put, "2026-02-01T00:00:00Z")).unwrap(),
            Step::Put {
                version_id: "X".into(),
                stages: None
            }
        );
        let after_put = view(&[("v1", &["ACSPrevious"]), ("X", &["ACSCurrent"])]);
        assert_eq!(
            plan(&inputs(&s, &status, &after_put, "2026-02-01T00:00:00Z")).unwrap(),
            Step::Finish {
                version_id: "X".into()
            }
        );
    }

    #[test]
    fn staged_walks_put_register_verify_promote_clean_finish() {
        let s = staged();
        let now = "2026-02-01T00:00:00Z";
        let absent = view(&[("v1", &["ACSCurrent"])]);
        let pending = view(&[("v1", &["ACSCurrent"]), ("X", &["KmsyncPending"])]);
        let promoted = view(&[
            ("v1", &["ACSPrevious"]),
            ("X", &["ACSCurrent", "KmsyncPending"]),
        ]);
        let clean = view(&[("v1", &["ACSPrevious"]), ("X", &["ACSCurrent"])]);
        let cases = [
            (
                phase::STARTED,
                &absent,
                Step::Put {
                    version_id: "X".into(),
                    stages: Some(vec!["KmsyncPending".into()]),
                },
            ),
            (
                phase::STARTED,
                &pending,
                Step::Register {
                    version_id: "X".into(),
                },
            ), // crash after put
            (
                phase::PUT,
                &pending,
                Step::Register {
                    version_id: "X".into(),
                },
            ),
            (
                phase::REGISTERED,
                &pending,
                Step::Verify {
                    version_id: "X".into(),
                },
            ),
            (
                phase::VERIFIED,
                &pending,
                Step::Promote {
                    version_id: "X".into(),
                },
            ),
            (
                phase::VERIFIED,
                &promoted,
                Step::Clean {
                    version_id: "X".into(),
                    stage: "KmsyncPending".into(),
                },
            ), // crash after promote
            (
                phase::PROMOTED,
                &promoted,
                Step::Clean {
                    version_id: "X".into(),
                    stage: "KmsyncPending".into(),
                },
            ),
            (
                phase::PROMOTED,
                &clean,
                Step::Finish {
                    version_id: "X".into(),
                },
            ),
            (
                phase::REGISTERED,
                &absent,
                Step::Put {
                    version_id: "X".into(),
                    stages: Some(vec!["KmsyncPending".into()]),
                },
            ),
        ];
        for (phase, kms, expected) in cases {
            let status = in_flight(phase);
            assert_eq!(
                plan(&inputs(&s, &status, kms, now)).unwrap(),
                expected,
                "phase {phase}"
            );
        }
    }

    #[test]
    fn a_failed_attempt_drops_its_pending_label_and_never_promotes() {
        let s = staged();
        let status = in_flight(phase::FAILED);
        let pending = view(&[("v1", &["ACSCurrent"]), ("X", &["KmsyncPending"])]);
        assert_eq!(
            plan(&inputs(&s, &status, &pending, "2026-02-01T00:00:00Z")).unwrap(),
            Step::Abort {
                version_id: "X".into(),
                stage: Some("KmsyncPending".into())
            }
        );
        let unlabeled = view(&[("v1", &["ACSCurrent"]), ("X", &[])]);
        assert_eq!(
            plan(&inputs(&s, &status, &unlabeled, "2026-02-01T00:00:00Z")).unwrap(),
            Step::Abort {
                version_id: "X".into(),
                stage: None
            }
        );
    }

    #[test]
    fn a_refused_write_ends_the_attempt_instead_of_writing_again() {
        let before_put = view(&[("v1", &["ACSCurrent"])]);
        for s in [immediate(), staged()] {
            let status = in_flight(phase::FAILED);
            assert_eq!(
                plan(&inputs(&s, &status, &before_put, "2026-02-01T00:00:00Z")).unwrap(),
                Step::Abort {
                    version_id: "X".into(),
                    stage: None
                },
                "{:?}",
                s.strategy
            );
            // Not failed (a crash or a transient error before the put): the put is retried.
            let status = in_flight(phase::STARTED);
            assert!(matches!(
                plan(&inputs(&s, &status, &before_put, "2026-02-01T00:00:00Z")).unwrap(),
                Step::Put { .. }
            ));
        }
    }

    #[test]
    fn manual_approval_waits_for_the_exact_version() {
        let s = spec(
            serde_json::json!({"interval": "720h", "strategy": "Staged", "register": {"manualApproval": {}}}),
        );
        let status = in_flight(phase::PUT);
        let pending = view(&[("v1", &["ACSCurrent"]), ("X", &["KmsyncPending"])]);
        let mut i = inputs(&s, &status, &pending, "2026-02-01T00:00:00Z");
        assert_eq!(
            plan(&i).unwrap(),
            Step::Wait {
                until: None,
                why: Waiting::Approval
            }
        );
        i.approval = Some("other");
        assert_eq!(
            plan(&i).unwrap(),
            Step::Wait {
                until: None,
                why: Waiting::Approval
            }
        );
        i.approval = Some("X");
        assert_eq!(
            plan(&i).unwrap(),
            Step::Promote {
                version_id: "X".into()
            }
        );
    }
}
