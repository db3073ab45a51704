//! One tracing span per request, free of secrets.

use std::future::Future;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse};
use tracing::Instrument as _;

/// Runs `answer` (the handling of `req`) in an `http` span with the request's method and path
/// (never the query: it carries codes and `state`; never headers or
/// bodies: they carry tokens, secrets and passwords), records the status
/// and logs the duration, all at `DEBUG` (as `doorman-axum`: an access log
/// line per request costs 15–35 % of the throughput; enable it with
/// `doorman_actix=debug`). While `DEBUG` is off it only awaits `answer`:
/// no span, no clock read.
pub async fn traced(req: &HttpRequest, answer: impl Future<Output = HttpResponse>) -> HttpResponse {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return answer.await;
    }
    let span = tracing::debug_span!(
        "http",
        method = %req.method(),
        path = %req.path(),
        status = tracing::field::Empty,
    );
    let started = Instant::now();
    async move {
        let response = answer.await;
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

/// Middleware (for [`actix_web::middleware::from_fn`]) giving the host's
/// own routes the same secret-free span as the provider's endpoints (and,
/// as [`traced`], nothing per request while `DEBUG` is off).
pub async fn trace_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.call(req).await;
    }
    let span = tracing::debug_span!(
        "http",
        method = %req.method(),
        path = %req.path(),
        status = tracing::field::Empty,
    );
    let started = Instant::now();
    async move {
        let response = next.call(req).await?;
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "response"
        );
        Ok(response)
    }
    .instrument(span)
    .await
}
