//! The crate's one error type. Every load error names the file and says what to fix, because the
//! server refuses to start on it and an operator has to act on the message.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{file}: invalid Cedar schema: {message}")]
    Schema { file: String, message: String },

    #[error("{file}: Cedar syntax error: {message}")]
    Parse { file: String, message: String },

    #[error("{file}: policy at {location} has no @id(\"...\") annotation; give every policy a unique, descriptive id")]
    MissingId { file: String, location: String },

    #[error("{file}: policy id {id:?} is already used in {first_file}; policy ids must be unique")]
    DuplicateId {
        file: String,
        id: String,
        first_file: String,
    },

    #[error("{file}: contains a template ({id}); Kura's authorization policies must be static")]
    Template { file: String, id: String },

    #[error(
        "{file}: policy {id:?} does not validate against kura.cedarschema (strict mode): {message}"
    )]
    Validation {
        file: String,
        id: String,
        message: String,
    },

    #[error("{dir}: no *.cedar policy files found; an empty policy set would refuse everything")]
    NoPolicies { dir: PathBuf },

    #[error("kura.cedarschema and the Rust Action enum disagree: {0}")]
    ActionMismatch(String),

    #[error("unknown {kind} {name:?}; expected {expected}")]
    UnknownName {
        kind: &'static str,
        name: String,
        expected: &'static str,
    },
}
