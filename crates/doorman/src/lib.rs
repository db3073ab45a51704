//! doorman: an embeddable OAuth 2.0 authorization server.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod config;
pub mod error;
pub mod host;
pub mod model;
pub mod pages;
pub mod redirect;
pub mod scope;
pub mod secret;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, ConfigBuilder, Endpoints, PkcePolicy};
pub use error::{ErrorCode, OAuthError, StoreError};
pub use host::{Balance, Balances, Claims, ConsentPrompt, DefaultPages, Pages, Sessions, UserClaims};
pub use model::*;
pub use scope::{ScopeInfo, Scopes};
pub use secret::{AccessToken, AuthorizationCode, ClientSecret, RefreshToken, TokenHash};
pub use store::{ClientStore, CodeStore, GrantStore, MemoryStore, Store, TokenStore};
pub mod server;
pub mod wire;

pub use server::{
    AuthorizationServer, AuthorizeOutcome, AuthorizeRequest, AuthorizedApp, BearerError, ClientRegistration,
    RegisteredClient, SecretChoice, ServerBuilder, ValidatedToken,
};
pub use wire::{IssuedTokens, Params, Rfc6749, WireProfile};
