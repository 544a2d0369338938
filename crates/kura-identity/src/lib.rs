//! Sign-in primitives for Kura: local accounts ([`password`]: argon2id hashes, policy, generated
//! passwords) and an OpenID Connect relying party ([`oidc`]). No HTTP server code: `kura-server`
//! calls this API and keeps the pending half of a login in its session.

pub mod error;
pub mod oidc;
pub mod password;

pub use error::IdentityError;
pub use oidc::{OidcClient, OidcConfig, OidcIdentity, PendingLogin};
pub use password::{
    check_password_policy, dummy_verify, generate_password, hash_password, needs_rehash,
    verify_password,
};
