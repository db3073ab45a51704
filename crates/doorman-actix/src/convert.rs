//! Between actix-web's types (on `http` 0.2) and the core's
//! `http::Request<Bytes>` / `http::Response<Bytes>` (`http` 1): method,
//! URI, headers and status are carried over as bytes and strings.

use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use doorman::{AuthorizationServer, OAuthError};
use futures_util::StreamExt as _;

/// The request head in the core's `http` 1 types (method, full original
/// URI, headers), with no body.
pub fn request_head(req: &HttpRequest) -> http::Request<()> {
    let mut out = http::Request::new(());
    if let Ok(m) = http::Method::from_bytes(req.method().as_str().as_bytes()) {
        *out.method_mut() = m;
    }
    // `HttpRequest::uri` is the URI as received, whatever scope matched it.
    if let Ok(uri) = http::Uri::try_from(req.uri().to_string()) {
        *out.uri_mut() = uri;
    }
    let headers = out.headers_mut();
    headers.reserve(req.headers().len());
    for (name, value) in req.headers() {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_str().as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    out
}

/// Reads an actix request into the form the server's endpoints take.
///
/// The body is read up to the server's
/// [`max_body_bytes`](doorman::Config::max_body_bytes); a larger one is
/// refused with [`AuthorizationServer::body_too_large`] (413) without
/// reading the rest. The `Err` value is the answer to send.
pub async fn read_request(
    server: &AuthorizationServer,
    req: &HttpRequest,
    mut payload: Payload,
) -> Result<http::Request<Bytes>, http::Response<Bytes>> {
    let limit = server.config().max_body_bytes;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(server.body_too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            let e = OAuthError::invalid_request("the request body could not be read");
            return Err(server.profile().error_response(&e, false));
        };
        if body.len() + chunk.len() > limit {
            return Err(server.body_too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(request_head(req).map(|()| body.freeze()))
}

/// Turns a core response into an actix response, headers and status as they are.
pub fn into_response(response: http::Response<Bytes>) -> HttpResponse {
    let (parts, body) = response.into_parts();
    let status = actix_web::http::StatusCode::from_u16(parts.status.as_u16())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = HttpResponse::build(status);
    for (name, value) in &parts.headers {
        if let (Ok(n), Ok(v)) = (
            actix_web::http::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            actix_web::http::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append_header((n, v));
        }
    }
    out.body(body)
}
