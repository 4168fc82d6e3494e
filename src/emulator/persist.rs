//! State on disk: the JSON state file (written atomically: temp file + rename, so a restart
//! loses nothing) and the YAML seed that preloads secrets with versions and stages.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use jiff::Timestamp;
use serde::Deserialize;

use super::store::lifecycle_rules::{validate_data_type, validate_name, validate_version_id};
use super::store::{ACS_CURRENT, Secret, Semantics, Store, Version};

/// Writes `bytes` to `path` atomically (sibling temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn save_state(path: &Path, store: &Store) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(store).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// The saved store, or `None` when the file does not exist.
pub fn load_state(path: &Path, semantics: &Semantics) -> Result<Option<Store>, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mut store: Store = serde_json::from_slice(&bytes)
                .map_err(|e| format!("state file {}: {e}", path.display()))?;
            store.semantics = semantics.clone();
            Ok(Some(store))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("state file {}: {e}", path.display())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    secrets: Vec<SeedSecret>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SeedSecret {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "generic", rename = "type")]
    secret_type: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    versions: Vec<SeedVersion>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SeedVersion {
    id: String,
    data: String,
    #[serde(default)]
    data_type: Option<String>,
    #[serde(default)]
    stages: Vec<String>,
}

impl std::fmt::Debug for SeedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedVersion")
            .field("id", &self.id)
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

fn generic() -> String {
    "Generic".to_string()
}

fn seed_secret(s: SeedSecret, sem: &Semantics, now: Timestamp) -> Result<Secret, String> {
    let err = |m: &str| format!("seed secret {:?}: {m}", s.name);
    validate_name(&s.name, &s.secret_type).map_err(|e| err(&e.message))?;
    if s.versions.is_empty() || s.versions.len() > sem.max_versions {
        return Err(err("needs 1 to max_versions versions"));
    }
    if s.tags.len() > sem.max_tags {
        return Err(err("too many tags"));
    }
    let mut versions: Vec<Version> = Vec::new();
    for v in s.versions {
        validate_version_id(&v.id).map_err(|e| err(&e.message))?;
        if v.data.len() > sem.max_value_bytes || versions.iter().any(|x| x.id == v.id) {
            return Err(err("duplicate version id or value too large"));
        }
        let data_type = validate_data_type(v.data_type.as_deref()).map_err(|e| err(&e.message))?;
        versions.push(Version {
            id: v.id,
            data: v.data,
            data_type,
            create_time: now,
            stages: v.stages,
        });
    }
    let mut labels: Vec<&String> = versions.iter().flat_map(|v| &v.stages).collect();
    let count = labels.len();
    labels.sort();
    labels.dedup();
    if labels.len() != count || count > sem.max_stages {
        return Err(err(
            "a stage label appears twice or there are too many labels",
        ));
    }
    if !labels.iter().any(|l| *l == ACS_CURRENT)
        && let Some(last) = versions.last_mut()
    {
        last.stages.push(ACS_CURRENT.to_string());
    }
    Ok(Secret {
        name: s.name,
        secret_type: s.secret_type,
        description: s.description,
        encryption_key_id: None,
        dkms_instance_id: None,
        create_time: now,
        update_time: now,
        tags: s.tags,
        versions,
        planned_delete_time: None,
    })
}

/// Adds the secrets of a YAML seed to `store` (replacing same-named ones).
pub fn apply_seed(store: &mut Store, yaml: &str, now: Timestamp) -> Result<usize, String> {
    let file: SeedFile = serde_norway::from_str(yaml).map_err(|e| format!("seed: {e}"))?;
    let count = file.secrets.len();
    for s in file.secrets {
        let secret = seed_secret(s, &store.semantics, now)?;
        store.secrets.insert(secret.name.clone(), secret);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"
secrets:
  - name: prod/db
    description: database
    tags: {team: core}
    versions:
      - {id: v1, data: old, stages: [ACSPrevious]}
      - {id: v2, data: '{"pwd":"x"}', stages: [ACSCurrent, Pinned]}
  - name: bin
    versions:
      - {id: b1, data: AAEC, dataType: binary}
"#;

    #[test]
    fn seed_and_state_round_trip() {
        let now = Timestamp::now();
        let mut store = Store::new("cn-hangzhou", Semantics::default());
        assert_eq!(apply_seed(&mut store, SEED, now).unwrap(), 2);
        assert_eq!(
            store.secrets["prod/db"].holder("ACSCurrent").unwrap().id,
            "v2"
        );
        assert_eq!(store.secrets["bin"].versions[0].stages, vec!["ACSCurrent"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save_state(&path, &store).unwrap();
        let loaded = load_state(&path, &Semantics::default()).unwrap().unwrap();
        assert_eq!(loaded.secrets, store.secrets);
        assert!(
            load_state(&dir.path().join("none"), &Semantics::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn seed_rejects_duplicate_labels() {
        let bad = "secrets:\n  - name: a\n    versions:\n      - {id: v1, data: x, stages: [ACSCurrent]}\n      - {id: v2, data: y, stages: [ACSCurrent]}\n";
        let mut store = Store::new("r", Semantics::default());
        assert!(apply_seed(&mut store, bad, Timestamp::now()).is_err());
    }
}
