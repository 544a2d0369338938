//! Request handlers, one module per resource. Each handler identifies the caller, asks the
//! policies, audits, then calls the store or the engine.

pub mod accounts;
pub mod auth;
pub mod catalog;
pub mod console;
pub mod explorer;
pub mod outputs;
pub mod projects;
pub mod queries;
pub mod reviews;
pub mod service;
