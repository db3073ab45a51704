//! The [actix-web](https://docs.rs/actix-web) 4 adapter for doorman: it
//! converts requests and responses (actix-web is on `http` 0.2, the core
//! on `http` 1), mounts the provider's endpoints and lets the host's own
//! routes require a bearer token. It holds no grant logic: paths and
//! dispatch come from [`AuthorizationServer::routes`] and
//! [`AuthorizationServer::handle`], exactly as in `doorman-axum`.
//!
//! ```
//! use std::sync::Arc;
//!
//! use actix_web::{App, HttpResponse, web};
//! use doorman::redirect::form_encode;
//! use doorman::{AuthorizationServer, Config, Endpoints, MemoryStore, Sessions, StoreError, UserId};
//! use doorman_actix::Bearer;
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
//! doorman::required_scope!(
//!     /// Tokens that may read the balance.
//!     BalanceScope = "balance"
//! );
//!
//! /// A host route of its own, protected by a token with scope `balance`.
//! async fn credit(token: Bearer<BalanceScope>) -> HttpResponse {
//!     HttpResponse::Ok().json(serde_json::json!({ "client": token.client_id }))
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
//! let app = App::new()
//!     .app_data(web::Data::new(server.clone()))
//!     .route("/api/credit", web::get().to(credit))
//!     .configure(doorman_actix::configure(server));
//! # let _ = app;
//! ```
#![forbid(unsafe_code)]

mod bearer;
mod convert;
mod trace;

pub use bearer::{Bearer, BearerRejection};
pub use convert::{into_response, read_request, request_head};
pub use doorman::{AnyScope, RequiredScope, required_scope};
pub use trace::{trace_request, traced};

use actix_web::web::{self, Payload, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use doorman::AuthorizationServer;
use doorman::server::Endpoint;

/// A service configuration (for [`App::configure`](actix_web::App::configure)
/// or [`Scope::configure`](actix_web::Scope::configure)) with the provider's
/// endpoints at the paths of the server's
/// [`Config::endpoints`](doorman::Config::endpoints) plus the RFC 8414
/// metadata document. Every endpoint accepts any method and answers 405
/// itself, in the server's wire format; each request runs in a tracing
/// span ([`trace_request`]).
///
/// Mount it at the top level (not under a [`web::scope`] prefix): the
/// configured paths are the full paths clients see.
pub fn configure(server: AuthorizationServer) -> impl FnOnce(&mut ServiceConfig) {
    move |cfg: &mut ServiceConfig| {
        for (path, endpoint) in server.routes() {
            let server = server.clone();
            cfg.route(
                &path,
                web::route().to(move |req: HttpRequest, payload: Payload| {
                    serve(server.clone(), endpoint, req, payload)
                }),
            );
        }
    }
}

/// Serves one request at `endpoint`: read with the body limit, dispatch, convert back.
pub async fn serve(
    server: AuthorizationServer,
    endpoint: Endpoint,
    req: HttpRequest,
    payload: Payload,
) -> HttpResponse {
    if tracing::enabled!(tracing::Level::DEBUG) {
        return traced(&req, answer(&server, endpoint, &req, payload)).await;
    }
    // No span to run in: the answer's future is awaited here, not moved
    // into `traced`'s.
    answer(&server, endpoint, &req, payload).await
}

/// Reads the request, dispatches it, converts the answer back.
async fn answer(
    server: &AuthorizationServer,
    endpoint: Endpoint,
    req: &HttpRequest,
    payload: Payload,
) -> HttpResponse {
    let request = match read_request(server, req, payload).await {
        Ok(r) => r,
        Err(res) => return into_response(res),
    };
    into_response(server.handle(endpoint, request).await)
}
