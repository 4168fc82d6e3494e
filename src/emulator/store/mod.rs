//! The pure KMS Secrets Manager state machine (kms-api.md §3–§4): secrets, immutable versions,
//! stage labels, tags and scheduled deletion. No I/O and no clock: every call takes `now`.
//!
//! Submodules hold the actions: `lifecycle` (create, describe, list, update, delete, restore),
//! `versions` (get, put, stage moves, version listing) and `tags`.

mod lifecycle;
mod tags;
mod versions;

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::error::KmsError;

pub use lifecycle::{CreateSecretReq, ListSecretsReq};

/// Validation rules shared with the seed loader.
pub mod lifecycle_rules {
    pub use super::lifecycle::{validate_data_type, validate_name, validate_version_id};
}
pub use versions::{GetSecretValueReq, PutSecretValueReq, UpdateStageReq};

/// The built-in stage consumers read by default.
pub const ACS_CURRENT: &str = "ACSCurrent";
/// The built-in stage of the version that was current before.
pub const ACS_PREVIOUS: &str = "ACSPrevious";

/// Limits and the [INF] choices of kms-api.md §9, all configurable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Semantics {
    /// Versions kept per secret; the earliest unlabeled one rolls off beyond this.
    pub max_versions: usize,
    /// Distinct stage labels per secret.
    pub max_stages: usize,
    pub max_tags: usize,
    pub max_value_bytes: usize,
    /// §9.1: moving `ACSCurrent` (UpdateSecretVersionStage, or PutSecretValue with an explicit
    /// `ACSCurrent`) demotes the old current to `ACSPrevious`.
    pub promote_previous_on_move: bool,
    /// §9.3: DeleteSecret `RecoveryWindowInDays` bounds.
    pub min_recovery_days: i64,
    pub max_recovery_days: i64,
    /// §9.7: secrets per region (`Rejected.LimitExceeded`); `None` = unlimited.
    pub secret_quota: Option<usize>,
    pub max_version_page_size: i64,
    /// The account id used in ARNs.
    pub account_id: String,
}

impl Default for Semantics {
    fn default() -> Self {
        Self {
            max_versions: 10,
            max_stages: 8,
            max_tags: 20,
            max_value_bytes: 30720,
            promote_previous_on_move: true,
            min_recovery_days: 7,
            max_recovery_days: 30,
            secret_quota: None,
            max_version_page_size: 100,
            account_id: "1234567890123456".to_string(),
        }
    }
}

/// One immutable version of a secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub id: String,
    pub data: String,
    pub data_type: String,
    pub create_time: Timestamp,
    pub stages: Vec<String>,
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Version")
            .field("id", &self.id)
            .field("data", &"<redacted>")
            .field("data_type", &self.data_type)
            .field("stages", &self.stages)
            .finish()
    }
}

/// A secret: metadata, versions in creation order, tags, deletion schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub secret_type: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub encryption_key_id: Option<String>,
    #[serde(default)]
    pub dkms_instance_id: Option<String>,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub versions: Vec<Version>,
    #[serde(default)]
    pub planned_delete_time: Option<Timestamp>,
}

impl Secret {
    pub fn version(&self, id: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.id == id)
    }

    /// The version holding `stage`, if any.
    pub fn holder(&self, stage: &str) -> Option<&Version> {
        self.versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == stage))
    }

    /// Number of distinct stage labels on the secret.
    pub fn stage_count(&self) -> usize {
        self.versions.iter().map(|v| v.stages.len()).sum()
    }

    /// Puts `stage` on version `id` (which must exist), taking it off any other version.
    fn set_stage(&mut self, stage: &str, id: &str) {
        for v in &mut self.versions {
            if v.id == id {
                if !v.stages.iter().any(|s| s == stage) {
                    v.stages.push(stage.to_string());
                }
            } else {
                v.stages.retain(|s| s != stage);
            }
        }
    }

    fn remove_stage(&mut self, stage: &str) {
        for v in &mut self.versions {
            v.stages.retain(|s| s != stage);
        }
    }

    /// Moves `ACSCurrent` to `id`; with `demote`, the old current becomes `ACSPrevious`.
    fn make_current(&mut self, id: &str, demote: bool) {
        let old = self.holder(ACS_CURRENT).map(|v| v.id.clone());
        self.set_stage(ACS_CURRENT, id);
        if let Some(old) = old.filter(|old| demote && old != id) {
            self.set_stage(ACS_PREVIOUS, &old);
        }
    }

    /// Drops the earliest unlabeled versions while over `max` (bounded by the version count).
    fn roll_off(&mut self, max: usize) {
        while self.versions.len() > max {
            match self.versions.iter().position(|v| v.stages.is_empty()) {
                Some(i) => {
                    self.versions.remove(i);
                }
                None => break,
            }
        }
    }
}

/// All secrets of one region.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Store {
    #[serde(default)]
    pub region_id: String,
    #[serde(skip)]
    pub semantics: Semantics,
    pub secrets: BTreeMap<String, Secret>,
}

/// `yyyy-MM-ddTHH:mm:ssZ`, the response timestamp format.
pub fn fmt_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Store {
    pub fn new(region_id: &str, semantics: Semantics) -> Self {
        Self {
            region_id: region_id.to_string(),
            semantics,
            secrets: BTreeMap::new(),
        }
    }

    pub fn arn(&self, name: &str) -> String {
        format!(
            "acs:kms:{}:{}:secret/{name}",
            self.region_id, self.semantics.account_id
        )
    }

    /// Accepts a name or `acs:kms:<region>:<account>:secret/<name>`.
    pub fn resolve_name(name: &str) -> &str {
        match name.strip_prefix("acs:kms:") {
            Some(rest) => rest.split_once(":secret/").map_or(name, |(_, n)| n),
            None => name,
        }
    }

    /// Forgets secrets whose recovery window has passed.
    pub fn purge_expired(&mut self, now: Timestamp) {
        self.secrets
            .retain(|_, s| s.planned_delete_time.is_none_or(|t| t > now));
    }

    /// The secret, pending deletion or not.
    fn find(&mut self, name: &str, now: Timestamp) -> Result<&mut Secret, KmsError> {
        self.purge_expired(now);
        self.secrets
            .get_mut(Self::resolve_name(name))
            .ok_or_else(KmsError::not_found)
    }

    /// The secret, refusing one pending deletion (§9.2).
    fn live(&mut self, name: &str, now: Timestamp) -> Result<&mut Secret, KmsError> {
        let secret = self.find(name, now)?;
        if secret.planned_delete_time.is_some() {
            return Err(KmsError::in_delete_window());
        }
        Ok(secret)
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    pub fn store_with(name: &str, data: &str) -> Store {
        let mut store = Store::new("cn-hangzhou", Semantics::default());
        store
            .create_secret(
                CreateSecretReq {
                    name: name.into(),
                    data: data.into(),
                    version_id: "v1".into(),
                    ..Default::default()
                },
                t(0),
            )
            .unwrap();
        store
    }

    pub fn stages(store: &Store, name: &str) -> Vec<(String, Vec<String>)> {
        store.secrets[name]
            .versions
            .iter()
            .map(|v| (v.id.clone(), v.stages.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn arn_resolves_to_name() {
        assert_eq!(
            Store::resolve_name("acs:kms:cn-hangzhou:123:secret/prod/db"),
            "prod/db"
        );
        assert_eq!(Store::resolve_name("plain"), "plain");
    }

    #[test]
    fn debug_redacts_values() {
        let store = store_with("s", "hunter2");
        assert!(!format!("{store:?}").contains("hunter2"));
    }
}
