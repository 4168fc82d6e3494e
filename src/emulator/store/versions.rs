//! Version actions: GetSecretValue, BatchGetSecretValue, PutSecretValue (promotion, explicit
//! stages, idempotency, roll-off), UpdateSecretVersionStage and ListSecretVersionIds.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::lifecycle::{validate_data_type, validate_version_id};
use super::{ACS_CURRENT, ACS_PREVIOUS, KmsError, Secret, Store, Version, fmt_time};

#[derive(Debug, Clone, Default)]
pub struct GetSecretValueReq {
    pub name: String,
    pub version_id: Option<String>,
    pub version_stage: Option<String>,
}

#[derive(Clone, Default)]
pub struct PutSecretValueReq {
    pub name: String,
    pub version_id: String,
    pub data: String,
    pub data_type: Option<String>,
    /// `None`: default promotion to `ACSCurrent`.
    pub stages: Option<Vec<String>>,
}

impl std::fmt::Debug for PutSecretValueReq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecretValueReq")
            .field("name", &self.name)
            .field("version_id", &self.version_id)
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default)]
pub struct UpdateStageReq {
    pub name: String,
    pub stage: String,
    pub remove_from: Option<String>,
    pub move_to: Option<String>,
}

fn is_builtin(stage: &str) -> bool {
    stage == ACS_CURRENT || stage == ACS_PREVIOUS
}

fn validate_stage(stage: &str) -> Result<(), KmsError> {
    let ok = stage
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if stage.is_empty() || stage.len() > 64 || !ok {
        return Err(KmsError::invalid("VersionStage"));
    }
    Ok(())
}

fn stages_json(v: &Version) -> Value {
    json!({ "VersionStage": v.stages })
}

fn value_json(s: &Secret, v: &Version) -> Value {
    json!({
        "SecretName": s.name,
        "VersionId": v.id,
        "SecretData": v.data,
        "SecretDataType": v.data_type,
        "SecretType": s.secret_type,
        "VersionStages": stages_json(v),
        "CreateTime": fmt_time(v.create_time),
    })
}

impl Store {
    pub fn get_secret_value(
        &mut self,
        req: &GetSecretValueReq,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        let secret = self.live(&req.name, now)?;
        let version = match (&req.version_id, &req.version_stage) {
            (Some(id), stage) => secret
                .version(id)
                .filter(|v| stage.as_ref().is_none_or(|s| v.stages.contains(s))),
            (None, stage) => secret.holder(stage.as_deref().unwrap_or(ACS_CURRENT)),
        };
        let version = version.ok_or_else(KmsError::not_found)?;
        Ok(value_json(secret, version))
    }

    /// Up to 20 lookups; failures are reported per secret in `Errors`.
    pub fn batch_get_secret_value(
        &mut self,
        reqs: &[GetSecretValueReq],
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        if reqs.is_empty() || reqs.len() > 20 {
            return Err(KmsError::invalid("SecretsList"));
        }
        let (mut values, mut errors) = (Vec::new(), Vec::new());
        for req in reqs {
            match self.get_secret_value(req, now) {
                Ok(v) => values.push(v),
                Err(e) => errors.push(json!({
                    "SecretName": req.name, "Code": e.code,
                    "HttpStatus": e.status.to_string(), "Message": e.message,
                })),
            }
        }
        Ok(json!({"SecretValues": values, "Errors": errors}))
    }

