//! Drives a ManagedSecret's rotation: asks the planner for the next step, performs it (KMS calls,
//! register/verify back-ends), records it in status, and repeats until the rotation finishes or
//! has to wait. Status is written after every step with the full object (all kmsync status writes
//! share one field manager), so a crash anywhere resumes from what KMS and status say.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::StepError;
use super::plan::{self, CURRENT, Inputs, Step, Waiting};
use super::{schedule, template, webhook};
use crate::controller::error::Error;
use crate::controller::reconcile::{self, Context};
use crate::controller::source::SecretSource;
use crate::crd::conditions::{self, types};
use crate::crd::rotation::{RotationSpec, RotationStatus, RotationStrategy};
use crate::crd::{ManagedSecret, ManagedSecretStatus};
use crate::kms::SecretString;
use crate::render::VersionSelector;

/// Annotation whose changed value asks for one rotation.
pub const ANNOTATION_ROTATE: &str = "kmsync.io/rotate";
/// Annotation approving promotion of exactly this pending version (`manualApproval`).
pub const ANNOTATION_APPROVE: &str = "kmsync.io/approve";
/// Steps performed in one reconcile at most (a whole staged rotation takes seven).
const MAX_STEPS: usize = 12;

/// What the rotation needs from the sync that follows.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing in flight; check again no later than `next`.
    Idle { next: Option<Timestamp> },
    /// A rotation finished now: the sync must read KMS fresh.
    Finished,
    /// In flight, waiting (approval, capacity, or a transient failure); check again after `retry`.
    Waiting { retry: std::time::Duration },
}

/// Exits the process at a named point when `KMSYNC_CRASH_AT` says so; the rotation crash tests
/// kill the operator at every step boundary this way.
fn crash_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("KMSYNC_CRASH_AT").ok())
        .as_deref()
        == Some(name)
    {
        eprintln!("kmsync: crash point {name} reached (KMSYNC_CRASH_AT)");
        std::process::abort();
    }
}

fn set_condition(
    status: &mut ManagedSecretStatus,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    let condition: Condition =
        conditions::condition(types::ROTATION, ok, reason, message, generation);
    conditions::upsert(&mut status.conditions, condition, now);
}

/// One rotation of `ms` as far as it can go now.
pub async fn drive(
    ctx: &Context,
    ms: &ManagedSecret,
    spec: &RotationSpec,
    source: &Arc<dyn SecretSource>,
    status: &mut ManagedSecretStatus,
    persisted: &mut Option<ManagedSecretStatus>,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let uid = ms.uid().unwrap_or_default();
    let created = ms.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    for _ in 0..MAX_STEPS {
        let view = match source.list_versions(&ms.spec.secret_name).await {
            Ok(view) => view,
            Err(error) => {
                return retry_later(
                    ctx,
                    ms,
                    status,
                    persisted,
                    StepError::from_source("inspect", error),
                    now,
                )
                .await;
            }
        };
        let rotation = status.rotation.clone().unwrap_or_default();
        let inputs = Inputs {
            spec,
            status: &rotation,
            view: &view,
            now,
            created,
            trigger: ms.annotations().get(ANNOTATION_ROTATE).map(String::as_str),
            approval: ms.annotations().get(ANNOTATION_APPROVE).map(String::as_str),
            uid: &uid,
        };
        let step = plan::plan(&inputs).map_err(Error::InvalidSpec)?;
        tracing::debug!(managed_secret = %ms.name_any(), ?step, "rotation step");
        match perform(ctx, ms, spec, source, status, &step, now).await {
            Ok(Some(outcome)) => {
                reconcile::persist_status(ctx, ms, status, persisted).await?;
                return Ok(outcome);
            }
            Ok(None) => reconcile::persist_status(ctx, ms, status, persisted).await?,
            Err(error) if error.transient => {
                return retry_later(ctx, ms, status, persisted, error, now).await;
            }
            Err(error) => {
                let in_flight = status
                    .rotation
                    .as_ref()
                    .is_some_and(|r| r.pending_version_id.is_some());
                fail_attempt(ctx, ms, status, persisted, error, now).await?;
                if !in_flight {
                    // Nothing was reserved (bootstrap or generation failed): back off instead of
                    // planning the same failing step again.
                    return back_off_after_failure(ctx, ms, status, persisted, now).await;
                }
            }
        }
    }
    Ok(Outcome::Waiting {
        retry: std::time::Duration::from_secs(1),
    })
}

