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

pub use bearer::Bearer;
pub use convert::{into_response, read_request};
/// The scope types of [`Bearer`], shared with every adapter (from the core).
pub use doorman::{AnyScope, RequiredScope, required_scope};
pub use trace::trace_request;

use std::future::Future;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::{MethodRouter, any};
use bytes::Bytes;
use convert::Read;
use doorman::AuthorizationServer;
use doorman::server::Endpoint;
use futures_util::future::Either;

/// A router with the provider's endpoints for `server`, at the paths
/// [`AuthorizationServer::routes`] lists: those of its
/// [`Config::endpoints`](doorman::Config::endpoints) (an absolute URL
/// there is mounted at its path) and the RFC 8414 metadata document at
/// [`doorman::server::metadata_path`]. Every request runs in the tracing
/// span [`trace_request`] describes, opened by the endpoint's handler
/// itself rather than by a middleware layer (none of it is done while
/// `DEBUG` is off).
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
    let mut router = Router::new();
    for (path, endpoint) in server.routes() {
        let server = server.clone();
        // A route per endpoint, each calling its endpoint's own method:
        // a request's future is then as large as its endpoint needs, not
        // as the largest endpoint's (see `route`).
        let route = match endpoint {
            Endpoint::Authorize => route(server, Authorize),
            Endpoint::Token => route(server, Token),
            Endpoint::Userinfo => route(server, Userinfo),
            Endpoint::Revoke => route(server, Revoke),
            Endpoint::Introspect => route(server, Introspect),
            Endpoint::Topup => route(server, Topup),
            other => route(server, Handle(other)),
        };
        router = router.route(&path, route);
    }
    router
}

/// An endpoint of the server, as a type: what one route calls.
trait Serve: Copy + Send + Sync + 'static {
    /// Answers `request` at this endpoint.
    fn serve(
        self,
        server: &AuthorizationServer,
        request: http::Request<Bytes>,
    ) -> impl Future<Output = http::Response<Bytes>> + Send + '_;
}

/// Declares a unit type per endpoint that calls the server's method of
/// the same name.
macro_rules! endpoints {
    ($($name:ident => $method:ident,)*) => {$(
        #[derive(Clone, Copy)]
        struct $name;

        impl Serve for $name {
            fn serve(
                self,
                server: &AuthorizationServer,
                request: http::Request<Bytes>,
            ) -> impl Future<Output = http::Response<Bytes>> + Send + '_ {
                server.$method(request)
            }
        }
    )*};
}

endpoints! {
    Authorize => authorize,
    Token => token,
    Userinfo => userinfo,
    Revoke => revoke,
    Introspect => introspect,
    Topup => topup,
}

/// Any other endpoint (the metadata document), through the server's `handle`.
#[derive(Clone, Copy)]
struct Handle(Endpoint);

impl Serve for Handle {
    fn serve(
        self,
        server: &AuthorizationServer,
        request: http::Request<Bytes>,
    ) -> impl Future<Output = http::Response<Bytes>> + Send + '_ {
        server.handle(self.0, request)
    }
}

/// The route of `endpoint`. While `DEBUG` is off (the access log; see
/// [`trace_request`]) its future is [`answer`]'s alone: the access log's
/// future, which holds a second one inside it, gets a box of its own.
/// A request's future is copied whole on its way in (into axum's box, and
/// from each layer into the next), so each route's future is only as large
/// as its own endpoint's, not as the largest endpoint's (BENCHMARKS.md,
/// H10: userinfo's box went from 3 224 to 1 424 bytes).
fn route<S, E>(server: AuthorizationServer, endpoint: E) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
    E: Serve,
{
    any(move |request: Request| {
        if tracing::enabled!(tracing::Level::DEBUG) {
            Either::Left(Box::pin(trace::traced(request, move |request| {
                answer(server, endpoint, request)
            })))
        } else {
            Either::Right(answer(server, endpoint, request))
        }
    })
}

/// Reads `request` (collecting a body only when there is one) and answers
/// it at `endpoint`.
async fn answer<E: Serve>(server: AuthorizationServer, endpoint: E, request: Request) -> Response {
    let request = match convert::start_read(&server, request) {
        Read::Ready(request) => request,
        Read::Refused(res) => return into_response(res),
        Read::Body(parts, body) => match convert::collect(&server, parts, body).await {
            Ok(request) => request,
            Err(res) => return into_response(res),
        },
    };
    into_response(endpoint.serve(&server, request).await)
}
