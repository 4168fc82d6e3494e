//! What one field manager owns on a Secret, read from `metadata.managedFields` (apply step): the
//! apiserver's record of our last server-side apply, so an apply that would remove something can
//! be told from one that would change nothing.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::Value;

/// The managed parts of a Secret a field manager owns, by key: data keys, label and annotation
/// keys, and owner references (a list keyed by `uid` in server-side apply).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedFields {
    pub data: BTreeSet<String>,
    pub labels: BTreeSet<String>,
    pub annotations: BTreeSet<String>,
    pub owner_uids: BTreeSet<String>,
}

impl OwnedFields {
    /// What a manager owns after server-side applying `secret`: every field the object sets.
    pub fn of_applied(secret: &Secret) -> Self {
        let keys = |map: Option<&BTreeMap<String, String>>| {
            map.into_iter().flat_map(|m| m.keys().cloned()).collect()
        };
        Self {
            data: secret.data.iter().flat_map(|d| d.keys().cloned()).collect(),
            labels: keys(secret.metadata.labels.as_ref()),
            annotations: keys(secret.metadata.annotations.as_ref()),
            owner_uids: secret
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|r| r.uid.clone())
                .collect(),
        }
    }

    /// What `manager` owns on `secret` through server-side apply; `None` when it never applied
    /// this Secret (or the object came without managedFields), so nothing of its can be known.
    pub fn applied_by(secret: &Secret, manager: &str) -> Option<Self> {
        let mut entries = secret
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|e| is_apply_by(e, manager))
            .peekable();
        entries.peek()?;
        let mut owned = Self::default();
        for fields in entries.filter_map(|e| e.fields_v1.as_ref()) {
            owned.add(&fields.0);
        }
        Some(owned)
    }

    /// Adds the fields of one `fieldsV1` trie, e.g.
    /// `{"f:data":{"f:k":{}},"f:metadata":{"f:ownerReferences":{"k:{\"uid\":\"…\"}":{}}}}`.
    fn add(&mut self, fields: &Value) {
        let metadata = fields.get("f:metadata");
        self.data.extend(field_names(fields.get("f:data")));
        self.labels
            .extend(field_names(metadata.and_then(|m| m.get("f:labels"))));
        self.annotations
            .extend(field_names(metadata.and_then(|m| m.get("f:annotations"))));
        self.owner_uids.extend(list_keys(
            metadata.and_then(|m| m.get("f:ownerReferences")),
            "uid",
        ));
    }
}

/// An Apply entry of `manager` on the object itself (an Update entry records ownership of a
/// plain PUT/PATCH, which our applies never make; a subresource entry is another object part).
fn is_apply_by(entry: &ManagedFieldsEntry, manager: &str) -> bool {
    entry.manager.as_deref() == Some(manager)
        && entry.operation.as_deref() == Some("Apply")
        && entry.subresource.as_deref().unwrap_or_default().is_empty()
}

/// Map keys owned under `node`: its `f:<key>` children (`.` marks the map itself, not a key).
fn field_names(node: Option<&Value>) -> impl Iterator<Item = String> + '_ {
    node.and_then(Value::as_object)
        .into_iter()
        .flat_map(|children| children.keys())
        .filter_map(|k| k.strip_prefix("f:").map(String::from))
}

/// The `key` field of each list item owned under `node`: children `k:{"<key>":"<value>",…}`.
fn list_keys<'a>(node: Option<&'a Value>, key: &'a str) -> impl Iterator<Item = String> + 'a {
    node.and_then(Value::as_object)
        .into_iter()
        .flat_map(|children| children.keys())
        .filter_map(|k| k.strip_prefix("k:"))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .filter_map(move |item| item.get(key)?.as_str().map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ObjectMeta};
    use serde_json::json;

    fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            api_version: Some("v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    fn secret_with(entries: Vec<ManagedFieldsEntry>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                managed_fields: Some(entries),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_apply_entry_yields_data_labels_annotations_and_owner_uids() {
        let ours = entry(
            "kmsync",
            "Apply",
            json!({
                "f:data": {"f:password": {}, "f:username": {}},
                "f:metadata": {
                    "f:labels": {"f:kmsync.io/managed": {}},
                    "f:annotations": {"f:kmsync.io/managed-secret": {}, "f:kmsync.io/synced-at": {}},
                    "f:ownerReferences": {"k:{\"uid\":\"uid-1\"}": {}}
                },
                "f:type": {}
            }),
        );
        let owned = OwnedFields::applied_by(&secret_with(vec![ours]), "kmsync").unwrap();
        assert_eq!(owned.data, set(&["password", "username"]));
        assert_eq!(owned.labels, set(&["kmsync.io/managed"]));
        assert_eq!(
            owned.annotations,
            set(&["kmsync.io/managed-secret", "kmsync.io/synced-at"])
        );
        assert_eq!(owned.owner_uids, set(&["uid-1"]));
    }

    #[test]
    fn other_managers_update_entries_and_map_markers_are_not_ours() {
        let entries = vec![
            entry("kmsync", "Apply", json!({"f:data": {".": {}, "f:k": {}}})),
            entry(
                "kubectl-edit",
                "Update",
                json!({"f:data": {".": {}, "f:theirs": {}},
                       "f:metadata": {"f:labels": {"f:team": {}}}}),
            ),
            entry("someone-else", "Apply", json!({"f:data": {"f:also": {}}})),
            entry("kmsync", "Update", json!({"f:data": {"f:stale": {}}})),
        ];
        let owned = OwnedFields::applied_by(&secret_with(entries), "kmsync").unwrap();
        assert_eq!(
            owned,
            OwnedFields {
                data: set(&["k"]),
                ..Default::default()
            }
        );
    }

    #[test]
    fn no_apply_entry_of_ours_means_unknown_not_empty() {
        let theirs = entry("someone-else", "Apply", json!({"f:data": {"f:k": {}}}));
        assert_eq!(
            OwnedFields::applied_by(&secret_with(vec![theirs]), "kmsync"),
            None
        );
        assert_eq!(OwnedFields::applied_by(&Secret::default(), "kmsync"), None);
        let empty = entry("kmsync", "Apply", json!({}));
        assert_eq!(
            OwnedFields::applied_by(&secret_with(vec![empty]), "kmsync"),
            Some(OwnedFields::default())
        );
    }
}
