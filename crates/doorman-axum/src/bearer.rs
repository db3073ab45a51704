//! The bearer-token extractor for the host's own routes (RFC 6750).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::{FromRef, FromRequestParts};
use axum::response::Response;
use doorman::{AnyScope, AuthorizationServer, RequiredScope, ValidatedToken};
use http::request::Parts;

use crate::convert::into_response;

/// A validated bearer access token carrying the scope `R` requires
/// (`Bearer` alone: any valid token).
///
/// As an extractor it reads the request's token, validates it with the
/// [`AuthorizationServer`] found in the state through
/// [`FromRef`], and otherwise answers by itself with the RFC 6750 error:
/// 401 `invalid_token` (missing, unknown, expired or revoked token), 403
/// `insufficient_scope` (with the needed scope in `WWW-Authenticate`), 400
/// for a malformed header. It dereferences to the [`ValidatedToken`].
///
/// A client-credentials token passes too; its
/// [`user_id`](ValidatedToken::user_id) is `None`.
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

impl<R: RequiredScope> Clone for Bearer<R> {
    fn clone(&self) -> Self {
        Self {
            token: self.token.clone(),
            scope: PhantomData,
        }
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

impl<S, R> FromRequestParts<S> for Bearer<R>
where
    AuthorizationServer: FromRef<S>,
    S: Send + Sync,
    R: RequiredScope,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let server = AuthorizationServer::from_ref(state);
        match server.validate_bearer(parts, R::SCOPE).await {
            Ok(token) => Ok(Self {
                token,
                scope: PhantomData,
            }),
            Err(e) => Err(into_response(server.bearer_error_response(&e))),
        }
    }
}
