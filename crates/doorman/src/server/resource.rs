//! Resource side: bearer validation (RFC 6750), userinfo and top-up.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::AuthorizationServer;
use crate::error::{ErrorCode, OAuthError, StoreError};
use crate::host::{Balance, TokenClaims, UserClaims};
use crate::model::{Client, GrantId, TokenKind, TokenRecord, UserId};
use crate::scope::Scopes;
use crate::secret::TokenHash;
use crate::wire::{ClaimValue, Rank, ReleasedClaims, method_not_allowed};

/// A bearer token that passed validation: what a host route may rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedToken {
    /// The user it speaks for; `None` for a client-credentials token.
    pub user_id: Option<UserId>,
    /// The client holding it.
    pub client_id: String,
    /// Its scopes.
    pub scope: Scopes,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it expires; `None` never.
    pub expires_at: Option<DateTime<Utc>>,
    /// The grant it belongs to.
    pub grant_id: GrantId,
}

/// Why a bearer token was refused; renders itself as the RFC 6750 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct BearerError {
    /// The error (`invalid_token` 401, `insufficient_scope` 403,
    /// `invalid_request` 400, or `server_error` 500).
    pub error: OAuthError,
    /// The scope that was needed, for `insufficient_scope`.
    pub scope: Option<String>,
    /// The request carried no token at all.
    pub missing: bool,
}

impl BearerError {
    fn invalid(description: &'static str) -> Self {
        Self {
            error: OAuthError::new(ErrorCode::InvalidToken, description),
            scope: None,
            missing: false,
        }
    }
}

impl AuthorizationServer {
    /// Validates the request's bearer token and, if given, that it carries
    /// `required_scope`. One store round trip.
    pub async fn validate_bearer(
        &self,
        parts: &http::request::Parts,
        required_scope: Option<&str>,
    ) -> Result<ValidatedToken, BearerError> {
        let token = self.bearer_of(parts)?;
        self.validate_token(token, required_scope).await
    }

