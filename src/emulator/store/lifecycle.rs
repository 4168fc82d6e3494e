//! Secret lifecycle actions: CreateSecret, DescribeSecret, ListSecrets, UpdateSecret,
//! DeleteSecret (scheduled or forced) and RestoreSecret.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

use super::{ACS_CURRENT, KmsError, Secret, Store, Version, fmt_time};

const SECRET_TYPES: [&str; 6] = [
    "Generic",
    "Rds",
    "Redis",
    "RAMCredentials",
    "ECS",
    "PolarDB",
];

#[derive(Debug, Clone, Default)]
pub struct CreateSecretReq {
    pub name: String,
    pub data: String,
    pub version_id: String,
    pub data_type: Option<String>,
    pub secret_type: Option<String>,
    pub description: Option<String>,
    pub encryption_key_id: Option<String>,
    pub dkms_instance_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct ListSecretsReq {
    pub page_number: i64,
    pub page_size: i64,
    pub fetch_tags: bool,
    /// `(Key, Values)`: values of one key are ORed, entries ANDed, exact match.
    pub filters: Vec<(String, Vec<String>)>,
}

/// Name rules of CreateSecret: ≤ 192 chars of `[A-Za-z0-9_/+=.@-]`, no `acs/` for Generic.
pub fn validate_name(name: &str, secret_type: &str) -> Result<(), KmsError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_/+=.@-".contains(c));
    let bad_prefix = secret_type == "Generic" && name.starts_with("acs/");
    if name.is_empty() || name.chars().count() > 192 || !ok_chars || bad_prefix {
        return Err(KmsError::invalid("SecretName"));
    }
    Ok(())
}

/// VersionId: 1–64 characters.
pub fn validate_version_id(id: &str) -> Result<(), KmsError> {
    if id.is_empty() || id.chars().count() > 64 {
        return Err(KmsError::invalid("VersionId"));
    }
    Ok(())
}

pub fn validate_data_type(data_type: Option<&str>) -> Result<String, KmsError> {
    match data_type.unwrap_or("text") {
        t @ ("text" | "binary") => Ok(t.to_string()),
        _ => Err(KmsError::invalid("SecretDataType")),
    }
}

impl Store {
    pub(super) fn check_value(&self, data: &str) -> Result<(), KmsError> {
        if data.len() > self.semantics.max_value_bytes {
            return Err(KmsError::invalid_msg(format!(
                "The specified parameter \"SecretData\" is not valid: longer than {} bytes.",
                self.semantics.max_value_bytes
            )));
        }
        Ok(())
    }

    pub fn create_secret(
        &mut self,
        req: CreateSecretReq,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        self.purge_expired(now);
        let secret_type = req.secret_type.unwrap_or_else(|| "Generic".to_string());
        if !SECRET_TYPES.contains(&secret_type.as_str()) {
            return Err(KmsError::invalid("SecretType"));
        }
        validate_name(&req.name, &secret_type)?;
        validate_version_id(&req.version_id)?;
        let data_type = validate_data_type(req.data_type.as_deref())?;
        if secret_type != "Generic" && data_type != "text" {
            return Err(KmsError::invalid("SecretDataType"));
        }
        self.check_value(&req.data)?;
        let tags = self.validated_tags(&BTreeMap::new(), &req.tags)?;
        if let Some(existing) = self.secrets.get(&req.name) {
            return Err(if existing.planned_delete_time.is_some() {
                KmsError::in_delete_window()
            } else {
                KmsError::exists()
            });
        }
        if self
            .semantics
            .secret_quota
            .is_some_and(|q| self.secrets.len() >= q)
        {
            return Err(KmsError::limit_exceeded());
        }
        let secret = Secret {
            name: req.name.clone(),
            secret_type: secret_type.clone(),
            description: req.description.unwrap_or_default(),
            encryption_key_id: req.encryption_key_id,
            dkms_instance_id: req.dkms_instance_id,
            create_time: now,
            update_time: now,
            tags,
            versions: vec![Version {
                id: req.version_id.clone(),
                data: req.data,
                data_type,
                create_time: now,
                stages: vec![ACS_CURRENT.to_string()],
            }],
            planned_delete_time: None,
        };
        self.secrets.insert(req.name.clone(), secret);
        Ok(json!({
            "Arn": self.arn(&req.name),
            "SecretName": req.name,
            "VersionId": req.version_id,
            "SecretType": secret_type,
            "DKMSInstanceId": self.secrets[&req.name].dkms_instance_id.clone().unwrap_or_default(),
        }))
    }

