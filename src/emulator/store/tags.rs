//! Tag actions on secrets: TagResource/UntagResource (old style, JSON strings) and
//! TagResources/UntagResources/ListTagResources (new style, flattened lists). ≤ 20 tags.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{KmsError, Store};

fn valid_tag_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= 128
        && s.chars()
            .all(|c| c.is_alphanumeric() || "/\\_-.+=:@".contains(c))
}

impl Store {
    /// `existing` plus `new` (new values win), checked against the tag rules and the cap.
    pub(super) fn validated_tags(
        &self,
        existing: &BTreeMap<String, String>,
        new: &[(String, String)],
    ) -> Result<BTreeMap<String, String>, KmsError> {
        let mut out = existing.clone();
        for (k, v) in new {
            let reserved = k.starts_with("aliyun") || k.starts_with("acs:");
            if !valid_tag_part(k) || reserved {
                return Err(KmsError::invalid("TagKey"));
            }
            if !valid_tag_part(v) {
                return Err(KmsError::invalid("TagValue"));
            }
            out.insert(k.clone(), v.clone());
        }
        if out.len() > self.semantics.max_tags {
            return Err(KmsError::invalid_msg(format!(
                "The number of tags exceeds the limit of {}.",
                self.semantics.max_tags
            )));
        }
        Ok(out)
    }

    /// Adds or overwrites tags on one secret.
    pub fn tag_secret(
        &mut self,
        name: &str,
        tags: &[(String, String)],
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        let existing = self.live(name, now)?.tags.clone();
        let merged = self.validated_tags(&existing, tags)?;
        let secret = self.live(name, now)?;
        secret.tags = merged;
        secret.update_time = now;
        Ok(json!({}))
    }

    /// Removes tag keys from one secret (or all tags with `all`).
    pub fn untag_secret(
        &mut self,
        name: &str,
        keys: &[String],
        all: bool,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        let secret = self.live(name, now)?;
        if all && keys.is_empty() {
            secret.tags.clear();
        }
        for k in keys {
            secret.tags.remove(k);
        }
        secret.update_time = now;
        Ok(json!({}))
    }

    /// ListTagResources for secrets: one row per (secret, tag), optionally filtered by tags.
    pub fn list_tag_resources(
        &mut self,
        ids: &[String],
        tag_filter: &[(String, String)],
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        if ids.len() > 50 {
            return Err(KmsError::invalid("ResourceId"));
        }
        self.purge_expired(now);
        let mut rows = Vec::new();
        for id in ids {
            let secret = self.find(id, now)?;
            for (k, v) in &secret.tags {
                let keep = tag_filter.is_empty() || tag_filter.iter().any(|(fk, _)| fk == k);
                if keep {
                    rows.push(json!({"ResourceId": secret.name, "ResourceType": "secret", "TagKey": k, "TagValue": v}));
                }
            }
        }
        Ok(json!({"NextToken": "", "TagResources": {"TagResource": rows}}))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    fn tags(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("k{i}"), format!("v{i}"))).collect()
    }

    #[test]
    fn twenty_tags_max() {
        let mut store = store_with("s", "x");
        store.tag_secret("s", &tags(20), t(1)).unwrap();
        let err = store
            .tag_secret("s", &[("extra".into(), "v".into())], t(1))
            .unwrap_err();
        assert_eq!(err.code, "InvalidParameter");
        assert_eq!(store.secrets["s"].tags.len(), 20);
        store
            .untag_secret("s", &["k0".into()], false, t(2))
            .unwrap();
        store
            .tag_secret("s", &[("extra".into(), "v".into())], t(3))
            .unwrap();
        store.untag_secret("s", &[], true, t(4)).unwrap();
        assert!(store.secrets["s"].tags.is_empty());
    }

    #[test]
    fn reserved_and_bad_keys() {
        let mut store = store_with("s", "x");
        for k in ["aliyunX", "acs:x", "", "bad#"] {
            let err = store
                .tag_secret("s", &[(k.into(), "v".into())], t(1))
                .unwrap_err();
            assert_eq!(err.code, "InvalidParameter", "{k}");
        }
    }

    #[test]
    fn list_rows() {
        let mut store = store_with("s", "x");
        store.tag_secret("s", &tags(2), t(1)).unwrap();
        let out = store.list_tag_resources(&["s".into()], &[], t(2)).unwrap();
        assert_eq!(
            out["TagResources"]["TagResource"].as_array().unwrap().len(),
            2
        );
        assert!(
            store
                .list_tag_resources(&["nope".into()], &[], t(2))
                .is_err()
        );
    }
}
