//! The bearer-token extractor for the host's own routes (RFC 6750).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use doorman::{AnyScope, AuthorizationServer, RequiredScope, ValidatedToken};

use crate::convert::{into_response, request_head};

/// A validated bearer access token carrying the scope `R` requires
/// (`Bearer` alone: any valid token).
///
/// As an extractor it reads the request's token, validates it with the
/// [`AuthorizationServer`] registered as app data (`web::Data<AuthorizationServer>`
/// or a plain `AuthorizationServer`), and otherwise answers by itself with the
/// RFC 6750 error: 401 `invalid_token`, 403 `insufficient_scope` (with the
/// needed scope in `WWW-Authenticate`), 400 for a malformed header. It
/// dereferences to the [`ValidatedToken`].
pub struct Bearer<R: RequiredScope = AnyScope> {
    token: ValidatedToken,
    scope: PhantomData<fn() -> R>,
}

impl<R: RequiredScope> Bearer<R> {
    /// The validated token.
    pub fn token(&self) -> &ValidatedToken {
        &self.token
    }

    /// The validated token, by value.
    pub fn into_token(self) -> ValidatedToken {
        self.token
    }
}

impl<R: RequiredScope> Deref for Bearer<R> {
    type Target = ValidatedToken;

    fn deref(&self) -> &ValidatedToken {
        &self.token
    }
}

impl<R: RequiredScope> fmt::Debug for Bearer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token value itself is never held, only what it grants.
        f.debug_struct("Bearer")
            .field("required_scope", &R::SCOPE)
            .field("token", &self.token)
            .finish()
    }
}

/// The RFC 6750 answer a [`Bearer`] extractor refused with.
#[derive(Debug)]
pub struct BearerRejection {
    head: http::response::Parts,
    body: bytes::Bytes,
}

impl BearerRejection {
    fn new(response: http::Response<bytes::Bytes>) -> Self {
        let (head, body) = response.into_parts();
        Self { head, body }
    }
}

impl fmt::Display for BearerRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bearer token refused ({})", self.head.status)
    }
}

impl ResponseError for BearerRejection {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::from_u16(self.head.status.as_u16())
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = http::Response::new(self.body.clone());
        *res.status_mut() = self.head.status;
        *res.headers_mut() = self.head.headers.clone();
        into_response(res)
    }
}

/// The server registered as app data.
pub(crate) fn server_of(req: &HttpRequest) -> Option<AuthorizationServer> {
    req.app_data::<web::Data<AuthorizationServer>>()
        .map(|d| d.get_ref().clone())
        .or_else(|| req.app_data::<AuthorizationServer>().cloned())
}

impl<R: RequiredScope> FromRequest for Bearer<R> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let server = server_of(req);
        let (parts, ()) = request_head(req).into_parts();
        Box::pin(async move {
            let Some(server) = server else {
                return Err(actix_web::error::ErrorInternalServerError(
                    "doorman: no AuthorizationServer registered as app data",
                ));
            };
            match server.validate_bearer(&parts, R::SCOPE).await {
                Ok(token) => Ok(Self {
                    token,
                    scope: PhantomData,
                }),
                Err(e) => Err(BearerRejection::new(server.bearer_error_response(&e)).into()),
            }
        })
    }
}
