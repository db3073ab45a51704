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
///
/// The header values are copied once, into one buffer they all share,
/// rather than one allocation each.
pub fn request_head(req: &HttpRequest) -> http::Request<()> {
    let mut out = http::Request::new(());
    if let Ok(m) = http::Method::from_bytes(req.method().as_str().as_bytes()) {
        *out.method_mut() = m;
    }
    // `HttpRequest::uri` is the URI as received, whatever scope matched it:
    // path and query in the usual origin form, or a whole absolute URI.
    let uri = req.uri();
    let uri = match uri.path_and_query() {
        Some(pq) if uri.scheme().is_none() && uri.authority().is_none() => {
            http::Uri::try_from(pq.as_str())
        }
        _ => http::Uri::try_from(uri.to_string()),
    };
    if let Ok(uri) = uri {
        *out.uri_mut() = uri;
    }
    let values = shared_copy(|| req.headers().iter().map(|(_, v)| v.as_bytes()));
    let headers = out.headers_mut();
    headers.reserve(req.headers().len());
    for ((name, _), value) in req.headers().iter().zip(values) {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_str().as_bytes()),
            http::HeaderValue::from_maybe_shared(value),
        ) {
            headers.append(n, v);
        }
    }
    out
}

/// The byte strings `parts()` yields, copied into one buffer, each
/// answered as a `Bytes` sharing it: two allocations (the buffer, and the
/// count `Bytes` shares it by), whatever their number.
fn shared_copy<'a, I>(parts: impl Fn() -> I) -> impl Iterator<Item = Bytes>
where
    I: Iterator<Item = &'a [u8]>,
{
    let mut buf = BytesMut::with_capacity(parts().map(<[u8]>::len).sum());
    for part in parts() {
        buf.extend_from_slice(part);
    }
    let all = buf.freeze();
    let mut start = 0;
    parts().map(move |part| {
        let end = start + part.len();
        let shared = all.slice(start..end);
        start = end;
        shared
    })
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
    // A body that arrives in one chunk (the usual form) is kept as it
    // came; only a second chunk makes a buffer to join them in.
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            let e = OAuthError::invalid_request("the request body could not be read");
            return Err(server.profile().error_response(&e, false));
        };
        let read = joined.as_ref().map_or(first.len(), BytesMut::len);
        if read + chunk.len() > limit {
            return Err(server.body_too_large());
        }
        match &mut joined {
            Some(buf) => buf.extend_from_slice(&chunk),
            None if first.is_empty() => first = chunk,
            None => {
                let mut buf = BytesMut::with_capacity(read + chunk.len());
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&chunk);
                joined = Some(buf);
            }
        }
    }
    let body = joined.map_or(first, BytesMut::freeze);
    Ok(request_head(req).map(|()| body))
}

