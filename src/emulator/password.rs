//! GetRandomPassword (kms-api.md §3): length 8–128, character-class exclusions, excluded
//! characters and "require each included type".

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};

use super::error::KmsError;

/// The 32 ASCII punctuation characters, no space (§9.4).
pub const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

#[derive(Debug, Clone)]
pub struct PasswordReq {
    pub length: i64,
    pub exclude_characters: String,
    pub exclude_lowercase: bool,
    pub exclude_uppercase: bool,
    pub exclude_numbers: bool,
    pub exclude_punctuation: bool,
    pub require_each_included_type: bool,
}

impl Default for PasswordReq {
    fn default() -> Self {
        Self {
            length: 32,
            exclude_characters: String::new(),
            exclude_lowercase: false,
            exclude_uppercase: false,
            exclude_numbers: false,
            exclude_punctuation: false,
            require_each_included_type: true,
        }
    }
}

pub fn random_password(req: &PasswordReq, rng: &mut impl Rng) -> Result<String, KmsError> {
    if !(8..=128).contains(&req.length) {
        return Err(KmsError::invalid("PasswordLength"));
    }
    let classes: Vec<Vec<char>> = [
        (req.exclude_lowercase, "abcdefghijklmnopqrstuvwxyz"),
        (req.exclude_uppercase, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        (req.exclude_numbers, "0123456789"),
        (req.exclude_punctuation, PUNCTUATION),
    ]
    .into_iter()
    .filter(|(excluded, _)| !excluded)
    .map(|(_, set)| {
        set.chars()
            .filter(|c| !req.exclude_characters.contains(*c))
            .collect::<Vec<_>>()
    })
    .filter(|set| !set.is_empty())
    .collect();
    if classes.is_empty() {
        return Err(KmsError::invalid_msg(
            "No characters are left to build a password.",
        ));
    }
    let all: Vec<char> = classes.concat();
    let mut out: Vec<char> = Vec::with_capacity(req.length as usize);
    if req.require_each_included_type {
        out.extend(classes.iter().filter_map(|set| set.choose(rng).copied()));
    }
    while out.len() < req.length as usize {
        out.extend(all.choose(rng).copied());
    }
    out.shuffle(rng);
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_honoured() {
        let mut rng = rand::rng();
        let req = PasswordReq {
            exclude_punctuation: true,
            ..Default::default()
        };
        for _ in 0..50 {
            let p = random_password(&req, &mut rng).unwrap();
            assert_eq!(p.len(), 32);
            assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
        }
        let req = PasswordReq {
            length: 8,
            exclude_lowercase: true,
            exclude_uppercase: true,
            exclude_numbers: true,
            exclude_characters: "!\"#".into(),
            ..Default::default()
        };
        let p = random_password(&req, &mut rng).unwrap();
        assert!(
            p.chars()
                .all(|c| PUNCTUATION.contains(c) && !"!\"# ".contains(c))
        );
        for len in [7, 129] {
            let req = PasswordReq {
                length: len,
                ..Default::default()
            };
            assert!(random_password(&req, &mut rng).is_err());
        }
        let req = PasswordReq {
            exclude_lowercase: true,
            exclude_uppercase: true,
            exclude_numbers: true,
            exclude_punctuation: true,
            ..Default::default()
        };
        assert!(random_password(&req, &mut rng).is_err());
    }
}