/// A step that may work later: the attempt stays as it is.
async fn retry_later(
    ctx: &Context,
    ms: &ManagedSecret,
    status: &mut ManagedSecretStatus,
    persisted: &mut Option<ManagedSecretStatus>,
    error: StepError,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let in_flight = status
        .rotation
        .as_ref()
        .is_some_and(|r| r.pending_version_id.is_some());
    if in_flight {
        set_condition(
            status,
            true,
            "Rotating",
            format!("retrying step {error} ({})", error.reason),
            ms.metadata.generation,
            now,
        );
        reconcile::persist_status(ctx, ms, status, persisted).await?;
    }
    tracing::info!(managed_secret = %ms.name_any(), step = error.step, reason = error.reason, "rotation step will be retried");
    let uid = ms.uid().unwrap_or_default();
    let failures = status.rotation.as_ref().map_or(0, |r| r.attempts).max(0) as u32 + 1;
    Ok(Outcome::Waiting {
        retry: crate::controller::schedule::backoff(
            &uid,
            failures,
            ctx.settings.backoff_base,
            ctx.settings.backoff_max,
        ),
    })
}

/// A definite failure before promotion: record it; the next plan aborts the attempt.
async fn fail_attempt(
    ctx: &Context,
    ms: &ManagedSecret,
    status: &mut ManagedSecretStatus,
    persisted: &mut Option<ManagedSecretStatus>,
    error: StepError,
    now: Timestamp,
) -> Result<(), Error> {
    let rotation = status.rotation.get_or_insert_with(RotationStatus::default);
    rotation.phase = Some(plan::phase::FAILED.into());
    rotation.failed_step = Some(error.step.to_string());
    rotation.attempts += 1;
    set_condition(
        status,
        false,
        "RotationFailed",
        format!("step {error} ({})", error.reason),
        ms.metadata.generation,
        now,
    );
    reconcile::publish(
        ctx,
        ms,
        EventType::Warning,
        "RotationFailed",
        format!("step {error}"),
    )
    .await;
    reconcile::persist_status(ctx, ms, status, persisted).await
}

/// When a failed rotation is tried again: one minute, doubling per failed attempt up to an hour,
/// jittered per object.
fn next_attempt(uid: &str, attempts: i32, now: Timestamp) -> Timestamp {
    let failures = attempts.max(1) as u32;
    let retry = crate::controller::schedule::backoff(
        uid,
        failures,
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(3600),
    );
    now.checked_add(jiff::SignedDuration::try_from(retry).unwrap_or_default())
        .unwrap_or(now)
}

/// After a failure with no attempt in flight: the next try waits for the backoff.
async fn back_off_after_failure(
    ctx: &Context,
    ms: &ManagedSecret,
    status: &mut ManagedSecretStatus,
    persisted: &mut Option<ManagedSecretStatus>,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let uid = ms.uid().unwrap_or_default();
    let rotation = status.rotation.get_or_insert_with(RotationStatus::default);
    rotation.phase = Some(plan::phase::IDLE.into());
    let next = next_attempt(&uid, rotation.attempts, now);
    rotation.next_rotation_time = Some(next.to_string());
    reconcile::persist_status(ctx, ms, status, persisted).await?;
    Ok(Outcome::Idle { next: Some(next) })
}