    pub fn describe_secret(
        &mut self,
        name: &str,
        fetch_tags: bool,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        let secret = self.find(name, now)?.clone();
        let mut out = json!({
            "Arn": self.arn(&secret.name),
            "SecretName": secret.name,
            "SecretType": secret.secret_type,
            "Description": secret.description,
            "CreateTime": fmt_time(secret.create_time),
            "UpdateTime": fmt_time(secret.update_time),
            "EncryptionKeyId": secret.encryption_key_id.clone().unwrap_or_default(),
            "DKMSInstanceId": secret.dkms_instance_id.clone().unwrap_or_default(),
        });
        if let Some(t) = secret.planned_delete_time {
            out["PlannedDeleteTime"] = fmt_time(t).into();
        }
        if fetch_tags {
            out["Tags"] = tags_json(&secret.tags);
        }
        Ok(out)
    }

    pub fn list_secrets(
        &mut self,
        req: &ListSecretsReq,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        self.purge_expired(now);
        if req.page_number < 1 {
            return Err(KmsError::invalid("PageNumber"));
        }
        if !(1..=100).contains(&req.page_size) {
            return Err(KmsError::invalid("PageSize"));
        }
        if req.filters.len() > 10 {
            return Err(KmsError::invalid("Filters"));
        }
        let matching: Vec<&Secret> = self
            .secrets
            .values()
            .filter(|s| {
                req.filters
                    .iter()
                    .all(|(k, vals)| filter_matches(s, k, vals))
            })
            .collect();
        let skip = usize::try_from((req.page_number - 1) * req.page_size).unwrap_or(usize::MAX);
        let page: Vec<Value> = matching
            .iter()
            .skip(skip)
            .take(req.page_size as usize)
            .map(|s| list_entry(s, req.fetch_tags))
            .collect();
        Ok(json!({
            "PageNumber": req.page_number,
            "PageSize": req.page_size,
            "TotalCount": matching.len(),
            "SecretList": {"Secret": page},
        }))
    }

    pub fn update_secret(
        &mut self,
        name: &str,
        description: Option<&str>,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        let secret = self.live(name, now)?;
        if let Some(d) = description {
            secret.description = d.to_string();
        }
        secret.update_time = now;
        Ok(json!({"SecretName": secret.name}))
    }

    /// Schedules deletion (`recovery_days`, default 30) or, with `force`, deletes at once.
    pub fn delete_secret(
        &mut self,
        name: &str,
        recovery_days: Option<i64>,
        force: bool,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        let (min, max) = (
            self.semantics.min_recovery_days,
            self.semantics.max_recovery_days,
        );
        let secret = self.find(name, now)?;
        let name = secret.name.clone();
        if force {
            self.secrets.remove(&name);
            return Ok(json!({"SecretName": name, "PlannedDeleteTime": fmt_time(now)}));
        }
        if secret.planned_delete_time.is_some() {
            return Err(KmsError::in_delete_window());
        }
        let days = recovery_days.unwrap_or(30);
        if !(min..=max).contains(&days) {
            return Err(KmsError::invalid("RecoveryWindowInDays"));
        }
        let at = now + SignedDuration::from_hours(24 * days);
        secret.planned_delete_time = Some(at);
        secret.update_time = now;
        Ok(json!({"SecretName": name, "PlannedDeleteTime": fmt_time(at)}))
    }

    pub fn restore_secret(&mut self, name: &str, now: Timestamp) -> Result<Value, KmsError> {
        let secret = self.find(name, now)?;
        if secret.planned_delete_time.take().is_none() {
            return Err(KmsError::invalid_msg(
                "The secret is not scheduled for deletion.",
            ));
        }
        secret.update_time = now;
        Ok(json!({"SecretName": secret.name}))
    }
}

pub(super) fn tags_json(tags: &BTreeMap<String, String>) -> Value {
    let list: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    json!({ "Tag": list })
}

