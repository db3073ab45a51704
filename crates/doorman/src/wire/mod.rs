//! The wire: how requests are read and responses written.
//!
//! Every endpoint reads its parameters and writes its answers through a
//! [`WireProfile`]. The default, [`Rfc6749`], is the standard JSON wire;
//! a documented provider's envelope (`{ec, em, data}`, `{status, msg,
//! result}`, …) is another profile, and grant logic never branches on it.

mod claims;
mod params;

pub use claims::ReleasedClaims;
pub(crate) use claims::{ClaimValue, Rank};
pub use params::Params;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::error::{ErrorCode, OAuthError};
use crate::model::{TokenKind, TokenRecord, UserId};
use crate::scope::Scopes;
use crate::secret::{AccessToken, RefreshToken};

/// Tokens just issued by the token endpoint.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// The access token.
    pub access_token: AccessToken,
    /// Seconds until it expires; `None` never.
    pub expires_in: Option<i64>,
    /// The refresh token, if one was issued.
    pub refresh_token: Option<RefreshToken>,
    /// Refresh-token lifetime in seconds; `None` never (or none issued).
    pub refresh_expires_in: Option<i64>,
    /// The scopes of the access token.
    pub scope: Scopes,
    /// The user, if the grant has one.
    pub user_id: Option<UserId>,
    /// The client the tokens were issued to.
    pub client_id: String,
}

/// How one provider's wire looks. Every method has the RFC behaviour as
/// its default, so a profile overrides only what differs.
pub trait WireProfile: Send + Sync + 'static {
    /// Reads the parameters of a POST endpoint: a form body, or a JSON
    /// object with the same fields.
    fn read_params(&self, request: &Request<Bytes>) -> Result<Params, OAuthError> {
        read_body_params(request)
    }

    /// The bearer token of a resource request (RFC 6750 §2.1: the
    /// `Authorization` header only).
    fn bearer_token<'a>(
        &self,
        request: &'a http::request::Parts,
    ) -> Result<Option<&'a str>, OAuthError> {
        bearer_from_header(request)
    }

    /// The token endpoint's success answer (RFC 6749 §5.1).
    fn token_response(&self, tokens: &IssuedTokens) -> Response<Bytes> {
        #[derive(Serialize)]
        struct Body<'a> {
            access_token: &'a str,
            token_type: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            expires_in: Option<i64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            refresh_token: Option<&'a str>,
            scope: &'a str,
        }
        let body = Body {
            access_token: tokens.access_token.secret(),
            token_type: "Bearer",
            expires_in: tokens.expires_in,
            refresh_token: tokens.refresh_token.as_ref().map(RefreshToken::secret),
            scope: tokens.scope.as_str(),
        };
        json_response(StatusCode::OK, &body)
    }

    /// An error answer of a direct endpoint (RFC 6749 §5.2). `basic_auth`
    /// tells whether the client tried HTTP Basic, which makes a 401 carry
    /// `WWW-Authenticate: Basic`.
    fn error_response(&self, error: &OAuthError, basic_auth: bool) -> Response<Bytes> {
        let mut res = json_response(error.status, &ErrorBody::of(error));
        if error.status == StatusCode::UNAUTHORIZED && basic_auth {
            res.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"doorman\", charset=\"UTF-8\""),
            );
        }
        res
    }

    /// An error answer of a resource endpoint (RFC 6750 §3). `scope` is the
    /// scope that was needed, for `insufficient_scope`; `missing_token` means
    /// the request carried no credentials, so no error code is disclosed in
    /// the challenge (RFC 6750 §3.1).
    fn bearer_error_response(
        &self,
        error: &OAuthError,
        scope: Option<&str>,
        missing_token: bool,
    ) -> Response<Bytes> {
        let mut challenge = String::from("Bearer realm=\"doorman\"");
        if !missing_token {
            challenge.push_str(&format!(
                ", error=\"{}\", error_description=\"{}\"",
                error.code,
                quoted_string_safe(&error.description)
            ));
            if let Some(s) = scope {
                challenge.push_str(&format!(", scope=\"{}\"", quoted_string_safe(s)));
            }
        }
        let mut res = json_response(error.status, &ErrorBody::of(error));
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        res
    }

    /// The userinfo answer (status 200): the released claims as one JSON
    /// object. The default hands them to [`WireProfile::json`] as a map, so
    /// a profile that wraps its JSON answers wraps this one too.
    fn userinfo_response(&self, claims: &ReleasedClaims<'_>) -> Response<Bytes> {
        self.json(StatusCode::OK, &Value::Object(claims.to_map()))
    }

    /// The introspection answer (RFC 7662 §2.2, status 200) for `token`,
    /// the active token asked about, or `None`: `{"active":false}`. The
    /// default hands it to [`WireProfile::json`] as a JSON value, so a
    /// profile that wraps its JSON answers wraps this one too.
    fn introspection_response(&self, token: Option<&TokenRecord>, issuer: &str) -> Response<Bytes> {
        let answer = Introspection::of(token, issuer);
        match serde_json::to_value(&answer) {
            Ok(v) => self.json(StatusCode::OK, &v),
            // Strings, numbers and a bool always convert; were one not to,
            // the answer itself still goes out.
            Err(_) => json_response(StatusCode::OK, &answer),
        }
    }

    /// Any other JSON answer (metadata, registration).
    fn json(&self, status: StatusCode, body: &Value) -> Response<Bytes> {
        json_response(status, body)
    }
}

/// The standard wire: RFC 6749, RFC 6750, RFC 7009, RFC 7662 JSON.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rfc6749;

