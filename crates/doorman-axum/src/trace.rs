//! One tracing span per request, free of secrets.

use std::future::Future;
use std::time::Instant;

use axum::extract::{OriginalUri, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// Middleware (for [`axum::middleware::from_fn`]) that runs each request
/// in an `http` span with its method, path and (once answered) status,
/// and logs the answer's duration inside it — all at `DEBUG`, so that the
/// usual `info` filter costs nothing per request (an access log line per
/// request was 15–35 % of the throughput in BENCHMARKS.md); a host that
/// wants the access log enables `doorman_axum=debug`.
///
/// The query string is never recorded: on these endpoints it carries
/// authorization codes and `state`. Neither are headers or bodies, which
/// carry tokens, secrets and passwords.
///
/// The provider's endpoints from [`router`](crate::router) get the same
/// span without this layer (their handlers open it); a host adds it to
/// its own routes with
/// `.layer(axum::middleware::from_fn(doorman_axum::trace_request))`.
pub async fn trace_request(request: Request, next: Next) -> Response {
    traced(request, |request| next.run(request)).await
}

/// Runs `run` on `request` as [`trace_request`] describes: in an `http`
/// span when `DEBUG` is enabled, straight through (no span, no path copy,
/// no clock read) when it is not. [`router`](crate::router) calls it in
/// each endpoint's handler, so the provider's endpoints pay for no
/// middleware layer.
pub(crate) async fn traced<F, Fut>(request: Request, run: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    if !tracing::enabled!(tracing::Level::DEBUG) {
        // The access log is off (the default): no path copy, no clock read.
        return run(request).await;
    }
    let path = match request.extensions().get::<OriginalUri>() {
        Some(OriginalUri(uri)) => uri.path().to_owned(),
        None => request.uri().path().to_owned(),
    };
    let span = tracing::debug_span!(
        "http",
        method = %request.method(),
        path = %path,
        status = tracing::field::Empty,
    );
    let started = Instant::now();
    async move {
        let response = run(request).await;
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "response"
        );
        response
    }
    .instrument(span)
    .await
}
