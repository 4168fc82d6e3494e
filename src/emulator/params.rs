//! Typed access to the merged query + form parameters of one API call (kms-api.md §1.2):
//! required/optional strings, case-insensitive booleans, integers and JSON-string values.

use std::collections::BTreeMap;

use super::error::KmsError;

/// The request parameters, query and form body merged (form wins on a clash).
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A present, non-empty value.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn req(&self, name: &str) -> Result<&str, KmsError> {
        self.opt(name).ok_or_else(|| KmsError::missing(name))
    }

    /// `true`/`false` in any case; absent means `default`.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, KmsError> {
        match self.opt(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(KmsError::invalid(name)),
        }
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, KmsError> {
        match self.opt(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| KmsError::invalid(name)),
        }
    }

    /// A JSON-string parameter such as `Tags` or `VersionStages`.
    pub fn json(&self, name: &str) -> Result<Option<serde_json::Value>, KmsError> {
        self.opt(name)
            .map(|v| serde_json::from_str(v).map_err(|_| KmsError::invalid(name)))
            .transpose()
    }

    /// Flattened 1-based list `Prefix.1`, `Prefix.2`, … (stops at the first gap, at most 1000).
    pub fn list(&self, prefix: &str) -> Vec<String> {
        (1..=1000)
            .map_while(|i| self.opt(&format!("{prefix}.{i}")).map(str::to_string))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_case_insensitive() {
        let p = Params::from_pairs([("A", "True"), ("B", "false"), ("C", "yes")]);
        assert!(p.bool("A", false).unwrap());
        assert!(!p.bool("B", true).unwrap());
        assert_eq!(p.bool("C", true).unwrap_err().code, "InvalidParameter");
        assert!(p.bool("D", true).unwrap());
    }

    #[test]
    fn flattened_lists_stop_at_gap() {
        let p = Params::from_pairs([("T.1", "a"), ("T.2", "b"), ("T.4", "d")]);
        assert_eq!(p.list("T"), vec!["a", "b"]);
        assert_eq!(p.req("X").unwrap_err().code, "MissingParameter");
    }
}