/// Performs `step`. `Ok(Some(_))` ends this drive; `Ok(None)` asks for the next step.
async fn perform(
    ctx: &Context,
    ms: &ManagedSecret,
    spec: &RotationSpec,
    source: &Arc<dyn SecretSource>,
    status: &mut ManagedSecretStatus,
    step: &Step,
    now: Timestamp,
) -> Result<Option<Outcome>, StepError> {
    let name = ms.spec.secret_name.as_str();
    let generation = ms.metadata.generation;
    let kms = |step: &'static str| move |error| StepError::from_source(step, error);
    let rotation = status
        .rotation
        .get_or_insert_with(RotationStatus::default)
        .clone();
    match step {
        Step::Wait { until, why } => {
            let (ok, reason, message) = match why {
                Waiting::Scheduled => (
                    true,
                    "RotationScheduled",
                    format!(
                        "next rotation at {}",
                        until.map_or("-".into(), |t| t.to_string())
                    ),
                ),
                Waiting::MinInterval => (
                    true,
                    "RotationScheduled",
                    format!(
                        "rotation asked for; minInterval allows it at {}",
                        until.map_or("-".into(), |t| t.to_string())
                    ),
                ),
                Waiting::SecretMissing => (
                    false,
                    "SecretNotFound",
                    format!(
                        "KMS secret {name} does not exist (set rotation.createIfMissing to create it)"
                    ),
                ),
                Waiting::Approval => (
                    true,
                    "AwaitingApproval",
                    format!(
                        "version {} waits for annotation {ANNOTATION_APPROVE}={}",
                        rotation.pending_version_id.clone().unwrap_or_default(),
                        rotation.pending_version_id.clone().unwrap_or_default()
                    ),
                ),
                Waiting::Capacity => (
                    true,
                    "RotationScheduled",
                    "waiting for another rotation to finish".into(),
                ),
            };
            if *why == Waiting::Scheduled {
                status
                    .rotation
                    .get_or_insert_with(RotationStatus::default)
                    .next_rotation_time = until.map(|t| t.to_string());
            }
            // Idle between rotations: the outcome of the last one stays what the condition says.
            let last_outcome =
                conditions::find(&status.conditions, types::ROTATION).is_some_and(|c| {
                    matches!(
                        c.reason.as_str(),
                        "RotationSucceeded" | "RotationFailed" | "SecretCreated"
                    )
                });
            if !(*why == Waiting::Scheduled && last_outcome) {
                set_condition(status, ok, reason, message, generation, now);
            }
            return Ok(Some(match why {
                Waiting::Approval => Outcome::Waiting {
                    retry: std::time::Duration::from_secs(300),
                },
                Waiting::Capacity => Outcome::Waiting {
                    retry: std::time::Duration::from_secs(5),
                },
                _ => Outcome::Idle { next: *until },
            }));
        }
        Step::Create { version_id } => {
            let value = generate(source, spec, None).await?;
            let bootstrap = spec.create_if_missing.clone().unwrap_or_default();
            crash_point("create:before");
            source
                .create_secret(name, version_id, value, &bootstrap)
                .await
                .map_err(kms("create"))?;
            crash_point("create:after");
            let rotation = status.rotation.get_or_insert_with(RotationStatus::default);
            rotation.sequence = Some(sequence_of(version_id));
            // Creation is not a rotation: minInterval does not hold back the first one.
            rotation.last_rotation_time = None;
            rotation.next_rotation_time = schedule::next_scheduled(spec, now)
                .ok()
                .map(|t| t.to_string());
            rotation.phase = Some(plan::phase::IDLE.into());
            set_condition(
                status,
                true,
                "SecretCreated",
                format!("created KMS secret {name} with version {version_id}"),
                generation,
                now,
            );
            reconcile::publish(
                ctx,
                ms,
                EventType::Normal,
                "SecretCreated",
                format!("KMS secret {name} created with version {version_id}"),
            )
            .await;
        }
        Step::Start { version_id } => {
            if !ctx.begin_rotation(&ms.uid().unwrap_or_default()) {
                return perform_wait_capacity(status, generation, now);
            }
            let rotation = status.rotation.get_or_insert_with(RotationStatus::default);
            rotation.sequence = Some(sequence_of(version_id));
            rotation.pending_version_id = Some(version_id.clone());
            rotation.phase = Some(plan::phase::STARTED.into());
            rotation.failed_step = None;
            if let Some(trigger) = ms.annotations().get(ANNOTATION_ROTATE) {
                rotation.last_trigger = Some(trigger.clone());
            }
            set_condition(
                status,
                true,
                "Rotating",
                format!("rotation to version {version_id} started"),
                generation,
                now,
            );
            reconcile::publish(
                ctx,
                ms,
                EventType::Normal,
                "RotationStarted",
                format!("rotating KMS secret {name} to version {version_id}"),
            )
            .await;
        }
        Step::Put { version_id, stages } => {
            ctx.begin_rotation(&ms.uid().unwrap_or_default());
            let current = if spec
                .generate
                .template
                .as_deref()
                .is_some_and(|t| t.contains("current."))
            {
                let read = source
                    .get_secret_value(name, &VersionSelector::Stage(CURRENT.into()))
                    .await
                    .map_err(kms("generate"))?;
                Some(read.data)
            } else {
                None
            };
            let value = generate(source, spec, current.as_deref()).await?;
            crash_point("put:before");
            source
                .put_value(name, version_id, value, stages.clone())
                .await
                .map_err(kms("put"))?;
            crash_point("put:after");
            status
                .rotation
                .get_or_insert_with(RotationStatus::default)
                .phase = Some(plan::phase::PUT.into());
            let what = if stages.is_some() {
                "as pending"
            } else {
                "as ACSCurrent"
            };
            reconcile::publish(
                ctx,
                ms,
                EventType::Normal,
                "VersionPut",
                format!("version {version_id} stored {what}"),
            )
            .await;
        }
        Step::Register { version_id } | Step::Verify { version_id } => {
            let verify = matches!(step, Step::Verify { .. });
            let step_name: &'static str = if verify { "verify" } else { "register" };
            let pending = source
                .get_secret_value(name, &VersionSelector::Id(version_id.clone()))
                .await
                .map_err(kms(step_name))?;
            let value = SecretString::new(String::from_utf8_lossy(&pending.data).into_owned());
            crash_point(&format!("{step_name}:before"));
            register(ctx, ms, spec, step_name, version_id, &value).await?;
            crash_point(&format!("{step_name}:after"));
            let phase = if verify {
                plan::phase::VERIFIED
            } else {
                plan::phase::REGISTERED
            };
            status
                .rotation
                .get_or_insert_with(RotationStatus::default)
                .phase = Some(phase.into());
            let reason = if verify { "Verified" } else { "Registered" };
            reconcile::publish(
                ctx,
                ms,
                EventType::Normal,
                reason,
                format!("version {version_id}: {step_name} succeeded"),
            )
            .await;
        }
        Step::Promote { version_id } => {
            crash_point("promote:before");
            source
                .update_stage(name, CURRENT, Some(version_id), None)
                .await
                .map_err(kms("promote"))?;
            crash_point("promote:after");
            status
                .rotation
                .get_or_insert_with(RotationStatus::default)
                .phase = Some(plan::phase::PROMOTED.into());
            reconcile::publish(
                ctx,
                ms,
                EventType::Normal,
                "Promoted",
                format!("version {version_id} is now ACSCurrent"),
            )
            .await;
        }
        Step::Clean { version_id, stage } => {
            crash_point("clean:before");
            source
                .update_stage(name, stage, None, Some(version_id))
                .await
                .map_err(kms("clean"))?;
            crash_point("clean:after");
        }
        Step::Finish { version_id } => {
            crash_point("finish:before");
            let rotation = status.rotation.get_or_insert_with(RotationStatus::default);
            rotation.phase = Some(plan::phase::IDLE.into());
            rotation.pending_version_id = None;
            rotation.last_rotation_time = Some(now.to_string());
            rotation.next_rotation_time = schedule::next_scheduled(spec, now)
                .ok()
                .map(|t| t.to_string());
            rotation.attempts = 0;
            rotation.failed_step = None;
            set_condition(
                status,
                true,
                "RotationSucceeded",
                format!("version {version_id} is ACSCurrent"),
                generation,
                now,
            );
            ctx.end_rotation(&ms.uid().unwrap_or_default());
            ctx.metrics
                .rotations
                .get_or_create(&crate::metrics::OutcomeLabels {
                    outcome: "Succeeded",
                })
                .inc();
            reconcile::publish(
                ctx,
                ms,
                EventType::Normal,
                "RotationSucceeded",
                format!("KMS secret {name} rotated to version {version_id}"),
            )
            .await;
            return Ok(Some(Outcome::Finished));
        }
        Step::Abort { version_id, stage } => {
            if let Some(stage) = stage {
                crash_point("abort:before");
                source
                    .update_stage(name, stage, None, Some(version_id))
                    .await
                    .map_err(kms("abort"))?;
                crash_point("abort:after");
            }
            let uid = ms.uid().unwrap_or_default();
            let rotation = status.rotation.get_or_insert_with(RotationStatus::default);
            let next = next_attempt(&uid, rotation.attempts, now);
            rotation.phase = Some(plan::phase::IDLE.into());
            rotation.pending_version_id = None;
            rotation.next_rotation_time = Some(next.to_string());
            let failed = rotation
                .failed_step
                .clone()
                .unwrap_or_else(|| "unknown".into());
            // Keep the cause the failed step recorded, so the condition still says why.
            let cause = conditions::find(&status.conditions, types::ROTATION)
                .filter(|c| c.reason == "RotationFailed")
                .and_then(|c| cause_of(&c.message))
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default();
            set_condition(
                status,
                false,
                "RotationFailed",
                format!(
                    "step {failed} failed{cause}; version {version_id} was not promoted; next attempt at {next}"
                ),
                generation,
                now,
            );
            ctx.end_rotation(&uid);
            ctx.metrics
                .rotations
                .get_or_create(&crate::metrics::OutcomeLabels { outcome: "Failed" })
                .inc();
            return Ok(Some(Outcome::Idle { next: Some(next) }));
        }
    }
    Ok(None)
}