/// Turns a core response into an actix response, headers and status as
/// they are (their values copied once, into one shared buffer).
pub fn into_response(response: http::Response<Bytes>) -> HttpResponse {
    let (parts, body) = response.into_parts();
    let status = actix_web::http::StatusCode::from_u16(parts.status.as_u16())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = HttpResponse::build(status);
    let values = shared_copy(|| parts.headers.iter().map(|(_, v)| v.as_bytes()));
    for ((name, _), value) in parts.headers.iter().zip(values) {
        if let (Ok(n), Ok(v)) = (
            actix_web::http::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            actix_web::http::header::HeaderValue::from_maybe_shared(value),
        ) {
            out.append_header((n, v));
        }
    }
    out.body(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use actix_web::FromRequest as _;
    use actix_web::test::TestRequest;

    use super::*;

    fn server(limit: usize) -> AuthorizationServer {
        struct Nobody;
        #[async_trait::async_trait]
        impl doorman::Sessions for Nobody {
            async fn current_user(
                &self,
                _: &http::request::Parts,
            ) -> Result<Option<doorman::UserId>, doorman::StoreError> {
                Ok(None)
            }
            fn login_url(&self, _: &str) -> String {
                "/login".to_owned()
            }
        }
        let config = doorman::Config::builder("https://id.example")
            .max_body_bytes(limit)
            .build();
        let store = std::sync::Arc::new(doorman::MemoryStore::new());
        AuthorizationServer::builder(config, store, std::sync::Arc::new(Nobody)).build()
    }

    /// `req`'s body delivered in `chunks`, as a handler's `Payload`.
    async fn chunked(req: &HttpRequest, chunks: &[&'static [u8]]) -> Payload {
        let items: Vec<Result<Bytes, actix_web::error::PayloadError>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let mut payload =
            actix_web::dev::Payload::from(Box::pin(futures_util::stream::iter(items))
                as std::pin::Pin<Box<dyn futures_util::Stream<Item = _>>>);
        Payload::from_request(req, &mut payload).await.unwrap()
    }

    #[actix_web::test]
    async fn the_head_carries_method_uri_and_every_header_value_in_order() {
        let req = TestRequest::post()
            .uri("/api/oauth2/authorize?client_id=a%20b&state=x")
            .append_header(("accept", "text/html"))
            .append_header(("x-forwarded-for", "10.0.0.1"))
            .append_header(("x-forwarded-for", "10.0.0.2"))
            .append_header((
                "x-odd",
                actix_web::http::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
            ))
            .append_header(("x-empty", ""))
            .to_http_request();
        let head = request_head(&req);
        assert_eq!(head.method(), http::Method::POST);
        assert_eq!(
            head.uri().to_string(),
            "/api/oauth2/authorize?client_id=a%20b&state=x"
        );
        assert_eq!(head.uri().query(), Some("client_id=a%20b&state=x"));
        let h = head.headers();
        assert_eq!(h["accept"], "text/html");
        let forwarded: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(h["x-odd"].as_bytes(), b"caf\xe9");
        assert_eq!(h["x-empty"], "");
        assert_eq!(h.len(), 5);
    }

    #[actix_web::test]
    async fn an_absolute_uri_is_carried_whole() {
        let req = TestRequest::get()
            .uri("http://id.example:8080/api/oauth2/userinfo?x=1")
            .to_http_request();
        assert_eq!(
            request_head(&req).uri().to_string(),
            "http://id.example:8080/api/oauth2/userinfo?x=1"
        );
    }

    #[actix_web::test]
    async fn a_body_in_chunks_is_joined_in_order_and_limited_as_a_whole() {
        let server = server(10);
        let req = TestRequest::post().uri("/t").to_http_request();
        for (chunks, body) in [
            (&[][..], &b""[..]),
            (&[&b"grant"[..]][..], &b"grant"[..]),
            (&[&b"gr"[..], &b"an"[..], &b"t=x"[..]][..], &b"grant=x"[..]),
            (
                &[&b""[..], &b"ab"[..], &b""[..], &b"cd"[..]][..],
                &b"abcd"[..],
            ),
            (&[&b"12345"[..], &b"67890"[..]][..], &b"1234567890"[..]),
        ] {
            let payload = chunked(&req, chunks).await;
            let read = read_request(&server, &req, payload).await.unwrap();
            assert_eq!(read.body().as_ref(), body, "{chunks:?}");
        }
        // Eleven bytes in two chunks that each fit: refused, 413.
        let payload = chunked(&req, &[b"123456", b"78901"]).await;
        let refused = read_request(&server, &req, payload).await.unwrap_err();
        assert_eq!(refused.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn the_answer_keeps_status_and_every_header_value_in_order() {
        let mut res = http::Response::new(Bytes::from_static(b"{}"));
        *res.status_mut() = http::StatusCode::UNAUTHORIZED;
        let h = res.headers_mut();
        h.insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        h.append("www-authenticate", http::HeaderValue::from_static("Basic"));
        h.append("www-authenticate", http::HeaderValue::from_static("Bearer"));
        h.insert("x-odd", http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let out = into_response(res);
        assert_eq!(out.status().as_u16(), 401);
        let h = out.headers();
        assert_eq!(h.get("content-type").unwrap(), "application/json");
        let auth: Vec<_> = h.get_all("www-authenticate").collect();
        assert_eq!(auth, ["Basic", "Bearer"]);
        assert_eq!(h.get("x-odd").unwrap().as_bytes(), b"caf\xe9");
    }
}
