//! Between axum's request and response types and the core's
//! `http::Request<Bytes>` / `http::Response<Bytes>`.

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{OriginalUri, Request};
use axum::response::Response;
use bytes::Bytes;
use doorman::{AuthorizationServer, OAuthError};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

/// Reads an axum request into the form the server's endpoints take.
///
/// The body is read up to the server's
/// [`max_body_bytes`](doorman::Config::max_body_bytes); a larger one is
/// refused with [`AuthorizationServer::body_too_large`] (413, with
/// `Connection: close`) without reading the rest. The URI is the
/// request's original one, path and query, even under a nested router:
/// the authorization endpoint sends it to the login page as the place to
/// come back to.
///
/// The `Err` value is the answer to send (413, or 400 for a body that
/// could not be read).
pub async fn read_request(
    server: &AuthorizationServer,
    request: Request,
) -> Result<http::Request<Bytes>, http::Response<Bytes>> {
    match start_read(server, request) {
        Read::Ready(request) => Ok(request),
        Read::Refused(res) => Err(res),
        Read::Body(parts, body) => collect(server, parts, body).await,
    }
}

/// What [`start_read`] found without waiting.
pub(crate) enum Read {
    /// The request, whole: it had no body.
    Ready(http::Request<Bytes>),
    /// The answer to send instead (413).
    Refused(http::Response<Bytes>),
    /// A body to [`collect`] first.
    Body(http::request::Parts, Body),
}

/// The part of [`read_request`] that needs no waiting: the original URI,
/// the declared length against the limit, and a request without a body
/// (every GET), which is then whole.
pub(crate) fn start_read(server: &AuthorizationServer, request: Request) -> Read {
    let limit = server.config().max_body_bytes;
    let (mut parts, body) = request.into_parts();
    if let Some(OriginalUri(uri)) = parts.extensions.get::<OriginalUri>() {
        parts.uri = uri.clone();
    }
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Read::Refused(too_large(server));
    }
    if body.is_end_stream() {
        // No body (a GET): nothing to collect.
        return Read::Ready(http::Request::from_parts(parts, Bytes::new()));
    }
    Read::Body(parts, body)
}

/// Reads `body` up to the server's limit: the rest of [`read_request`].
pub(crate) async fn collect(
    server: &AuthorizationServer,
    parts: http::request::Parts,
    body: Body,
) -> Result<http::Request<Bytes>, http::Response<Bytes>> {
    let limit = server.config().max_body_bytes;
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large(server));
        }
        Err(_) => {
            let e = OAuthError::invalid_request("the request body could not be read");
            return Err(server.profile().error_response(&e, false));
        }
    };
    Ok(http::Request::from_parts(parts, bytes))
}

/// The 413 for a body over the limit, with `Connection: close`: the rest
/// of the body stays unread, so the connection cannot carry another
/// request, and hyper closes it. Said in the answer (RFC 9112, section
/// 9.6), a client does not send its next request down a connection that
/// is closing (it did, now and then, without it: a failed request).
fn too_large(server: &AuthorizationServer) -> http::Response<Bytes> {
    let mut res = server.body_too_large();
    res.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    res
}

/// Turns a core response into an axum response, headers and status as they are.
pub fn into_response(response: http::Response<Bytes>) -> Response {
    response.map(Body::from)
}
