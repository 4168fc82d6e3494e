//! Checks of `spec.rotation` that the CRD schema cannot express (cron ranges, template
//! placeholders), run before any KMS call: a broken rotation is reported when it is applied, not
//! when its first rotation falls due, and nothing is read or written meanwhile.

use jiff::Timestamp;

use super::{schedule, template};
use crate::controller::error::Error;
use crate::crd::rotation::RotationSpec;

/// `InvalidSpec` for a schedule or duration the controller cannot use, `InvalidTemplate` for a
/// template that no value could render.
pub fn check(rotation: Option<&RotationSpec>, now: Timestamp) -> Result<(), Error> {
    let Some(spec) = rotation else {
        return Ok(());
    };
    schedule::next_scheduled(spec, now).map_err(Error::InvalidSpec)?;
    schedule::min_interval(spec).map_err(Error::InvalidSpec)?;
    if let Some(text) = &spec.generate.template {
        template::check(text).map_err(Error::InvalidTemplate)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(rotation: serde_json::Value) -> Option<&'static str> {
        let spec: RotationSpec = serde_json::from_value(rotation).expect("rotation spec");
        check(Some(&spec), "2026-01-01T00:00:00Z".parse().unwrap())
            .err()
            .map(|e| e.reason())
    }

    #[test]
    fn good_and_bad_rotations() {
        assert_eq!(check(None, Timestamp::UNIX_EPOCH).ok(), Some(()));
        assert_eq!(
            reason(serde_json::json!({"schedule": "0 3 * * 0",
                "generate": {"template": "{\"pwd\":\"{{ password }}\"}"}})),
            None
        );
        assert_eq!(
            reason(serde_json::json!({"schedule": "61 * * * *"})),
            Some("InvalidSpec")
        );
        assert_eq!(
            reason(serde_json::json!({"interval": "720h", "minInterval": "soon"})),
            Some("InvalidSpec")
        );
        assert_eq!(
            reason(serde_json::json!({"interval": "720h",
                "generate": {"template": "{{ passwd }}"}})),
            Some("InvalidTemplate")
        );
    }
}