    pub fn put_secret_value(
        &mut self,
        req: PutSecretValueReq,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        validate_version_id(&req.version_id)?;
        let data_type = validate_data_type(req.data_type.as_deref())?;
        self.check_value(&req.data)?;
        if let Some(stages) = &req.stages {
            stages.iter().try_for_each(|s| validate_stage(s))?;
        }
        let sem = self.semantics.clone();
        let secret = self.live(&req.name, now)?;
        if secret.secret_type != "Generic" {
            return Err(KmsError::invalid_msg(
                "PutSecretValue is only supported for Generic secrets.",
            ));
        }
        if let Some(v) = secret.version(&req.version_id) {
            if v.data == req.data && v.data_type == data_type {
                return Ok(
                    json!({"SecretName": secret.name, "VersionId": v.id, "VersionStages": stages_json(v)}),
                );
            }
            return Err(KmsError::exists());
        }
        let mut next = secret.clone();
        next.versions.push(Version {
            id: req.version_id.clone(),
            data: req.data,
            data_type,
            create_time: now,
            stages: Vec::new(),
        });
        match &req.stages {
            None => next.make_current(&req.version_id, true),
            Some(stages) => {
                for stage in stages {
                    if stage == ACS_CURRENT {
                        let demote = sem.promote_previous_on_move
                            && !stages.iter().any(|s| s == ACS_PREVIOUS);
                        next.make_current(&req.version_id, demote);
                    } else {
                        next.set_stage(stage, &req.version_id);
                    }
                }
            }
        }
        if next.stage_count() > sem.max_stages {
            return Err(KmsError::invalid_msg(format!(
                "A secret can carry at most {} version stages.",
                sem.max_stages
            )));
        }
        next.roll_off(sem.max_versions);
        next.update_time = now;
        let out = json!({
            "SecretName": next.name,
            "VersionId": req.version_id,
            "VersionStages": next.version(&req.version_id).map(stages_json),
        });
        *secret = next;
        Ok(out)
    }

    pub fn update_secret_version_stage(
        &mut self,
        req: &UpdateStageReq,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        validate_stage(&req.stage)?;
        let builtin = is_builtin(&req.stage);
        if req.move_to.is_none() && (req.remove_from.is_none() || builtin) {
            return Err(KmsError::missing("MoveToVersion"));
        }
        let demote = self.semantics.promote_previous_on_move;
        let max_stages = self.semantics.max_stages;
        let secret = self.live(&req.name, now)?;
        if secret.secret_type != "Generic" {
            return Err(KmsError::invalid_msg(
                "UpdateSecretVersionStage is only supported for Generic secrets.",
            ));
        }
        if let Some(from) = &req.remove_from {
            let v = secret.version(from).ok_or_else(KmsError::not_found)?;
            if !v.stages.contains(&req.stage) {
                return Err(KmsError::invalid("RemoveFromVersion"));
            }
        }
        if let Some(to) = &req.move_to {
            secret.version(to).ok_or_else(KmsError::not_found)?;
        }
        let mut next = secret.clone();
        match &req.move_to {
            None => next.remove_stage(&req.stage),
            Some(to) if req.stage == ACS_CURRENT => next.make_current(to, demote),
            Some(to) => next.set_stage(&req.stage, to),
        }
        if next.stage_count() > max_stages {
            return Err(KmsError::invalid_msg(format!(
                "A secret can carry at most {max_stages} version stages."
            )));
        }
        next.update_time = now;
        *secret = next;
        Ok(json!({"SecretName": secret.name}))
    }

