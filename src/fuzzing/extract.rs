//! Target `extract`: JSON property extraction (`render::render`): `data[].property` (top-level,
//! then a dotted path) and `dataFrom.extract`.
//!
//! Flags bit 0: `dataFrom.extract`; bit 1: every mapping optional; bit 2: round-trip mode.
//! Fields: the secret value, then property names (mapped to keys `k0`, `k1`, …). In round-trip
//! mode the fields after the first are `property, value` pairs built into a JSON object.
//!
//! Properties: an error does not change when every string in the value is replaced (so it cannot
//! hold one); extracted keys are valid Secret keys; a top-level string property is returned byte
//! for byte; without mappings the whole value lands under `value`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::text;
use crate::crd::ManagedSecretSpec;
use crate::render::{
    FetchedVersion, SecretData, VersionSelector, WHOLE_VALUE_KEY, is_valid_secret_key, render,
};

/// The fuzz target.
pub fn extract(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.split(|b| *b == 0);
    let value = fields.next().unwrap_or_default().to_vec();
    let names: Vec<String> = fields.take(32).map(text).collect();
    if flags & 4 != 0 {
        round_trip(&names);
        return;
    }
    let spec = spec(&names, flags & 1 != 0, flags & 2 != 0);
    let result = render(&spec, &fetched(value.clone()));
    // The same structure with every string replaced must fail (or not) identically.
    if let Ok(parsed) = serde_json::from_slice::<Value>(&value) {
        let mut counter = 0;
        let replaced = serde_json::to_vec(&replace_strings(parsed, &mut counter))
            .expect("a JSON value serializes");
        let again = render(&spec, &fetched(replaced));
        assert_eq!(
            result.as_ref().err(),
            again.as_ref().err(),
            "an error depends on the secret's string values"
        );
    }
    match result {
        Ok(out) => check_output(&out, &spec, &value, flags),
        Err(e) => {
            let _ = (e.reason(), e.to_string());
        }
    }
}

fn spec(properties: &[String], extract: bool, optional: bool) -> ManagedSecretSpec {
    let data: Vec<Value> = properties
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"key": format!("k{i}"), "property": p, "optional": optional}))
        .collect();
    let mut spec = json!({"storeRef": {"name": "kms"}, "secretName": "db", "data": data});
    if extract {
        spec["dataFrom"] = json!({"extract": true});
    }
    serde_json::from_value(spec).expect("a valid spec")
}

fn fetched(data: Vec<u8>) -> BTreeMap<VersionSelector, FetchedVersion> {
    BTreeMap::from([(
        VersionSelector::Stage("ACSCurrent".into()),
        FetchedVersion {
            version_id: "v1".into(),
            stages: vec!["ACSCurrent".into()],
            data,
            create_time: None,
        },
    )])
}

fn replace_strings(value: Value, counter: &mut usize) -> Value {
    match value {
        Value::String(_) => {
            *counter += 1;
            Value::String(format!("replaced-{counter}"))
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| replace_strings(v, counter))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, replace_strings(v, counter)))
                .collect(),
        ),
        other => other,
    }
}

fn check_output(out: &SecretData, spec: &ManagedSecretSpec, value: &[u8], flags: u8) {
    if spec.data.is_empty() && flags & 1 == 0 {
        assert_eq!(out.0.len(), 1);
        assert_eq!(out.0.get(WHOLE_VALUE_KEY).map(Vec::as_slice), Some(value));
        return;
    }
    let object: Option<Map<String, Value>> = serde_json::from_slice(value).ok();
    for key in out.0.keys() {
        let mapped = spec.data.iter().any(|m| &m.key == key);
        assert!(
            mapped || is_valid_secret_key(key),
            "extracted an invalid key"
        );
    }
    for mapping in &spec.data {
        let (Some(property), Some(object)) = (&mapping.property, &object) else {
            continue;
        };
        if let Some(Value::String(s)) = object.get(property) {
            assert_eq!(
                out.0.get(&mapping.key).map(Vec::as_slice),
                Some(s.as_bytes()),
                "a top-level string property is returned as is"
            );
        }
    }
}

/// `{p: v, …}` rendered with a mapping per property gives back every `v` (the last one of a
/// repeated `p`).
fn round_trip(fields: &[String]) {
    let mut object = Map::new();
    for pair in fields.chunks(2) {
        object.insert(
            pair[0].clone(),
            Value::String(pair.get(1).cloned().unwrap_or_default()),
        );
    }
    let properties: Vec<String> = object.keys().cloned().collect();
    let spec = spec(&properties, false, false);
    let value = serde_json::to_vec(&Value::Object(object.clone())).expect("serializes");
    let out = render(&spec, &fetched(value))
        .unwrap_or_else(|e| panic!("a present property failed: {}", e.reason()));
    for (i, property) in properties.iter().enumerate() {
        let expected = object[property].as_str().expect("a string");
        assert_eq!(out.0[&format!("k{i}")], expected.as_bytes());
    }
}
