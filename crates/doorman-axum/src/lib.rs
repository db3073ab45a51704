//! The [axum](https://docs.rs/axum) 0.8 adapter for doorman: it converts
//! requests and responses, mounts the provider's endpoints and lets the
//! host's own routes require a bearer token. It holds no grant logic.
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::{Json, Router, routing::get};
//! use doorman::redirect::form_encode;
//! use doorman::{AuthorizationServer, Config, Endpoints, MemoryStore, Sessions, StoreError, UserId};
//! use doorman_axum::{Bearer, required_scope};
//!
//! /// The host's sessions: here nobody is ever logged in.
//! struct NoSessions;
//!
//! #[async_trait::async_trait]
//! impl Sessions for NoSessions {
//!     async fn current_user(&self, _: &http::request::Parts) -> Result<Option<UserId>, StoreError> {
//!         Ok(None)
//!     }
//!     fn login_url(&self, return_to: &str) -> String {
//!         format!("/login?return_to={}", form_encode(return_to))
//!     }
//! }
//!
//! required_scope!(
//!     /// Tokens that may read the balance.
//!     BalanceScope = "balance"
//! );
//!
//! /// A host route of its own, protected by a token with scope `balance`.
//! async fn credit(token: Bearer<BalanceScope>) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "client": token.client_id }))
//! }
//!
//! let config = Config::builder("https://id.example")
//!     .endpoints(Endpoints::under("/api/oauth2"))
//!     .scope("balance", "See your balance")
//!     .build();
//! let server = AuthorizationServer::builder(config, Arc::new(MemoryStore::new()), Arc::new(NoSessions)).build();
//!
//! // `/api/oauth2/{authorize,token,userinfo,revoke,introspect,topup}` and
//! // `/.well-known/oauth-authorization-server`, next to the host's routes.
//! let app: Router = Router::new()
//!     .route("/api/credit", get(credit))
//!     .merge(doorman_axum::router(server.clone()))
//!     .with_state(server);
//!
//! # async fn serve(app: Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! # let _ = serve(app);
//! ```
//!
//! The host's state must yield the server through
//! [`FromRef`](axum::extract::FromRef) for [`Bearer`] to find it; the
//! server itself is a valid state.
//!
//! Dynamic client registration (RFC 7591) is not mounted by [`router`]:
//! who may register clients is the host's decision. A host that offers it
//! checks its own credential, then hands the request to
//! [`AuthorizationServer::register`] through [`read_request`] and
//! [`into_response`].
#![forbid(unsafe_code)]

mod bearer;
mod convert;
mod trace;

pub use bearer::{AnyScope, Bearer, RequiredScope};
pub use convert::{into_response, read_request};
pub use trace::trace_request;

use axum::Router;
use axum::extract::Request;
use axum::middleware::from_fn;
use axum::response::Response;
use axum::routing::{any, get};
use doorman::AuthorizationServer;

/// The well-known path of the RFC 8414 metadata document for an issuer
/// without a path component.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// The endpoints [`router`] can mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Authorize,
    Token,
    Userinfo,
    Revoke,
    Introspect,
    Topup,
}

/// A router with the provider's endpoints for `server`, at the paths of
/// its [`Config::endpoints`](doorman::Config::endpoints) (an absolute URL
/// there is mounted at its path), plus the RFC 8414 metadata document at
/// [`metadata_path`]. Every request gets a tracing span ([`trace_request`]).
///
/// The endpoints accept any method and answer 405 themselves, in the
/// server's wire format. Mount the router with
/// [`Router::merge`](axum::Router::merge), not `nest`: the paths in the
/// configuration are the full paths clients see, and the server builds
/// its metadata, login `return_to` and consent form action from them.
///
/// # Panics
///
/// Like [`Router::route`](axum::Router::route), when two endpoints of the
/// configuration share a path or a path is not valid for axum.
pub fn router<S>(server: AuthorizationServer) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let endpoints = server.config().endpoints.clone();
    let mut router = Router::new();
    for (path, endpoint) in [
        (&endpoints.authorization, Endpoint::Authorize),
        (&endpoints.token, Endpoint::Token),
        (&endpoints.userinfo, Endpoint::Userinfo),
        (&endpoints.revocation, Endpoint::Revoke),
        (&endpoints.introspection, Endpoint::Introspect),
        (&endpoints.topup, Endpoint::Topup),
    ] {
        let Some(path) = route_path(path) else {
            continue;
        };
        let server = server.clone();
        router = router.route(
            path,
            any(move |request: Request| call(server, endpoint, request)),
        );
    }
    let metadata = server.clone();
    router
        .route(
            &metadata_path(&server.config().issuer),
            get(move || async move { into_response(metadata.metadata()) }),
        )
        .layer(from_fn(trace_request))
}

/// Where the metadata of `issuer` is published (RFC 8414 §3.1): the
/// well-known prefix, followed by the issuer's path if it has one.
///
/// ```
/// assert_eq!(doorman_axum::metadata_path("https://id.example"), "/.well-known/oauth-authorization-server");
/// assert_eq!(doorman_axum::metadata_path("https://id.example/t1"), "/.well-known/oauth-authorization-server/t1");
/// ```
pub fn metadata_path(issuer: &str) -> String {
    let path = route_path(issuer).unwrap_or("").trim_end_matches('/');
    format!("{METADATA_PATH}{path}")
}

/// The path of an endpoint given as a path or an absolute URL, without
/// its query; `None` if it has none.
fn route_path(endpoint: &str) -> Option<&str> {
    let path = match endpoint.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => endpoint,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.starts_with('/').then_some(path)
}

async fn call(server: AuthorizationServer, endpoint: Endpoint, request: Request) -> Response {
    let request = match read_request(&server, request).await {
        Ok(r) => r,
        Err(res) => return into_response(res),
    };
    let response = match endpoint {
        Endpoint::Authorize => server.authorize(request).await,
        Endpoint::Token => server.token(request).await,
        Endpoint::Userinfo => server.userinfo(request).await,
        Endpoint::Revoke => server.revoke(request).await,
        Endpoint::Introspect => server.introspect(request).await,
        Endpoint::Topup => server.topup(request).await,
    };
    into_response(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_paths() {
        assert_eq!(route_path("/oauth2/token"), Some("/oauth2/token"));
        assert_eq!(
            route_path("https://id.example/oauth2/token?x=1"),
            Some("/oauth2/token")
        );
        assert_eq!(route_path("https://id.example"), None);
        assert_eq!(route_path("relative"), None);
        assert_eq!(metadata_path("https://id.example/"), METADATA_PATH);
    }
}
