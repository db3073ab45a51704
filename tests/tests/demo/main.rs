//! Black-box tests of `doorman-demo` over real HTTP (spec/demo-provider.md).
//!
//! Each module lists its scenarios in `adapters!(…)`, which makes one test
//! per scenario and adapter (`login::axum::login_redirect`,
//! `login::actix::login_redirect`, …); every test starts its own demo on its
//! own temporary SQLite file. `parity` sends the same requests to both
//! adapters at once and compares the answers byte for byte.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

mod account;
mod authorize;
mod discovery;
mod login;
mod memory;
mod parity;
mod postgres;
mod registration;
mod resource;
mod restart;
mod token;
mod token_admin;
