#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of `kura serve` over HTTPS: sign-in and sessions, CSRF and headers, bad
//! input, authorization (separation of duties, IDOR, expiry), the workspace API, shutdown, and
//! sign-in through a real OpenID provider. One binary: it builds the test snapshot once.

mod access;
mod airlock;
mod bad_input;
mod catalog;
mod console;
mod explorer;
mod oidc;
mod proxies;
mod sessions;
mod startup;
mod telemetry;
mod workspace;
