//! Target `template`: value templates of rotations (`rotation::template::render`).
//!
//! Flags bit 0: no template (the bare password); bit 1: no current value.
//! Fields: template, password, current value.
//!
//! Properties: a JSON-looking template renders to valid JSON or fails; errors other than "not valid
//! JSON" are the same for any password (so they cannot hold it); a text without `{{` renders to
//! itself; `{"p":"{{ password }}"}` and `{"u":"{{ current.<key> }}"}` give back the password and
//! the current string field exactly, whatever their characters.

use serde_json::Value;

use super::{split, text};
use crate::rotation::template::{TemplateError, render};

/// The fuzz target.
pub fn template(data: &[u8]) {
    let (flags, fields) = split(data, 3);
    let template = (flags & 1 == 0).then(|| text(fields[0]));
    let password = text(fields[1]);
    let current = (flags & 2 == 0).then_some(fields[2]);
    let result = render(template.as_deref(), &password, current);
    let Some(template) = template else {
        assert_eq!(result.as_deref(), Ok(password.as_str()));
        return;
    };
    let json_like = template.trim_start().starts_with('{');
    match &result {
        Ok(out) if json_like => {
            assert!(
                serde_json::from_str::<Value>(out).is_ok(),
                "rendered JSON-looking template is not JSON"
            );
        }
        Ok(_) => {}
        Err(TemplateError::InvalidJson) => assert!(json_like),
        Err(e) => {
            let other = render(Some(&template), "other-password", current);
            assert_eq!(
                other.as_ref().err(),
                Some(e),
                "an error depends on the password"
            );
        }
    }
    if !template.contains("{{") {
        let valid = !json_like || serde_json::from_str::<Value>(&template).is_ok();
        let expected = if valid {
            Ok(template.clone())
        } else {
            Err(TemplateError::InvalidJson)
        };
        assert_eq!(
            result, expected,
            "a template without placeholders is itself"
        );
    }
    password_round_trip(&password);
    if let Some(current) = current {
        current_round_trip(current);
    }
}

fn password_round_trip(password: &str) {
    let out = render(Some(r#"{"p":"{{ password }}"}"#), password, None)
        .unwrap_or_else(|e| panic!("password template failed: {e}"));
    let value: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(value["p"].as_str(), Some(password), "password round trip");
}

fn current_round_trip(current: &[u8]) {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(current) else {
        return;
    };
    for (key, value) in object.iter().take(8) {
        let Value::String(expected) = value else {
            continue;
        };
        // Keys a placeholder cannot name (they end it early or lose their blanks) are skipped.
        if key.contains("}}") || key.trim() != key || key.ends_with('}') {
            continue;
        }
        let template = format!(r#"{{"u":"{{{{ current.{key} }}}}"}}"#);
        let out = render(Some(&template), "pw", Some(current))
            .unwrap_or_else(|e| panic!("current template failed: {e}"));
        let rendered: Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(rendered["u"].as_str(), Some(expected.as_str()));
    }
}
