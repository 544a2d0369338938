//! Authorization decisions for Kura, from Cedar policies kept as data in `policies/authz/`.
//!
//! The server asks [`Authorizer::decide`] before every action. The policies (`*.cedar`) and their
//! schema (`kura.cedarschema`) are plain text an operator can read; they are validated against
//! the schema in strict mode when loaded, and the server refuses to start if that fails.
//! Decisions fail closed: a forbid overrides any permit, nothing is allowed unless a permit
//! matches, and any error (building the request or evaluating a policy) denies.
//!
//! Architecture invariant: this crate does no IO except reading the policy directory in
//! [`Authorizer::from_dir`], and never reads the clock: `now` is the caller's.
//! The model and each rule are described in `docs/authz.md`.

mod decide;
mod error;
mod load;
mod model;

use std::path::Path;

use chrono::{DateTime, Utc};

pub use error::AuthzError;
pub use load::SCHEMA_FILE;
pub use model::{
    Action, Decision, Membership, Principal, ProjectFacts, ProjectRole, Resource, Role,
};

/// Validated policies and schema. `Send + Sync`; share it in an `Arc`.
pub struct Authorizer {
    loaded: load::Loaded,
}

impl Authorizer {
    /// Loads `kura.cedarschema` and every `*.cedar` in `dir` and validates the policies against
    /// the schema in strict mode. Any read, parse or validation problem (or a policy without a
    /// unique `@id`) is an error naming the file and the problem.
    pub fn from_dir(dir: &Path) -> Result<Authorizer, AuthzError> {
        let (schema, files) = load::read_dir(dir)?;
        Self::from_sources(&schema, &files)
    }

    /// The policies in `policies/authz/` as compiled into the binary.
    pub fn builtin() -> Result<Authorizer, AuthzError> {
        let (schema, files) = load::builtin_sources();
        Self::from_sources(schema, &files)
    }

    /// From in-memory text: the schema and (file name, policy text) pairs.
    pub fn from_sources(
        schema: &str,
        files: &[(String, String)],
    ) -> Result<Authorizer, AuthzError> {
        Ok(Authorizer {
            loaded: load::compile(schema, files)?,
        })
    }

    /// May `principal` do `action` on `resource` at time `now`?
    pub fn decide(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource<'_>,
        now: DateTime<Utc>,
    ) -> Decision {
        decide::decide(&self.loaded, principal, action, resource, now)
    }

    /// The text of the schema the policies were validated against.
    pub fn schema_text(&self) -> &str {
        &self.loaded.schema_text
    }

    /// Every loaded policy as (id, file name, text), sorted by id: for an operator's listing and
    /// for comparing two loads.
    pub fn policies(&self) -> Vec<(String, String, String)> {
        self.loaded
            .sources
            .iter()
            .map(|(id, (file, text))| (id.clone(), file.clone(), text.clone()))
            .collect()
    }
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("policies", &self.loaded.sources.keys().collect::<Vec<_>>())
            .finish()
    }
}
