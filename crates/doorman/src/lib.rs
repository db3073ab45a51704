//! doorman: an embeddable OAuth 2.0 authorization server.
//!
//! A web app that already has users becomes an OAuth 2.0 provider: it
//! picks a [`Store`] (the [`MemoryStore`] here, `doorman-sqlx`
//! for SQLite and PostgreSQL, or its own), answers "who is logged in" with
//! [`Sessions`], and mounts the endpoints — each an `async fn` from
//! `http::Request<Bytes>` to `http::Response<Bytes>`, so any web framework
//! can serve them (`doorman-axum`, `doorman-actix`).
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use doorman::{AuthorizationServer, ClientRegistration, Config, MemoryStore, Sessions, StoreError, UserId};
//!
//! /// The host's own session lookup; here a header stands in for its cookie.
//! struct MySessions;
//!
//! #[async_trait::async_trait]
//! impl Sessions for MySessions {
//!     async fn current_user(&self, req: &http::request::Parts) -> Result<Option<UserId>, StoreError> {
//!         Ok(req.headers.get("x-demo-user").and_then(|v| v.to_str().ok()).map(UserId::new))
//!     }
//!     fn login_url(&self, return_to: &str) -> String {
//!         format!("/login?return_to={}", doorman::redirect::form_encode(return_to))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = Config::builder("https://id.example.com").scope("profile", "Your name and email").build();
//! let server = AuthorizationServer::builder(config, Arc::new(MemoryStore::new()), Arc::new(MySessions)).build();
//!
//! // A developer registers a trusted app (one-click login) and gets its secret once.
//! let mut reg = ClientRegistration::new("Example App", vec!["https://app.example/cb".into()]);
//! reg.trusted = true;
//! let app = server.register_client(reg).await.unwrap();
//! let secret = app.client_secret.unwrap();
//!
//! // The logged-in user's browser asks for a code.
//! let authorize = http::Request::get(format!(
//!     "/oauth2/authorize?response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
//!      &scope=profile&state=xyz&auto_authorize=true",
//!     app.client.client_id
//! ))
//! .header("x-demo-user", "alice")
//! .body(Bytes::new())
//! .unwrap();
//! let res = server.authorize(authorize).await;
//! assert_eq!(res.status(), 302);
//! let location = res.headers()["location"].to_str().unwrap();
//! let query = location.split_once('?').unwrap().1;
//! let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
//! let code = &params.iter().find(|(k, _)| k == "code").unwrap().1;
//!
//! // The app's server exchanges it.
//! let body = serde_urlencoded::to_string([
//!     ("grant_type", "authorization_code"),
//!     ("code", code.as_str()),
//!     ("redirect_uri", "https://app.example/cb"),
//!     ("client_id", app.client.client_id.as_str()),
//!     ("client_secret", secret.secret()),
//! ])
//! .unwrap();
//! let token = http::Request::post("/oauth2/token")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(Bytes::from(body))
//!     .unwrap();
//! let res = server.token(token).await;
//! assert_eq!(res.status(), 200);
//! let tokens: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
//! assert_eq!(tokens["token_type"], "Bearer");
//! assert_eq!(tokens["scope"], "profile");
//! # }
//! ```
//!
//! The modules follow the request: [`wire`] reads and renders, [`server`]
//! decides (with [`redirect`], [`scope`] and [`config`] as policy), and
//! [`store`] keeps state, only ever as hashes of credentials.
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
pub use host::{
    Balance, Balances, Claims, ConsentPrompt, DefaultPages, Pages, Sessions, TokenClaims,
    UserClaims,
};
pub use model::*;
pub use scope::{AnyScope, RequiredScope, ScopeInfo, Scopes};
pub use secret::{AccessToken, AuthorizationCode, ClientSecret, RefreshToken, TokenHash};
pub use store::{
    ClientStore, CodeIssuer, CodeStore, GrantStore, MemoryStore, Redemption, Store, TokenStore,
};
pub mod server;
pub mod wire;

pub use server::{
    AuthorizationServer, AuthorizeOutcome, AuthorizeRequest, AuthorizedApp, BearerError,
    ClientRegistration, RegisteredClient, SecretChoice, ServerBuilder, ValidatedToken,
};
pub use wire::{IssuedTokens, Params, ReleasedClaims, Rfc6749, WireProfile};