    pub fn list_secret_version_ids(
        &mut self,
        name: &str,
        include_deprecated: bool,
        page_number: i64,
        page_size: i64,
        now: Timestamp,
    ) -> Result<Value, KmsError> {
        let max = self.semantics.max_version_page_size;
        if page_number < 1 {
            return Err(KmsError::invalid("PageNumber"));
        }
        if !(1..=max).contains(&page_size) {
            return Err(KmsError::invalid("PageSize"));
        }
        let secret = self.find(name, now)?;
        let visible: Vec<&Version> = secret
            .versions
            .iter()
            .filter(|v| include_deprecated || !v.stages.is_empty())
            .collect();
        let skip = usize::try_from((page_number - 1) * page_size).unwrap_or(usize::MAX);
        let page: Vec<Value> = visible
            .iter()
            .skip(skip)
            .take(page_size as usize)
            .map(|v| json!({"VersionId": v.id, "CreateTime": fmt_time(v.create_time), "VersionStages": stages_json(v)}))
            .collect();
        Ok(json!({
            "SecretName": secret.name,
            "PageNumber": page_number,
            "PageSize": page_size,
            "TotalCount": visible.len(),
            "VersionIds": {"VersionId": page},
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn put(
        store: &mut Store,
        id: &str,
        data: &str,
        stages: Option<&[&str]>,
    ) -> Result<Value, KmsError> {
        store.put_secret_value(
            PutSecretValueReq {
                name: "s".into(),
                version_id: id.into(),
                data: data.into(),
                stages: stages.map(|s| s.iter().map(|x| x.to_string()).collect()),
                ..Default::default()
            },
            t(10),
        )
    }

    fn get(store: &mut Store, id: Option<&str>, stage: Option<&str>) -> Result<Value, KmsError> {
        store.get_secret_value(
            &GetSecretValueReq {
                name: "s".into(),
                version_id: id.map(Into::into),
                version_stage: stage.map(Into::into),
            },
            t(20),
        )
    }

    fn mv(
        store: &mut Store,
        stage: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Value, KmsError> {
        store.update_secret_version_stage(
            &UpdateStageReq {
                name: "s".into(),
                stage: stage.into(),
                remove_from: from.map(Into::into),
                move_to: to.map(Into::into),
            },
            t(30),
        )
    }

    fn sv(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(id, st)| (id.to_string(), st.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn single_call_rotation() {
        let mut store = store_with("s", "one");
        let out = put(&mut store, "v2", "two", None).unwrap();
        assert_eq!(out["VersionStages"]["VersionStage"][0], "ACSCurrent");
        assert_eq!(get(&mut store, None, None).unwrap()["SecretData"], "two");
        assert_eq!(
            get(&mut store, None, Some("ACSPrevious")).unwrap()["VersionId"],
            "v1"
        );
        put(&mut store, "v3", "three", None).unwrap();
        assert_eq!(
            stages(&store, "s"),
            sv(&[
                ("v1", &[]),
                ("v2", &["ACSPrevious"]),
                ("v3", &["ACSCurrent"])
            ])
        );
        // deprecated versions stay readable by id
        assert_eq!(
            get(&mut store, Some("v1"), None).unwrap()["SecretData"],
            "one"
        );
    }

    #[test]
    fn multi_call_rotation() {
        let mut store = store_with("s", "one");
        put(&mut store, "v2", "two", Some(&["MyPendingLabel"])).unwrap();
        assert_eq!(get(&mut store, None, None).unwrap()["VersionId"], "v1");
        assert_eq!(
            get(&mut store, None, Some("MyPendingLabel")).unwrap()["SecretData"],
            "two"
        );
        mv(&mut store, "ACSCurrent", None, Some("v2")).unwrap();
        assert_eq!(get(&mut store, None, None).unwrap()["SecretData"], "two");
        assert_eq!(
            stages(&store, "s"),
            sv(&[
                ("v1", &["ACSPrevious"]),
                ("v2", &["MyPendingLabel", "ACSCurrent"])
            ])
        );
        mv(&mut store, "MyPendingLabel", Some("v2"), None).unwrap();
        assert_eq!(
            stages(&store, "s"),
            sv(&[("v1", &["ACSPrevious"]), ("v2", &["ACSCurrent"])])
        );
    }

    #[test]
    fn move_without_demotion_when_configured() {
        let mut store = store_with("s", "one");
        store.semantics.promote_previous_on_move = false;
        put(&mut store, "v2", "two", Some(&["P"])).unwrap();
        mv(&mut store, "ACSCurrent", Some("v1"), Some("v2")).unwrap();
        assert_eq!(
            stages(&store, "s"),
            sv(&[("v1", &[]), ("v2", &["P", "ACSCurrent"])])
        );
    }

    #[test]
    fn explicit_current_demotes_by_default() {
        let mut store = store_with("s", "one");
        put(&mut store, "v2", "two", Some(&["ACSCurrent", "X"])).unwrap();
        assert_eq!(
            stages(&store, "s"),
            sv(&[("v1", &["ACSPrevious"]), ("v2", &["ACSCurrent", "X"])])
        );
    }

    #[test]
    fn put_is_idempotent_and_conflicts() {
        let mut store = store_with("s", "one");
        put(&mut store, "v2", "two", None).unwrap();
        let again = put(&mut store, "v2", "two", None).unwrap();
        assert_eq!(again["VersionId"], "v2");
        assert_eq!(
            stages(&store, "s"),
            sv(&[("v1", &["ACSPrevious"]), ("v2", &["ACSCurrent"])])
        );
        assert_eq!(
            put(&mut store, "v2", "other", None).unwrap_err().code,
            "Rejected.ResourceExist"
        );
        assert_eq!(
            put(&mut store, "v1", "one", None).unwrap()["VersionId"],
            "v1"
        );
    }

    #[test]
    fn ten_version_roll_off_keeps_labeled() {
        let mut store = store_with("s", "0");
        put(&mut store, "keep", "k", Some(&["Pinned"])).unwrap();
        for i in 2..=12 {
            put(&mut store, &format!("v{i}"), &i.to_string(), None).unwrap();
        }
        let ids: Vec<String> = stages(&store, "s").into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 10);
        assert_eq!(ids[0], "keep");
        assert!(!ids.contains(&"v1".to_string()));
        assert_eq!(ids[9], "v12");
    }

    #[test]
    fn label_cap() {
        let mut store = store_with("s", "0");
        for i in 1..=7 {
            put(&mut store, &format!("x{i}"), "d", Some(&[&format!("L{i}")])).unwrap();
        }
        let err = put(&mut store, "x8", "d", Some(&["L8"])).unwrap_err();
        assert_eq!(err.code, "InvalidParameter");
        assert!(store.secrets["s"].version("x8").is_none());
        // moving an existing label is fine
        mv(&mut store, "L1", None, Some("x2")).unwrap();
    }

    #[test]
    fn stage_rules() {
        let mut store = store_with("s", "one");
        put(&mut store, "v2", "two", Some(&["P"])).unwrap();
        assert_eq!(
            mv(&mut store, "ACSCurrent", Some("v1"), None)
                .unwrap_err()
                .code,
            "MissingParameter"
        );
        assert_eq!(
            mv(&mut store, "P", None, None).unwrap_err().code,
            "MissingParameter"
        );
        assert_eq!(
            mv(&mut store, "P", Some("v1"), None).unwrap_err().code,
            "InvalidParameter"
        );
        assert_eq!(
            mv(&mut store, "P", None, Some("nope")).unwrap_err().code,
            "Forbidden.ResourceNotFound"
        );
        assert_eq!(
            get(&mut store, Some("v2"), Some("ACSCurrent"))
                .unwrap_err()
                .code,
            "Forbidden.ResourceNotFound"
        );
        assert_eq!(
            get(&mut store, None, Some("Nope")).unwrap_err().code,
            "Forbidden.ResourceNotFound"
        );
    }

    #[test]
    fn version_listing() {
        let mut store = store_with("s", "one");
        put(&mut store, "v2", "two", None).unwrap();
        put(&mut store, "v3", "three", None).unwrap();
        let out = store
            .list_secret_version_ids("s", false, 1, 20, t(40))
            .unwrap();
        assert_eq!(out["TotalCount"], 2);
        let out = store
            .list_secret_version_ids("s", true, 2, 2, t(40))
            .unwrap();
        assert_eq!(out["TotalCount"], 3);
        assert_eq!(out["VersionIds"]["VersionId"][0]["VersionId"], "v3");
        assert!(
            store
                .list_secret_version_ids("s", true, 1, 101, t(40))
                .is_err()
        );
    }

    #[test]
    fn batch_reports_errors() {
        let mut store = store_with("s", "one");
        let reqs = [
            GetSecretValueReq {
                name: "s".into(),
                ..Default::default()
            },
            GetSecretValueReq {
                name: "nope".into(),
                ..Default::default()
            },
        ];
        let out = store.batch_get_secret_value(&reqs, t(1)).unwrap();
        assert_eq!(out["SecretValues"][0]["SecretData"], "one");
        assert_eq!(out["Errors"][0]["Code"], "Forbidden.ResourceNotFound");
    }

    #[test]
    fn binary_is_verbatim() {
        let mut store = store_with("s", "one");
        store
            .put_secret_value(
                PutSecretValueReq {
                    name: "s".into(),
                    version_id: "b".into(),
                    data: "AAEC".into(),
                    data_type: Some("binary".into()),
                    stages: None,
                },
                t(1),
            )
            .unwrap();
        let out = get(&mut store, None, None).unwrap();
        assert_eq!(
            (out["SecretData"].as_str(), out["SecretDataType"].as_str()),
            (Some("AAEC"), Some("binary"))
        );
    }
}