fn perform_wait_capacity(
    status: &mut ManagedSecretStatus,
    generation: Option<i64>,
    now: Timestamp,
) -> Result<Option<Outcome>, StepError> {
    set_condition(
        status,
        true,
        "RotationScheduled",
        "waiting for other rotations to finish".into(),
        generation,
        now,
    );
    Ok(Some(Outcome::Waiting {
        retry: std::time::Duration::from_secs(5),
    }))
}

/// The reason a failed step's condition ends with (`… (AccessDenied)`, see `fail_attempt`).
fn cause_of(message: &str) -> Option<&str> {
    let inner = message.strip_suffix(')')?;
    let reason = &inner[inner.rfind('(')? + 1..];
    (!reason.is_empty() && reason.chars().all(|c| c.is_ascii_alphanumeric())).then_some(reason)
}

/// The attempt number in a version id `kmsync-r<sequence>-<hash>`.
fn sequence_of(version_id: &str) -> i64 {
    version_id
        .strip_prefix("kmsync-r")
        .and_then(|rest| rest.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A new value: `GetRandomPassword` with the spec's options, through the template.
async fn generate(
    source: &Arc<dyn SecretSource>,
    spec: &RotationSpec,
    current: Option<&[u8]>,
) -> Result<SecretString, StepError> {
    let password = source
        .random_password(&spec.generate.password)
        .await
        .map_err(|e| StepError::from_source("generate", e))?;
    let value = template::render(
        spec.generate.template.as_deref(),
        password.expose(),
        current,
    )
    .map_err(|e| StepError::permanent("generate", "InvalidTemplate", e.to_string()))?;
    Ok(SecretString::new(value))
}

/// Hands the pending value to the configured back-end (`register` or `verify`).
async fn register(
    ctx: &Context,
    ms: &ManagedSecret,
    spec: &RotationSpec,
    step: &'static str,
    version_id: &str,
    value: &SecretString,
) -> Result<(), StepError> {
    if spec.strategy != RotationStrategy::Staged {
        return Ok(());
    }
    let Some(register) = &spec.register else {
        return Ok(());
    };
    if let Some(hook) = &register.webhook {
        let namespace = ms.namespace().unwrap_or_default();
        let signing_key = webhook::signing_key(&ctx.client, &namespace, hook, step).await?;
        let identity = webhook::client_identity(&ctx.client, &namespace, hook, step).await?;
        let call = webhook::Call {
            action: step,
            namespace: &namespace,
            managed_secret: &ms.name_any(),
            secret_name: &ms.spec.secret_name,
            version_id,
            value,
            signing_key: &signing_key,
            client_identity: identity.as_ref(),
        };
        return webhook::call(hook, step, &call).await;
    }
    if let Some(postgres) = &register.postgres {
        return super::postgres_register::run(ctx, ms, postgres, step, value).await;
    }
    // manualApproval: nothing to hand over; promotion waits for the annotation.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_of_a_failed_step_is_kept() {
        assert_eq!(
            cause_of("step put: calling KMS: Forbidden.NoPermission (HTTP 403): no (AccessDenied)"),
            Some("AccessDenied")
        );
        assert_eq!(
            cause_of("step put failed; next attempt at 2026-01-01T00:00:00Z"),
            None
        );
        assert_eq!(cause_of("odd (two words)"), None);
    }

    #[test]
    fn sequence_is_read_back_from_the_version_id() {
        assert_eq!(sequence_of(&plan::version_id("uid", 7)), 7);
        assert_eq!(sequence_of("v2"), 0);
    }
}
