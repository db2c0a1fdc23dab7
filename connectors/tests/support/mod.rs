//! Real services for the integration tests, started on loopback and
//! stopped by PID when dropped. A service that cannot start fails the test
//! with what is missing; nothing is ever skipped.

#![allow(dead_code)] // each test binary uses part of this

pub mod jwks_server;
pub mod oidc_browser;
pub mod oidc_provider;
pub mod slapd;
