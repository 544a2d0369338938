//! The ID token's non-standard claims as raw JSON, and reading Kura roles from the configured
//! (dotted-path) claim. Roles come only from the verified ID token, never from userinfo or the URL.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::IdentityError;

/// Every claim of the ID token that is not an OpenID Connect standard claim, kept as JSON so the
/// roles claim can be any name or nested path (`kura_roles`, `realm_access.roles`, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawClaims(pub Map<String, Value>);

impl openidconnect::AdditionalClaims for RawClaims {}

/// Reads the roles at `path` (dot-separated object keys) from the token's extra claims.
///
/// A missing claim means no roles. A claim that is present but is neither a string nor a list of
/// strings is an error rather than "no roles", so a provider misconfiguration is noticed.
/// A single string is one role.
pub fn roles_at(claims: &RawClaims, path: &str) -> Result<Vec<String>, IdentityError> {
    let malformed = |detail: String| IdentityError::RolesClaim {
        claim: path.to_string(),
        detail,
    };
    let mut segments = path.split('.');
    let Some(first) = segments.next() else {
        return Ok(Vec::new());
    };
    let mut current = match claims.0.get(first) {
        Some(value) => value,
        None => return Ok(Vec::new()),
    };
    for segment in segments {
        match current {
            Value::Object(map) => match map.get(segment) {
                Some(value) => current = value,
                None => return Ok(Vec::new()),
            },
            Value::Null => return Ok(Vec::new()),
            other => {
                return Err(malformed(format!(
                    "expected an object before '{segment}', found {}",
                    kind(other)
                )))
            }
        }
    }
    match current {
        Value::Null => Ok(Vec::new()),
        Value::String(role) => Ok(vec![role.clone()]),
        Value::Array(items) => {
            let mut roles = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(role) => roles.push(role.clone()),
                    other => {
                        return Err(malformed(format!(
                            "expected a list of strings, found an item that is {}",
                            kind(other)
                        )))
                    }
                }
            }
            roles.sort();
            roles.dedup();
            Ok(roles)
        }
        other => Err(malformed(format!(
            "expected a string or a list of strings, found {}",
            kind(other)
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> RawClaims {
        match v {
            Value::Object(map) => RawClaims(map),
            _ => unreachable!(),
        }
    }

    #[test]
    fn reads_flat_nested_missing_and_malformed_roles() {
        let c = claims(json!({
            "kura_roles": ["steward", "researcher", "steward"],
            "realm_access": {"roles": ["admin"]},
            "single": "reviewer",
            "bad": [1, "x"],
            "scalar": 3,
        }));
        assert_eq!(
            roles_at(&c, "kura_roles").unwrap(),
            ["researcher", "steward"]
        );
        assert_eq!(roles_at(&c, "realm_access.roles").unwrap(), ["admin"]);
        assert_eq!(roles_at(&c, "single").unwrap(), ["reviewer"]);
        assert!(roles_at(&c, "absent").unwrap().is_empty());
        assert!(roles_at(&c, "realm_access.absent").unwrap().is_empty());
        assert!(roles_at(&c, "bad").is_err());
        assert!(roles_at(&c, "scalar").is_err());
        assert!(roles_at(&c, "single.deeper").is_err());
    }
}
