//! The token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §5, §6; RFC 7636 §4.6;
//! RFC 9700 §4.8.2, §4.14.2).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Method, Request, Response};
use sha2::{Digest, Sha256};

use super::AuthorizationServer;
use crate::error::{ErrorCode, OAuthError};
use crate::model::{
    Client, CodeRecord, GrantId, GrantRecord, GrantType, Rotation, TokenKind, TokenRecord, UserId,
};
use crate::scope::Scopes;
use crate::secret::{AccessToken, RefreshToken, ct_eq_bytes};
use crate::store::{CodeIssuer, Redemption};
use crate::wire::{IssuedTokens, Params, method_not_allowed};

impl AuthorizationServer {
    /// The token endpoint over HTTP.
    pub async fn token(&self, request: Request<Bytes>) -> Response<Bytes> {
        if request.method() != Method::POST {
            return method_not_allowed(self.profile(), "POST");
        }
        if let Some(res) = self.too_large(&request, request.body().len()) {
            return res;
        }
        match self.token_inner(&request).await {
            Ok(tokens) => self.profile().token_response(&tokens),
            Err((e, basic)) => self.profile().error_response(&e, basic),
        }
    }

    async fn token_inner(
        &self,
        request: &Request<Bytes>,
    ) -> Result<IssuedTokens, (OAuthError, bool)> {
        let params = self
            .profile()
            .read_params(request)
            .map_err(|e| (e, false))?;
        let basic_hint = request.headers().contains_key(http::header::AUTHORIZATION);
        params.reject_repeats().map_err(|e| (e, basic_hint))?;
        let (client, basic) = self.authenticate_client(request.headers(), &params).await?;
        let grant_type = params.require("grant_type").map_err(|e| (e, basic))?;
        let result = match GrantType::parse(grant_type) {
            Some(GrantType::AuthorizationCode) => self.exchange_code(&client, &params).await,
            Some(GrantType::RefreshToken) => self.refresh(&client, &params).await,
            Some(GrantType::ClientCredentials) => self.client_credentials(&client, &params).await,
            None => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "unsupported grant_type",
            )),
        };
        result.map_err(|e| (e, basic))
    }

    /// `authorization_code`: redeem a code once, check its bindings and PKCE.
    async fn exchange_code(
        &self,
        client: &Arc<Client>,
        params: &Params,
    ) -> Result<IssuedTokens, OAuthError> {
        require_grant(client, GrantType::AuthorizationCode)?;
        let code = params.require("code")?;
        let now = self.inner.clock.now();
        let redirect_uri = params.get("redirect_uri").map(str::to_owned);
        let verifier = params.get("code_verifier").map(str::to_owned);
        let refresh =
            self.config().issue_refresh_tokens && client.allows_grant(GrantType::RefreshToken);
        // The response for what `issue` minted (plaintext tokens). Each call
        // overwrites it: a store that retries its transaction calls `issue`
        // again and stores what the last call answered. The issuer owns
        // what it uses, so a store may run it on a thread of its own.
        let minted = Arc::new(std::sync::Mutex::new(None));
        let issue: Arc<CodeIssuer> = {
            let (server, client, minted) = (self.clone(), Arc::clone(client), Arc::clone(&minted));
            Arc::new(move |record: &CodeRecord| {
                check_code_bindings(
                    record,
                    &client,
                    redirect_uri.as_deref(),
                    verifier.as_deref(),
                    now,
                )?;
                let (grant, records, issued) = server.mint_grant(
                    &client,
                    record.grant_id.clone(),
                    Some(record.user_id.clone()),
                    record.scope.clone(),
                    refresh,
                    now,
                );
                if let Ok(mut slot) = minted.lock() {
                    *slot = Some(issued);
                }
                Ok((grant, records))
            })
        };
        let hash = crate::TokenHash::of_token(code);
        match self.inner.store.redeem_code(&hash, now, issue).await? {
            // `None`: a store answered Issued without calling `issue`.
            Redemption::Issued => minted
                .lock()
                .ok()
                .and_then(|mut slot| slot.take())
                .ok_or_else(OAuthError::server_error),
            Redemption::Refused(e) => Err(e),
            Redemption::Revoked => Err(OAuthError::invalid_grant(
                "the authorization code was revoked",
            )),
            Redemption::Replayed(grant) => {
                // RFC 6749 §4.1.2: a code used twice revokes what it issued.
                self.inner.store.revoke_grant(&grant).await?;
                Err(OAuthError::invalid_grant(
                    "the authorization code was already used",
                ))
            }
            Redemption::Missing => Err(OAuthError::invalid_grant(
                "the authorization code is invalid",
            )),
        }
    }

    /// `refresh_token`: rotate, detect reuse, allow narrowing.
    async fn refresh(&self, client: &Client, params: &Params) -> Result<IssuedTokens, OAuthError> {
        require_grant(client, GrantType::RefreshToken)?;
        let presented = params.require("refresh_token")?;
        let hash = crate::TokenHash::of_token(presented);
        let now = self.inner.clock.now();
        let invalid =
            || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
        let Some(old) = self.inner.store.token(&hash).await? else {
            return Err(invalid());
        };
        if old.kind != TokenKind::Refresh
            || !old.hash.ct_eq(&hash)
            || old.client_id != client.client_id
        {
            return Err(invalid());
        }
        if old.consumed_at.is_some() {
            // RFC 9700 §4.14.2: a used refresh token came back; one of the two
            // holders is an attacker, so the whole grant goes.
            self.inner.store.revoke_grant(&old.grant_id).await?;
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; the grant is revoked",
            ));
        }
        if old.is_expired(now) {
            return Err(invalid());
        }
        let scope = match params.get("scope") {
            None => old.scope.clone(),
            Some(s) => {
                let s = Scopes::parse(s).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
                if !s.is_subset_of(&old.scope) {
                    return Err(OAuthError::invalid_scope(
                        "a refresh cannot widen the scope",
                    ));
                }
                s
            }
        };
        let (access, access_rec) = self.new_token(
            TokenKind::Access,
            &old.grant_id,
            client,
            old.user_id.clone(),
            scope.clone(),
            now,
        );
        // RFC 6749 §6: the new refresh token keeps the scope of the old one.
        let (refresh, refresh_rec) = self.new_token(
            TokenKind::Refresh,
            &old.grant_id,
            client,
            old.user_id.clone(),
            old.scope.clone(),
            now,
        );
        let grace_until = now + self.config().refresh_grace;
        match self
            .inner
            .store
            .rotate_refresh(&hash, now, grace_until, &[access_rec, refresh_rec])
            .await?
        {
            Rotation::Rotated => Ok(self.issued(
                AccessToken::new(access),
                Some(RefreshToken::new(refresh)),
                scope,
                old.user_id,
                client,
            )),
            Rotation::Reused => Err(OAuthError::invalid_grant(
                "the refresh token was already used; the grant is revoked",
            )),
            Rotation::Missing => Err(invalid()),
        }
    }

    /// `client_credentials`: confidential clients only, access token only (RFC 6749 §4.4.3).
    async fn client_credentials(
        &self,
        client: &Client,
        params: &Params,
    ) -> Result<IssuedTokens, OAuthError> {
        if !client.is_confidential() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "public clients cannot use client_credentials",
            ));
        }
        require_grant(client, GrantType::ClientCredentials)?;
        let scope = match params.get("scope") {
            None => client.scope.clone(),
            Some(s) => {
                let s = Scopes::parse(s).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
                if !s.is_subset_of(&client.scope) {
                    return Err(OAuthError::invalid_scope(
                        "scope is not allowed for this client",
                    ));
                }
                s
            }
        };
        let now = self.inner.clock.now();
        let (grant, records, issued) =
            self.mint_grant(client, GrantId::generate(), None, scope, false, now);
        if !self.inner.store.create_grant(&grant, &records).await? {
            // A fresh random id cannot have been revoked: the store misbehaves.
            return Err(OAuthError::server_error());
        }
        Ok(issued)
    }

    /// A new grant with its access token (and refresh token): the records
    /// for the store and the response (with the plaintext) for the client.
    fn mint_grant(
        &self,
        client: &Client,
        grant_id: GrantId,
        user: Option<UserId>,
        scope: Scopes,
        with_refresh: bool,
        now: DateTime<Utc>,
    ) -> (GrantRecord, Vec<TokenRecord>, IssuedTokens) {
        let (access, access_rec) = self.new_token(
            TokenKind::Access,
            &grant_id,
            client,
            user.clone(),
            scope.clone(),
            now,
        );
        let mut records = Vec::with_capacity(2);
        records.push(access_rec);
        let refresh = with_refresh.then(|| {
            let (t, rec) = self.new_token(
                TokenKind::Refresh,
                &grant_id,
                client,
                user.clone(),
                scope.clone(),
                now,
            );
            records.push(rec);
            RefreshToken::new(t)
        });
        let issued = self.issued(
            AccessToken::new(access),
            refresh,
            scope.clone(),
            user.clone(),
            client,
        );
        let grant = GrantRecord {
            id: grant_id,
            client_id: client.client_id.clone(),
            user_id: user,
            scope,
            created_at: now,
        };
        (grant, records, issued)
    }

    /// Mints a token: the plaintext for the client, the record for the store.
    fn new_token(
        &self,
        kind: TokenKind,
        grant: &GrantId,
        client: &Client,
        user: Option<UserId>,
        scope: Scopes,
        now: DateTime<Utc>,
    ) -> (String, TokenRecord) {
        let ttl = match kind {
            TokenKind::Access => self.config().access_ttl,
            TokenKind::Refresh => self.config().refresh_ttl,
        };
        let token = crate::secret::located_token();
        let record = TokenRecord {
            hash: crate::TokenHash::of_token(&token),
            kind,
            grant_id: grant.clone(),
            client_id: client.client_id.clone(),
            user_id: user,
            scope,
            issued_at: now,
            expires_at: ttl.map(|t| now + t),
            consumed_at: None,
        };
        (token, record)
    }

    fn issued(
        &self,
        access: AccessToken,
        refresh: Option<RefreshToken>,
        scope: Scopes,
        user: Option<UserId>,
        client: &Client,
    ) -> IssuedTokens {
        let cfg = self.config();
        IssuedTokens {
            access_token: access,
            expires_in: cfg.access_ttl.map(|t| t.num_seconds()),
            refresh_expires_in: refresh
                .as_ref()
                .and(cfg.refresh_ttl)
                .map(|t| t.num_seconds()),
            refresh_token: refresh,
            scope,
            user_id: user,
            client_id: client.client_id.clone(),
        }
    }
}