    /// The request's bearer token, or the RFC 6750 refusal.
    fn bearer_of<'a>(&self, parts: &'a http::request::Parts) -> Result<&'a str, BearerError> {
        match self.profile().bearer_token(parts) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(BearerError {
                error: OAuthError::new(ErrorCode::InvalidToken, "a bearer token is required"),
                scope: None,
                missing: true,
            }),
            Err(e) => Err(BearerError {
                error: e,
                scope: None,
                missing: false,
            }),
        }
    }

    /// Validates a bearer token string (for profiles or hosts that carry it
    /// elsewhere).
    pub async fn validate_token(
        &self,
        token: &str,
        required_scope: Option<&str>,
    ) -> Result<ValidatedToken, BearerError> {
        self.validate_hash(&TokenHash::of_token(token), required_scope)
            .await
    }

    /// Reads the token stored under `hash` from the store and checks it.
    async fn validate_hash(
        &self,
        hash: &TokenHash,
        required_scope: Option<&str>,
    ) -> Result<ValidatedToken, BearerError> {
        let record = self.inner.store.token(hash).await.map_err(store_err)?;
        self.check_token(hash, record, required_scope, self.inner.clock.now())
    }

    /// Whether `record`, read under `hash`, is a live access token carrying
    /// `required_scope` at `now` (read after the record): every bearer
    /// check, whoever read the record, ends here.
    fn check_token(
        &self,
        hash: &TokenHash,
        record: Option<TokenRecord>,
        required_scope: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ValidatedToken, BearerError> {
        let Some(record) = record else {
            return Err(invalid_token());
        };
        if record.kind != TokenKind::Access || !record.hash.ct_eq(hash) {
            return Err(invalid_token());
        }
        if record.is_expired(now) {
            return Err(BearerError::invalid("the access token expired"));
        }
        if let Some(scope) = required_scope
            && !record.scope.contains(scope)
        {
            return Err(BearerError {
                error: OAuthError::new(
                    ErrorCode::InsufficientScope,
                    format!("this request needs scope `{scope}`"),
                ),
                scope: Some(scope.to_owned()),
                missing: false,
            });
        }
        Ok(ValidatedToken {
            user_id: record.user_id,
            client_id: record.client_id,
            scope: record.scope,
            issued_at: record.issued_at,
            expires_at: record.expires_at,
            grant_id: record.grant_id,
        })
    }

    /// The RFC 6750 answer for a refused bearer token.
    pub fn bearer_error_response(&self, error: &BearerError) -> Response<Bytes> {
        self.profile()
            .bearer_error_response(&error.error, error.scope.as_deref(), error.missing)
    }

    /// The userinfo endpoint: the host's claims and balance, released by
    /// the token's scopes and the client's claim-release list.
    ///
    /// When the host reads the token and its user's claims together
    /// ([`Claims::claims_with_token`](crate::Claims::claims_with_token)), this is one store round trip;
    /// otherwise two (the token, then the claims).
    ///
    /// The method and the bearer token are read from `request` when this
    /// is called; the future holds only the token's hash, not the request.
    /// (Every request's future is moved and copied whole a few times on its
    /// way through a web framework; see BENCHMARKS.md, H10.)
    pub fn userinfo(
        &self,
        request: Request<Bytes>,
    ) -> impl Future<Output = Response<Bytes>> + Send + '_ {
        let start = if request.method() != Method::GET && request.method() != Method::POST {
            Err(Refused::Method)
        } else {
            let (parts, _) = request.into_parts();
            self.bearer_of(&parts)
                .map(TokenHash::of_token)
                .map_err(Refused::Bearer)
        };
        async move {
            let hash = match start {
                Ok(hash) => hash,
                Err(Refused::Method) => return method_not_allowed(self.profile(), "GET, POST"),
                Err(Refused::Bearer(e)) => return self.bearer_error_response(&e),
            };
            let (token, claims, now) = match self.userinfo_token(&hash).await {
                Ok(read) => read,
                Err(e) => return self.bearer_error_response(&e),
            };
            match self.release(&token, claims, now).await {
                Ok(release) => self.profile().userinfo_response(&release.claims()),
                Err(e) => self.bearer_error_response(&e),
            }
        }
    }

    /// The token under `hash`, checked, its user's claims, and the time it
    /// was checked at (one clock read serves the whole request).
    async fn userinfo_token(
        &self,
        hash: &TokenHash,
    ) -> Result<(ValidatedToken, Option<UserClaims>, DateTime<Utc>), BearerError> {
        let joined = match &self.inner.claims {
            Some(c) => c.claims_with_token(hash).await.map_err(store_err)?,
            None => TokenClaims::Separate,
        };
        match joined {
            TokenClaims::Separate => {
                let record = self.inner.store.token(hash).await.map_err(store_err)?;
                let now = self.inner.clock.now();
                let token = self.check_token(hash, record, None, now)?;
                let claims = self.read_claims(&token).await?;
                Ok((token, claims, now))
            }
            TokenClaims::NoToken => Err(invalid_token()),
            TokenClaims::Found(record, claims) => {
                let now = self.inner.clock.now();
                let token = self.check_token(hash, Some(record), None, now)?;
                if token.user_id.is_none() {
                    return Err(no_user());
                }
                match claims {
                    Some(claims) => Ok((token, Some(claims), now)),
                    None => Err(user_gone()),
                }
            }
        }
    }

    /// The claims a validated token may see, as a JSON object.
    pub async fn user_claims(
        &self,
        token: &ValidatedToken,
    ) -> Result<Map<String, Value>, BearerError> {
        let claims = self.read_claims(token).await?;
        let now = self.inner.clock.now();
        Ok(self.release(token, claims, now).await?.claims().to_map())
    }

    /// The host's claims of the token's user (`None` when the host has no
    /// [`Claims`](crate::Claims)).
    async fn read_claims(&self, token: &ValidatedToken) -> Result<Option<UserClaims>, BearerError> {
        let Some(user) = &token.user_id else {
            return Err(no_user());
        };
        match &self.inner.claims {
            Some(c) => match c.claims(user).await.map_err(store_err)? {
                Some(claims) => Ok(Some(claims)),
                None => Err(user_gone()),
            },
            None => Ok(None),
        }
    }

    /// What the release of the user's `claims` to `token` needs: the
    /// balance (when the token's scopes let it through) and the client's
    /// claim-release list (read through the client cache as of `now`).
    async fn release<'t>(
        &self,
        token: &'t ValidatedToken,
        mut claims: Option<UserClaims>,
        now: DateTime<Utc>,
    ) -> Result<Release<'t>, BearerError> {
        let Some(user) = &token.user_id else {
            return Err(no_user());
        };
        let balance = if !token.scope.contains(&self.config().balance_scope) {
            None
        } else if let Some(b) = claims.as_mut().and_then(|c| c.balance.take()) {
            Some(b)
        } else if let Some(b) = &self.inner.balances {
            b.balance(user).await.map_err(store_err)?
        } else {
            None
        };
        // The client's claim-release list, read through the client cache.
        let client = self
            .client_at(&token.client_id, now)
            .await
            .map_err(store_err)?;
        Ok(Release {
            token,
            user,
            claims,
            balance,
            client,
        })
    }
    /// The top-up endpoint: `{"topup_url": …}` for a token with the balance scope.
    pub async fn topup(&self, request: Request<Bytes>) -> Response<Bytes> {
        if request.method() != Method::GET {
            return method_not_allowed(self.profile(), "GET");
        }
        let (parts, _) = request.into_parts();
        let scope = self.config().balance_scope.clone();
        let token = match self.validate_bearer(&parts, Some(&scope)).await {
            Ok(t) => t,
            Err(e) => return self.bearer_error_response(&e),
        };
        let Some(user) = &token.user_id else {
            return self.bearer_error_response(&no_user());
        };
        let balance = match &self.inner.balances {
            Some(b) => b.balance(user).await,
            None => Ok(None),
        };
        match balance {
            Ok(Some(b)) => self
                .profile()
                .json(StatusCode::OK, &json!({ "topup_url": b.topup_url })),
            Ok(None) => self.bearer_error_response(&user_gone()),
            Err(e) => self.bearer_error_response(&store_err(e)),
        }
    }
}

