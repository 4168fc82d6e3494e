//! Composing the new secret value: without a template it is the generated password; a template
//! (usually JSON) may use `{{ password }}` and `{{ current.<key> }}` (a top-level field of the
//! current value, e.g. the user name). Placeholders are replaced JSON-escaped when the template is
//! JSON, so a password with quotes cannot break the document. Errors never contain values.

/// Why a template cannot be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template placeholder {{{{ {0} }}}} is unknown (use password or current.<key>)")]
    UnknownPlaceholder(String),
    #[error("template uses current.{0}, but the current value has no such top-level field")]
    MissingCurrentField(String),
    #[error("template uses current.{0}, but the current value is not a JSON object")]
    CurrentNotJson(String),
    #[error("template has an unclosed {{{{")]
    Unclosed,
    #[error("the rendered template is not valid JSON although the template looks like JSON")]
    InvalidJson,
}

/// Renders `template` (or the bare password) for `password` and the `current` value bytes.
pub fn render(
    template: Option<&str>,
    password: &str,
    current: Option<&[u8]>,
) -> Result<String, TemplateError> {
    let Some(template) = template else {
        return Ok(password.to_string());
    };
    let current_json: Option<serde_json::Value> =
        current.and_then(|c| serde_json::from_slice(c).ok());
    fill(template, |name| {
        if name == "password" {
            return Ok(password.to_string());
        }
        let Some(key) = name.strip_prefix("current.") else {
            return Err(TemplateError::UnknownPlaceholder(
                name.chars().take(64).collect(),
            ));
        };
        let object = current_json
            .as_ref()
            .and_then(|v| v.as_object())
            .ok_or_else(|| TemplateError::CurrentNotJson(key.into()))?;
        match object.get(key) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(serde_json::Value::Null) | None => {
                Err(TemplateError::MissingCurrentField(key.into()))
            }
            Some(other) => Ok(other.to_string()),
        }
    })
}

/// What can be checked before any value exists: every placeholder is known and closed, and a
/// JSON template is JSON. Each placeholder stands in as `0`, which fits both inside a JSON string
/// and as a bare value, so only templates that no value could make valid are refused.
pub fn check(template: &str) -> Result<(), TemplateError> {
    fill(template, |name| {
        if name == "password" || name.starts_with("current.") {
            Ok("0".to_string())
        } else {
            Err(TemplateError::UnknownPlaceholder(
                name.chars().take(64).collect(),
            ))
        }
    })
    .map(drop)
}

/// Replaces each `{{ name }}` by `resolve(name)` (JSON-escaped in a JSON template) and checks
/// that a JSON template stays JSON.
fn fill(
    template: &str,
    mut resolve: impl FnMut(&str) -> Result<String, TemplateError>,
) -> Result<String, TemplateError> {
    let json_like = template.trim_start().starts_with('{');
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or(TemplateError::Unclosed)?;
        let value = resolve(after[..close].trim())?;
        if json_like {
            // Inside a JSON string: escape, dropping the surrounding quotes serde adds.
            let escaped = serde_json::to_string(&value).expect("a string serializes");
            out.push_str(&escaped[1..escaped.len() - 1]);
        } else {
            out.push_str(&value);
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    if json_like && serde_json::from_str::<serde_json::Value>(&out).is_err() {
        return Err(TemplateError::InvalidJson);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_password_without_template() {
        assert_eq!(render(None, "p@ss", None).unwrap(), "p@ss");
    }

    #[test]
    fn json_template_keeps_current_fields_and_escapes_the_password() {
        let current = br#"{"uname":"app","pwd":"old","port":5432}"#;
        let rendered = render(
            Some(
                r#"{"uname":"{{ current.uname }}","pwd":"{{ password }}","port":{{current.port}}}"#,
            ),
            r#"a"b\c"#,
            Some(current),
        )
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"uname": "app", "pwd": "a\"b\\c", "port": 5432})
        );
    }

    #[test]
    fn errors_name_the_problem_not_the_values() {
        let canary = "canary-template-77";
        let current = format!(r#"{{"pwd":"{canary}"}}"#);
        let missing = render(
            Some(r#"{"u":"{{ current.uname }}"}"#),
            canary,
            Some(current.as_bytes()),
        )
        .unwrap_err();
        assert_eq!(missing, TemplateError::MissingCurrentField("uname".into()));
        assert!(!missing.to_string().contains(canary));
        assert_eq!(
            render(Some("{{ secret }}"), canary, None).unwrap_err(),
            TemplateError::UnknownPlaceholder("secret".into())
        );
        assert_eq!(
            render(Some("x {{ password"), canary, None).unwrap_err(),
            TemplateError::Unclosed
        );
        assert_eq!(
            render(Some(r#"{"u":"{{ current.u }}"}"#), canary, Some(b"plain")).unwrap_err(),
            TemplateError::CurrentNotJson("u".into())
        );
        assert_eq!(
            render(Some(r#"{"p": {{ password }}}"#), "not-json", None).unwrap_err(),
            TemplateError::InvalidJson
        );
    }

    #[test]
    fn check_refuses_only_what_no_value_could_fix() {
        for good in [
            r#"{"uname":"{{ current.uname }}","pwd":"{{ password }}","port":{{current.port}}}"#,
            "plain {{password}} text",
            "no placeholders",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        assert_eq!(
            check(r#"{"p":"{{ secret }}"}"#),
            Err(TemplateError::UnknownPlaceholder("secret".into()))
        );
        assert_eq!(check("{{ password"), Err(TemplateError::Unclosed));
        assert_eq!(
            check(r#"{"p": "{{ password }}",}"#),
            Err(TemplateError::InvalidJson)
        );
    }
}
