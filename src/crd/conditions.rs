//! Status conditions: the stable PascalCase reasons we report and a pure helper that upserts a
//! condition without churning `lastTransitionTime` when its status did not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types used on our resources.
pub mod types {
    pub const READY: &str = "Ready";
    pub const SYNCED: &str = "Synced";
    pub const ROTATION: &str = "Rotation";
}

/// Builds a condition; `lastTransitionTime` is filled by [`upsert`].
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation,
        last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
    }
}

/// Inserts or replaces the condition of the same type. The transition time stays what it was
/// when the status is unchanged, so an unchanged reconcile produces an identical status.
pub fn upsert(conditions: &mut Vec<Condition>, mut new: Condition, now: jiff::Timestamp) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            new.last_transition_time = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                Time(now)
            };
            *existing = new;
        }
        None => {
            new.last_transition_time = Time(now);
            conditions.push(new);
        }
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn upsert_keeps_transition_time_when_status_unchanged() {
        let mut conditions = Vec::new();
        upsert(
            &mut conditions,
            condition(types::READY, true, "Synced", "ok", Some(1)),
            at(100),
        );
        upsert(
            &mut conditions,
            condition(types::READY, true, "Synced", "still ok", Some(2)),
            at(200),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(at(100)));
        assert_eq!(conditions[0].message, "still ok");
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn upsert_moves_transition_time_when_status_flips() {
        let mut conditions = Vec::new();
        upsert(
            &mut conditions,
            condition(types::READY, true, "Synced", "ok", None),
            at(100),
        );
        upsert(
            &mut conditions,
            condition(types::READY, false, "AccessDenied", "no", None),
            at(300),
        );
        assert_eq!(conditions[0].last_transition_time, Time(at(300)));
        assert_eq!(conditions[0].status, "False");
        assert_eq!(
            find(&conditions, types::READY).unwrap().reason,
            "AccessDenied"
        );
        assert!(find(&conditions, types::SYNCED).is_none());
    }

    #[test]
    fn upsert_keeps_other_types_apart() {
        let mut conditions = Vec::new();
        upsert(
            &mut conditions,
            condition(types::READY, true, "Synced", "ok", None),
            at(1),
        );
        upsert(
            &mut conditions,
            condition(types::SYNCED, false, "Throttled", "slow", None),
            at(2),
        );
        assert_eq!(conditions.len(), 2);
        assert_eq!(find(&conditions, types::READY).unwrap().status, "True");
    }
}
