//! axum glue: the only part of the demo that knows axum.
//!
//! The OAuth endpoints come from `doorman_axum::router`; every other path
//! falls back to [`Demo::respond`], the same dispatcher the
//! actix-web glue mounts.

use std::future::Future;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::from_fn;
use axum::response::Response;
use doorman_axum::{into_response, read_request, trace_request};

use crate::host::Demo;

/// The demo as one axum router.
pub fn app(demo: Demo) -> Router {
    let host = Router::new()
        .fallback(host_route)
        .with_state(demo.clone())
        .layer(from_fn(trace_request));
    doorman_axum::router(demo.server().clone()).fallback_service(host)
}

async fn host_route(State(demo): State<Demo>, request: Request) -> Response {
    let request = match read_request(demo.server(), request).await {
        Ok(r) => r,
        Err(res) => return into_response(res),
    };
    into_response(demo.respond(request).await)
}

/// Serves `demo` on `listener` until `shutdown` completes, then lets
/// requests in flight finish.
pub(crate) async fn serve(
    demo: Demo,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, app(demo))
        .with_graceful_shutdown(shutdown)
        .await
}