/// A token's user's claims with what decides their release.
/// Why [`AuthorizationServer::userinfo`] refused a request before its
/// future started; the answer itself is built in the future, which so
/// holds no response.
enum Refused {
    /// Neither GET nor POST.
    Method,
    /// No bearer token, or a malformed one.
    Bearer(BearerError),
}

struct Release<'t> {
    token: &'t ValidatedToken,
    user: &'t UserId,
    claims: Option<UserClaims>,
    balance: Option<Balance>,
    client: Option<Arc<Client>>,
}

impl Release<'_> {
    /// What the token's scopes and the client's claim-release list let
    /// through: every base claim, the scoped claims of the token's scopes
    /// the list names (all of them when the client has no list), the
    /// balance fields the list names, and `sub` (the token's user) unless
    /// the host gave one.
    fn claims(&self) -> ReleasedClaims<'_> {
        let released = self
            .client
            .as_ref()
            .and_then(|c| c.released_claims.as_deref());
        let allowed = |name: &str| released.is_none_or(|r| r.iter().any(|n| n == name));
        let count = self.claims.as_ref().map_or(0, |c| c.iter().count());
        let mut out = ReleasedClaims::with_capacity(count + 4);
        for (scope, name, value) in self.claims.iter().flat_map(UserClaims::iter) {
            match scope {
                None => out.push(name, Rank::Base, ClaimValue::Json(value)),
                Some(scope) if self.token.scope.contains(scope) && allowed(name) => {
                    out.push(name, Rank::Scoped, ClaimValue::Json(value));
                }
                Some(_) => {}
            }
        }
        if let Some(b) = &self.balance {
            for (name, value) in [
                ("quota", ClaimValue::Int(b.quota)),
                ("used_quota", ClaimValue::Int(b.used_quota)),
                ("balance_formatted", ClaimValue::Text(&b.formatted)),
            ] {
                if allowed(name) {
                    out.push(name, Rank::Balance, value);
                }
            }
        }
        out.push("sub", Rank::Subject, ClaimValue::Text(self.user.as_str()));
        out.finish()
    }
}

/// A store or host failure, as the bearer answer (`server_error`).
fn store_err(e: StoreError) -> BearerError {
    BearerError {
        error: e.into(),
        scope: None,
        missing: false,
    }
}

/// No live access token under that hash (unknown, or not an access token).
fn invalid_token() -> BearerError {
    BearerError::invalid("the access token is invalid")
}

/// The token is fine, but the user it acts for is gone.
fn user_gone() -> BearerError {
    BearerError::invalid("the token's user no longer exists")
}

fn no_user() -> BearerError {
    BearerError {
        error: OAuthError::new(
            ErrorCode::InsufficientScope,
            "this token does not act for a user",
        ),
        scope: None,
        missing: false,
    }
}
