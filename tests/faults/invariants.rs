//! The invariants of the fault episodes: on every state the monitor saw (a Secret changes only to
//! a complete rendering of a KMS version, never older, and is never deleted; a rotation's sequence
//! steps by one, one attempt at a time, a failed attempt ends) and on the state found after a step
//! (the condition says why, KMS holds no pending label, no attempt is skipped).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kmsync::crd::ManagedSecret;
use kmsync::crd::rotation::RotationStatus;
use kmsync::rotation::plan::version_id;
use kube::ResourceExt;

use super::model::{
    INTRUDER_VALUE, KNOWN_REASONS, ROTATION_FALSE, ROTATION_TRUE, RotationModel, trailing_reason,
};
use super::monitor::Seen;
use super::run::{Round, Run};
use super::steps::Expect;

/// The Ready condition as found: `(status, reason, message)`, for the current generation.
pub(super) fn ready_of(ms: &ManagedSecret) -> Option<(String, String, String)> {
    let status = ms.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    (c.observed_generation == ms.metadata.generation)
        .then(|| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub(super) use crate::support::rotation::rotation_condition;

/// The attempt number of a kmsync version id `kmsync-r<n>-<hash>`.
fn attempt_of(id: &str) -> Option<i64> {
    id.strip_prefix("kmsync-r")?.split('-').next()?.parse().ok()
}

/// Checks one observed rotation state against the previous one.
fn rotation_step(
    model: &mut RotationModel,
    r: &RotationStatus,
    condition: Option<&(String, String, String)>,
) -> Option<String> {
    let seq = r.sequence.unwrap_or(0);
    if seq < model.sequence {
        return Some(format!(
            "rotation sequence went back from {} to {seq}",
            model.sequence
        ));
    }
    if let Some(id) = &r.pending_version_id
        && *id != version_id(&model.uid, seq)
    {
        return Some(format!("pending version {id} is not attempt {seq}'s"));
    }
    if std::mem::take(&mut model.gap) {
        // States were skipped: attempts that began or ended in between are only checked by
        // their result (written to KMS or not, see `check_rotation`).
        let now_pending = r.pending_version_id.as_deref().and_then(attempt_of);
        let ended = model.pending.as_deref().and_then(attempt_of);
        model
            .unobserved
            .extend(ended.filter(|a| Some(*a) != now_pending));
        model
            .unobserved
            .extend((model.sequence + 1..=seq).filter(|n| Some(*n) != now_pending));
        return None;
    }
    if seq > model.sequence + 1 {
        return Some(format!(
            "rotation sequence skipped from {} to {seq}",
            model.sequence
        ));
    }
    match (&model.pending, &r.pending_version_id) {
        (Some(a), Some(b)) if a != b => {
            return Some(format!(
                "a second pending version {b} while {a} was in flight"
            ));
        }
        (Some(a), None) => match condition.map(|c| c.1.as_str()) {
            Some("RotationSucceeded") => model.succeeded += 1,
            Some("RotationFailed") => {
                model.failed.insert(attempt_of(a).unwrap_or(0));
            }
            other => {
                return Some(format!(
                    "attempt {a} ended without saying how (Rotation {other:?})"
                ));
            }
        },
        (Some(_), Some(_)) if r.attempts > model.attempts => {
            let before = model.failures_while_pending;
            model.failures_while_pending += (r.attempts - model.attempts) as u32;
            // Reported once per attempt.
            if before <= 1 && model.failures_while_pending > 1 {
                return Some(format!(
                    "attempt {} was tried again after a definite failure (attempts {} → {}): a failed attempt must end",
                    r.pending_version_id.clone().unwrap_or_default(),
                    model.attempts,
                    r.attempts
                ));
            }
        }
        _ => {}
    }
    None
}

impl Run {
    /// Checks one state the monitor saw; `Err((name, problem))`.
    pub(super) fn observe(&mut self, seen: Seen) -> Result<(), (String, String)> {
        let name = match &seen {
            Seen::Secret { name, .. } | Seen::SecretGone { name } | Seen::Rotation { name, .. } => {
                name.clone()
            }
            Seen::Relisted => {
                for rotation in self.managed.iter_mut().filter_map(|m| m.rotation.as_mut()) {
                    rotation.gap = true;
                }
                return Ok(());
            }
        };
        let Some(m) = self.managed.iter_mut().find(|m| m.name == name) else {
            return Ok(());
        };
        let fail = |problem: String| Err((name.clone(), problem));
        match seen {
            Seen::Relisted => Ok(()),
            Seen::SecretGone { .. } => fail("the Secret was deleted".into()),
            Seen::Secret { uid, data, .. } => {
                if let Some(known) = &m.secret_uid
                    && *known != uid
                {
                    return fail(format!(
                        "the Secret was deleted and recreated (uid {known} → {uid})"
                    ));
                }
                m.secret_uid = Some(uid);
                if data.values().any(|v| v == INTRUDER_VALUE) {
                    // Another party's write; the operator repairs it (checked below).
                    return Ok(());
                }
                let held = match m.holds(&data) {
                    Ok(held) => held,
                    Err(problem) => return fail(problem),
                };
                if held < m.seen_watch {
                    return fail(format!(
                        "a write rolled the Secret back from {} to {}",
                        m.version_name(m.seen_watch),
                        m.version_name(held)
                    ));
                }
                m.seen_watch = held;
                Ok(())
            }
            Seen::Rotation {
                rotation: r,
                condition,
                ..
            } => {
                let model = m.rotation.as_mut().expect("rotating");
                let problem = rotation_step(model, &r, condition.as_ref());
                // The model follows what was observed even after a problem, so one fault is
                // reported once.
                if r.pending_version_id.is_none() || r.pending_version_id != model.pending {
                    model.failures_while_pending = 0;
                }
                model.sequence = model.sequence.max(r.sequence.unwrap_or(0));
                model.pending = r.pending_version_id.clone();
                model.attempts = r.attempts;
                problem.map_or(Ok(()), fail)
            }
        }
    }

    /// The invariant on the state found now.
    pub(super) async fn check(&mut self, i: usize, round: &Round<'_>) -> Result<(), String> {
        let name = self.managed[i].name;
        let secret: Option<Secret> = self.env.secrets().get_opt(name).await.expect("get Secret");
        let ms = self
            .env
            .managed_secrets()
            .get(name)
            .await
            .expect("get ManagedSecret");
        let current = self.current_id(&self.managed[i]);
        let m = &mut self.managed[i];
        let secret = secret.ok_or("the Secret is gone")?;
        if let (Some(known), Some(uid)) = (&m.secret_uid, secret.uid())
            && *known != uid
        {
            return Err(format!("the Secret was recreated (uid {known} → {uid})"));
        }
        let data: BTreeMap<String, String> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        let ready = ready_of(&ms);
        let held = m
            .holds(&data)
            .map_err(|problem| format!("{problem} (ready: {ready:?})"))?;
        if held < m.seen {
            return Err(format!(
                "rolled back from {} to {} (ready: {ready:?})",
                m.version_name(m.seen),
                m.version_name(held)
            ));
        }
        m.seen = held;
        let (status, reason, message) = ready.clone().unwrap_or_default();
        if status == "False" && !KNOWN_REASONS.contains(&reason.as_str()) {
            return Err(format!("Ready=False with an undocumented reason {reason}"));
        }
        // A rotating one may take the next rotation right after the synced state was written
        // (a trigger held back by minInterval): outside a clean step (which waits for rest), the
        // Secret must hold what its status says, the one KMS called current when it synced.
        let synced_version = if m.rotating() && !round.clean {
            ms.status
                .as_ref()
                .and_then(|s| s.source.as_ref())
                .and_then(|s| s.version_id.clone())
        } else {
            current.clone()
        };
        match round.expect(m.store) {
            Expect::Synced
                if Some(m.version_name(held)) != synced_version.as_deref()
                    || (status.as_str(), reason.as_str()) != ("True", "Synced") =>
            {
                return Err(format!(
                    "expected version {synced_version:?} (KMS current {current:?}) and Ready=True/Synced, found {} and {ready:?}",
                    m.version_name(held)
                ));
            }
            Expect::Failed(reasons) if status != "False" || !reasons.contains(&reason.as_str()) => {
                return Err(format!("expected Ready=False/{reasons:?}, found {ready:?}"));
            }
            Expect::Failed(_) if round.timed_out && !message.contains("timed out") => {
                return Err(format!("a timeout must say so, found {ready:?}"));
            }
            _ => {}
        }
        if m.rotating() {
            self.check_rotation(i, &ms, round)?;
        }
        Ok(())
    }

    /// Rotation: the condition says why; KMS holds no pending label (Immediate), one current
    /// version, only this object's deterministic version ids in attempt order, and every attempt
    /// so far either written or recorded as failed (no skipped sequence).
    fn check_rotation(
        &mut self,
        i: usize,
        ms: &ManagedSecret,
        round: &Round<'_>,
    ) -> Result<(), String> {
        let versions = self
            .env
            .emulator
            .versions(self.managed[i].kms)
            .ok_or("the KMS secret is gone")?;
        let m = &mut self.managed[i];
        let model = m.rotation.as_mut().expect("rotating");
        let (status, reason, message) = rotation_condition(ms).ok_or("no Rotation condition")?;
        let allowed = if status == "True" {
            ROTATION_TRUE
        } else {
            ROTATION_FALSE
        };
        if !allowed.contains(&reason.as_str()) {
            return Err(format!("Rotation={status} with an unknown reason {reason}"));
        }
        if let Some(cause) = trailing_reason(&message)
            && !KNOWN_REASONS.contains(&cause)
        {
            return Err(format!(
                "Rotation {reason} gives an undocumented cause {cause}: {message}"
            ));
        }
        let progress = ms
            .status
            .as_ref()
            .and_then(|s| s.rotation.clone())
            .unwrap_or_default();
        let sequence = progress.sequence.unwrap_or(0);
        if reason == "RotationFailed"
            && progress.pending_version_id.is_none()
            && message.contains(&version_id(&model.uid, sequence))
        {
            model.failed.insert(sequence);
        }
        let current: Vec<_> = versions
            .iter()
            .filter(|v| v.stages.iter().any(|s| s == "ACSCurrent"))
            .collect();
        if current.len() != 1 {
            return Err(format!("{} versions are ACSCurrent", current.len()));
        }
        let mut last = 0;
        for v in &versions {
            if let Some(stage) = v
                .stages
                .iter()
                .find(|s| *s != "ACSCurrent" && *s != "ACSPrevious")
            {
                return Err(format!(
                    "version {} carries the pending label {stage}",
                    v.id
                ));
            }
            let Some(n) = attempt_of(&v.id) else {
                continue;
            };
            if v.id != version_id(&model.uid, n) {
                return Err(format!("version {} is not an id of this object", v.id));
            }
            if n <= last || n > sequence {
                return Err(format!(
                    "version {} out of attempt order (after attempt {last}, status sequence {sequence})",
                    v.id
                ));
            }
            last = n;
            model.written.insert(n);
        }
        let in_flight = progress.pending_version_id.as_deref().and_then(attempt_of);
        for n in 1..=sequence {
            if !model.written.contains(&n)
                && !model.failed.contains(&n)
                && !model.unobserved.contains(&n)
                && in_flight != Some(n)
            {
                return Err(format!(
                    "attempt {n} was neither written nor recorded as failed (a skipped sequence; status sequence {sequence})"
                ));
            }
        }
        // A rotation asked for in a clean step began after the faults were gone: it succeeds.
        if std::mem::take(&mut model.fresh_trigger)
            && round.clean
            && (reason != "RotationSucceeded" || !model.written.contains(&sequence))
        {
            return Err(format!(
                "a rotation asked for in a clean step did not succeed: Rotation {reason}: {message}"
            ));
        }
        Ok(())
    }
}
