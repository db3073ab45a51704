//! Client authentication at the token, revocation and introspection
//! endpoints (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`,
//! and `none` for public clients. One method per request.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::AuthorizationServer;
use crate::error::OAuthError;
use std::sync::Arc;

use crate::model::Client;
use crate::secret::TokenHash;
use crate::wire::Params;

/// The credentials a request presented.
pub(crate) struct Presented {
    pub client_id: String,
    pub secret: Option<String>,
    /// HTTP Basic was used: a 401 must carry `WWW-Authenticate: Basic`.
    pub basic: bool,
}

/// Decodes one `application/x-www-form-urlencoded` component (RFC 6749
/// §2.3.1 encodes id and secret that way before Basic).
fn form_decode(s: &str) -> Option<String> {
    if !s.bytes().any(|c| c == b'%' || c == b'+') {
        // Nothing escaped (every generated id and secret): a copy.
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Reads the client credentials from the `Authorization` header or the body.
pub(crate) fn presented(
    headers: &http::HeaderMap,
    params: &Params,
) -> Result<Presented, (OAuthError, bool)> {
    let mut headers = headers.get_all(http::header::AUTHORIZATION).iter();
    if let Some(value) = headers.next() {
        let bad = |d: &'static str| (OAuthError::invalid_client(d), true);
        if headers.next().is_some() {
            return Err((
                OAuthError::invalid_request("more than one Authorization header"),
                true,
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| bad("malformed Authorization header"))?;
        let (scheme, cred) = value
            .split_once(' ')
            .ok_or_else(|| bad("malformed Authorization header"))?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(bad(
                "client authentication must use HTTP Basic or the request body",
            ));
        }
        let raw = STANDARD
            .decode(cred.trim())
            .map_err(|_| bad("malformed Basic credentials"))?;
        let raw = String::from_utf8(raw).map_err(|_| bad("malformed Basic credentials"))?;
        let (id, secret) = raw
            .split_once(':')
            .ok_or_else(|| bad("malformed Basic credentials"))?;
        let id = form_decode(id).ok_or_else(|| bad("malformed Basic credentials"))?;
        let secret = form_decode(secret).ok_or_else(|| bad("malformed Basic credentials"))?;
        if params.get("client_secret").is_some() {
            return Err((
                OAuthError::invalid_request(
                    "use one client authentication method, not Basic and client_secret",
                ),
                true,
            ));
        }
        if params.get("client_id").is_some_and(|body_id| body_id != id) {
            return Err((
                OAuthError::invalid_request("client_id differs from the Basic credentials"),
                true,
            ));
        }
        return Ok(Presented {
            client_id: id,
            secret: Some(secret),
            basic: true,
        });
    }
    let client_id = params.get("client_id").ok_or_else(|| {
        (
            OAuthError::invalid_client("client authentication is required"),
            false,
        )
    })?;
    Ok(Presented {
        client_id: client_id.to_owned(),
        secret: params.get("client_secret").map(str::to_owned),
        basic: false,
    })
}

impl AuthorizationServer {
    /// Authenticates the client of a token-endpoint-style request. Answers
    /// the error and whether Basic was used.
    pub(crate) async fn authenticate_client(
        &self,
        headers: &http::HeaderMap,
        params: &Params,
    ) -> Result<(Arc<Client>, bool), (OAuthError, bool)> {
        let p = presented(headers, params)?;
        let basic = p.basic;
        let fail = || {
            (
                OAuthError::invalid_client("client authentication failed"),
                basic,
            )
        };
        let client = match self.client(&p.client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                // Same work as a known client, so timing does not reveal which ids exist.
                if let Some(s) = &p.secret {
                    let _ = TokenHash::of(s).ct_eq(&TokenHash([0u8; 32]));
                }
                return Err(fail());
            }
            Err(e) => return Err((e.into(), basic)),
        };
        match (&client.secret_hash, &p.secret) {
            (Some(stored), Some(given)) if stored.ct_eq(&TokenHash::of(given)) => {
                Ok((client, basic))
            }
            (None, None) => Ok((client, basic)),
            _ => Err(fail()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_of_basic_parts() {
        assert_eq!(form_decode("a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(form_decode("x%3Ay").as_deref(), Some("x:y"));
        assert_eq!(form_decode("p&q=r").as_deref(), Some("p&q=r"));
        // Either escape alone leaves the copy-as-is path.
        assert_eq!(form_decode("a+b").as_deref(), Some("a b"));
        assert_eq!(form_decode("a%3Ab").as_deref(), Some("a:b"));
        assert_eq!(form_decode("%FF"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%+1"), None);
    }
}