fn filter_matches(s: &Secret, key: &str, values: &[String]) -> bool {
    let any = |f: &dyn Fn(&str) -> bool| values.iter().any(|v| f(v));
    match key {
        "SecretName" => any(&|v| v == s.name),
        "Description" => any(&|v| v == s.description),
        "TagKey" => any(&|v| s.tags.contains_key(v)),
        "TagValue" => any(&|v| s.tags.values().any(|t| t == v)),
        "SecretType" => any(&|v| v.eq_ignore_ascii_case(&s.secret_type)),
        "DKMSInstanceId" => any(&|v| s.dkms_instance_id.as_deref() == Some(v)),
        _ => false,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListEntry {
    secret_name: String,
    secret_type: String,
    create_time: String,
    update_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    planned_delete_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Value>,
}

fn list_entry(s: &Secret, fetch_tags: bool) -> Value {
    serde_json::to_value(ListEntry {
        secret_name: s.name.clone(),
        secret_type: s.secret_type.clone(),
        create_time: fmt_time(s.create_time),
        update_time: fmt_time(s.update_time),
        planned_delete_time: s.planned_delete_time.map(fmt_time),
        tags: fetch_tags.then(|| tags_json(&s.tags)),
    })
    .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn create(store: &mut Store, name: &str) -> Result<Value, KmsError> {
        store.create_secret(
            CreateSecretReq {
                name: name.into(),
                data: "x".into(),
                version_id: "v1".into(),
                ..Default::default()
            },
            t(1),
        )
    }

    #[test]
    fn create_rules() {
        let mut store = store_with("a", "x");
        assert_eq!(
            create(&mut store, "a").unwrap_err().code,
            "Rejected.ResourceExist"
        );
        assert_eq!(
            create(&mut store, "acs/x").unwrap_err().code,
            "InvalidParameter"
        );
        assert_eq!(
            create(&mut store, "bad name").unwrap_err().code,
            "InvalidParameter"
        );
        assert_eq!(
            create(&mut store, &"n".repeat(193)).unwrap_err().code,
            "InvalidParameter"
        );
        let out = create(&mut store, "ok/Name_+=.@-1").unwrap();
        assert_eq!(
            out["Arn"],
            "acs:kms:cn-hangzhou:1234567890123456:secret/ok/Name_+=.@-1"
        );
        assert_eq!(
            stages(&store, "a"),
            vec![("v1".into(), vec!["ACSCurrent".into()])]
        );
    }

    #[test]
    fn value_size_limit() {
        let mut store = Store::new("r", Default::default());
        let mut req = CreateSecretReq {
            name: "big".into(),
            data: "x".repeat(30720),
            version_id: "v1".into(),
            ..Default::default()
        };
        assert!(store.create_secret(req.clone(), t(0)).is_ok());
        req.name = "bigger".into();
        req.data.push('x');
        assert_eq!(
            store.create_secret(req, t(0)).unwrap_err().code,
            "InvalidParameter"
        );
    }

    #[test]
    fn quota_is_configurable() {
        let mut store = store_with("a", "x");
        store.semantics.secret_quota = Some(1);
        assert_eq!(
            create(&mut store, "b").unwrap_err().code,
            "Rejected.LimitExceeded"
        );
    }

    #[test]
    fn scheduled_deletion_and_restore() {
        let mut store = store_with("a", "x");
        for bad in [6, 31] {
            let err = store
                .delete_secret("a", Some(bad), false, t(1))
                .unwrap_err();
            assert_eq!(err.code, "InvalidParameter");
        }
        let out = store.delete_secret("a", Some(7), false, t(1)).unwrap();
        assert!(out["PlannedDeleteTime"].is_string());
        assert_eq!(
            create(&mut store, "a").unwrap_err().code,
            "Rejected.ResourceInDeleteWindow"
        );
        let err = store.update_secret("a", Some("d"), t(2)).unwrap_err();
        assert_eq!(err.code, "Rejected.ResourceInDeleteWindow");
        let desc = store.describe_secret("a", false, t(2)).unwrap();
        assert!(desc["PlannedDeleteTime"].is_string());
        let list = store.list_secrets(&list_req(), t(2)).unwrap();
        assert!(list["SecretList"]["Secret"][0]["PlannedDeleteTime"].is_string());
        store.restore_secret("a", t(3)).unwrap();
        assert!(store.update_secret("a", Some("d"), t(3)).is_ok());
        store.delete_secret("a", None, false, t(4)).unwrap();
        let after = t(4 + 30 * 86400);
        assert_eq!(
            store.describe_secret("a", false, after).unwrap_err().code,
            "Forbidden.ResourceNotFound"
        );
    }

    #[test]
    fn forced_deletion_is_final() {
        let mut store = store_with("a", "x");
        store.delete_secret("a", Some(7), true, t(1)).unwrap();
        assert_eq!(
            store.restore_secret("a", t(2)).unwrap_err().code,
            "Forbidden.ResourceNotFound"
        );
        assert!(create(&mut store, "a").is_ok());
    }

    fn list_req() -> ListSecretsReq {
        ListSecretsReq {
            page_number: 1,
            page_size: 10,
            ..Default::default()
        }
    }

    #[test]
    fn list_filters_and_pages() {
        let mut store = store_with("a", "x");
        for n in ["b", "c", "d"] {
            create(&mut store, n).unwrap();
        }
        store
            .secrets
            .get_mut("c")
            .unwrap()
            .tags
            .insert("team".into(), "x".into());
        let mut req = list_req();
        req.page_size = 3;
        req.page_number = 2;
        let out = store.list_secrets(&req, t(2)).unwrap();
        assert_eq!(out["TotalCount"], 4);
        assert_eq!(out["SecretList"]["Secret"][0]["SecretName"], "d");
        let mut req = list_req();
        req.filters = vec![
            ("SecretName".into(), vec!["a".into(), "c".into()]),
            ("TagKey".into(), vec!["team".into()]),
        ];
        req.fetch_tags = true;
        let out = store.list_secrets(&req, t(2)).unwrap();
        assert_eq!(out["TotalCount"], 1);
        assert_eq!(
            out["SecretList"]["Secret"][0]["Tags"]["Tag"][0]["TagKey"],
            "team"
        );
        req.page_size = 101;
        assert!(store.list_secrets(&req, t(2)).is_err());
    }
}