impl WireProfile for Rfc6749 {
    /// Writes the claims straight to the answer: the same bytes as the
    /// default, without building the map.
    fn userinfo_response(&self, claims: &ReleasedClaims<'_>) -> Response<Bytes> {
        json_response(StatusCode::OK, claims)
    }

    /// Writes the answer straight from the record: the same bytes as the
    /// default, without building a JSON value.
    fn introspection_response(&self, token: Option<&TokenRecord>, issuer: &str) -> Response<Bytes> {
        json_response(StatusCode::OK, &Introspection::of(token, issuer))
    }
}

/// An RFC 7662 answer, its members in name order (as a `serde_json` map
/// writes them); all but `active` left out for an inactive token.
#[derive(Serialize)]
struct Introspection<'a> {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
}

impl<'a> Introspection<'a> {
    fn of(token: Option<&'a TokenRecord>, issuer: &'a str) -> Self {
        match token {
            Some(t) => Self {
                active: true,
                client_id: Some(&t.client_id),
                exp: t.expires_at.map(|e| e.timestamp()),
                iat: Some(t.issued_at.timestamp()),
                iss: Some(issuer),
                scope: Some(t.scope.as_str()),
                sub: t.user_id.as_ref().map(UserId::as_str),
                token_type: Some(match t.kind {
                    TokenKind::Access => "Bearer",
                    TokenKind::Refresh => "refresh_token",
                }),
            },
            None => Self {
                active: false,
                client_id: None,
                exp: None,
                iat: None,
                iss: None,
                scope: None,
                sub: None,
                token_type: None,
            },
        }
    }
}

/// `{"error": …, "error_description": …}`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    error_description: &'a str,
}

impl<'a> ErrorBody<'a> {
    fn of(e: &'a OAuthError) -> Self {
        Self {
            error: e.code.as_str(),
            error_description: &e.description,
        }
    }
}

/// A JSON answer with `Cache-Control: no-store` (RFC 6749 §5.1: every
/// answer that may carry credentials must not be cached; the rest lose
/// nothing by it).
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Bytes> {
    // Room for a token or userinfo answer, so the buffer rarely grows; the
    // response takes the buffer as it is, without a copy.
    let mut bytes = Vec::with_capacity(256);
    if serde_json::to_writer(&mut bytes, body).is_err() {
        return plain_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(br#"{"error":"server_error"}"#),
        );
    }
    plain_response(status, Bytes::from(bytes))
}

fn plain_response(status: StatusCode, bytes: Bytes) -> Response<Bytes> {
    let mut res = Response::new(bytes);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// Reads a POST body as a form or, with `Content-Type: application/json`,
/// as a JSON object.
pub fn read_body_params(request: &Request<Bytes>) -> Result<Params, OAuthError> {
    let ct = request.headers().get(CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or("invalid")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match ct.as_deref() {
        None | Some("application/x-www-form-urlencoded") => Params::from_form(request.body()),
        Some("application/json") => Params::from_json(request.body()),
        Some(_) => Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded or application/json",
        )),
    }
}

/// The token of an `Authorization: Bearer` header. More than one
/// `Authorization` header, or a malformed one, is `invalid_request`; a
/// header with another scheme counts as no bearer token.
pub fn bearer_from_header(parts: &http::request::Parts) -> Result<Option<&str>, OAuthError> {
    let mut values = parts.headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OAuthError::invalid_request(
            "more than one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_request("the Authorization header is not ASCII"))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim_start_matches(' ');
    // RFC 6750 §2.1 b64token.
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
    {
        return Err(OAuthError::invalid_request("malformed bearer token"));
    }
    Ok(Some(token))
}

/// Keeps text safe inside an HTTP quoted-string: printable ASCII, no `"` or `\`.
fn quoted_string_safe(s: &str) -> String {
    s.chars()
        .filter(|c| (c.is_ascii_graphic() || *c == ' ') && *c != '"' && *c != '\\')
        .collect()
}

/// Answers 405 for a method the endpoint does not take.
pub fn method_not_allowed(profile: &dyn WireProfile, allow: &'static str) -> Response<Bytes> {
    let e = OAuthError::new(
        ErrorCode::InvalidRequest,
        format!("this endpoint takes {allow}"),
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED);
    let mut res = profile.error_response(&e, false);
    res.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(auth: &[&str]) -> http::request::Parts {
        let mut b = Request::builder();
        for a in auth {
            b = b.header("authorization", *a);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn bearer_header_rules() {
        assert_eq!(
            bearer_from_header(&parts(&["Bearer abc"])).ok().flatten(),
            Some("abc")
        );
        assert_eq!(
            bearer_from_header(&parts(&["bearer abc=="])).ok().flatten(),
            Some("abc==")
        );
        assert_eq!(
            bearer_from_header(&parts(&["Basic abc"])).ok().flatten(),
            None
        );
        assert_eq!(bearer_from_header(&parts(&[])).ok().flatten(), None);
        assert!(bearer_from_header(&parts(&["Bearer a b"])).is_err());
        assert!(bearer_from_header(&parts(&["Bearer "])).is_err());
        assert!(bearer_from_header(&parts(&["Bearer a", "Bearer b"])).is_err());
    }

    #[test]
    fn error_response_shape() {
        let r = Rfc6749.error_response(&OAuthError::invalid_client("bad"), true);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap_or("")
                .starts_with("Basic")
        );
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        let v: Value = serde_json::from_slice(r.body()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"error":"invalid_client","error_description":"bad"})
        );
        let r = Rfc6749.error_response(&OAuthError::invalid_client("bad"), false);
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