fn require_grant(client: &Client, grant: GrantType) -> Result<(), OAuthError> {
    if client.allows_grant(grant) {
        Ok(())
    } else {
        Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!("this client may not use the {} grant", grant.as_str()),
        ))
    }
}

/// Is this taken code the one this client may redeem, here and now?
fn check_code_bindings(
    record: &CodeRecord,
    client: &Client,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), OAuthError> {
    if record.client_id != client.client_id || record.expires_at <= now {
        return Err(OAuthError::invalid_grant(
            "the authorization code is invalid, expired or bound elsewhere",
        ));
    }
    match redirect_uri {
        Some(r) if r != record.redirect_uri => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        None if record.redirect_uri_explicit => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri is required: it was in the authorization request",
            ));
        }
        _ => {}
    }
    verify_pkce(record.code_challenge.as_deref(), verifier)
}

/// RFC 7636 §4.6 with the RFC 9700 §4.8.2 downgrade rule: a verifier for a
/// code without a challenge is refused as firmly as a missing one.
fn verify_pkce(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(OAuthError::invalid_grant(
            "code_verifier is required for this code",
        )),
        (None, Some(_)) => Err(OAuthError::invalid_grant(
            "code_verifier sent for a code issued without PKCE",
        )),
        (Some(c), Some(v)) => {
            let well_formed = (43..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
            if well_formed && ct_eq_bytes(computed.as_bytes(), c.as_bytes()) {
                Ok(())
            } else {
                Err(OAuthError::invalid_grant(
                    "code_verifier does not match the code_challenge",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rules() {
        // RFC 7636 Appendix B.
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verify_pkce(Some(c), Some(v)).is_ok());
        assert!(verify_pkce(Some(c), Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX")).is_err());
        assert!(verify_pkce(Some(c), None).is_err());
        assert!(verify_pkce(None, Some(v)).is_err());
        assert!(verify_pkce(None, None).is_ok());
        assert!(verify_pkce(Some(c), Some("short")).is_err());
    }
}
