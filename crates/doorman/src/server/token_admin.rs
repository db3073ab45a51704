//! Revocation (RFC 7009), introspection (RFC 7662) and metadata (RFC 8414).

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::AuthorizationServer;
use crate::config::Config;
use crate::error::OAuthError;
use crate::model::{Client, TokenKind, TokenRecord};
use crate::secret::TokenHash;
use crate::wire::{Params, method_not_allowed};

impl AuthorizationServer {
    /// Reads and authenticates a client-authenticated POST (revocation,
    /// introspection); answers the parameters and client, or the error response.
    async fn authenticated_post(
        &self,
        request: &Request<Bytes>,
    ) -> Result<(Params, std::sync::Arc<Client>), Response<Bytes>> {
        if request.method() != Method::POST {
            return Err(method_not_allowed(self.profile(), "POST"));
        }
        if let Some(res) = self.too_large(request, request.body().len()) {
            return Err(res);
        }
        let params = self
            .profile()
            .read_params(request)
            .map_err(|e| self.profile().error_response(&e, false))?;
        let basic_hint = request.headers().contains_key(http::header::AUTHORIZATION);
        params
            .reject_repeats()
            .map_err(|e| self.profile().error_response(&e, basic_hint))?;
        let (client, _) = self
            .authenticate_client(request.headers(), &params)
            .await
            .map_err(|(e, basic)| self.profile().error_response(&e, basic))?;
        Ok((params, client))
    }

    /// The token a client-authenticated request names, if it exists and
    /// was issued to that client.
    async fn own_token(
        &self,
        params: &Params,
        client: &Client,
    ) -> Result<Option<TokenRecord>, OAuthError> {
        let token = params.require("token")?;
        let hash = TokenHash::of_token(token);
        Ok(self
            .inner
            .store
            .token(&hash)
            .await?
            .filter(|r| r.hash.ct_eq(&hash) && r.client_id == client.client_id))
    }

    /// The revocation endpoint (RFC 7009). A refresh token takes its whole
    /// grant with it; an access token goes alone. Unknown tokens, and tokens
    /// of other clients (left untouched, so the endpoint is no oracle), answer 200.
    pub async fn revoke(&self, request: Request<Bytes>) -> Response<Bytes> {
        let (params, client) = match self.authenticated_post(&request).await {
            Ok(x) => x,
            Err(res) => return res,
        };
        let result = async {
            match self.own_token(&params, &client).await? {
                Some(r) if r.kind == TokenKind::Refresh => {
                    self.inner.store.revoke_grant(&r.grant_id).await?
                }
                Some(r) => {
                    self.inner.store.delete_token(&r.hash).await?;
                }
                None => {}
            }
            Ok::<_, OAuthError>(())
        }
        .await;
        match result {
            Ok(()) => self.profile().json(StatusCode::OK, &json!({})),
            Err(e) => self.profile().error_response(&e, false),
        }
    }

    /// The introspection endpoint (RFC 7662). A client may introspect only
    /// the tokens issued to it; anything else is `{"active":false}`.
    pub async fn introspect(&self, request: Request<Bytes>) -> Response<Bytes> {
        let (params, client) = match self.authenticated_post(&request).await {
            Ok(x) => x,
            Err(res) => return res,
        };
        let record = match self.own_token(&params, &client).await {
            Ok(r) => r,
            Err(e) => return self.profile().error_response(&e, false),
        };
        let now = self.inner.clock.now();
        let active = record.filter(|r| !r.is_expired(now) && r.consumed_at.is_none());
        self.profile()
            .introspection_response(active.as_ref(), &self.config().issuer)
    }
}

/// The RFC 8414 document, rendered once at build time.
pub(super) fn metadata_document(config: &Config) -> Bytes {
    let e = &config.endpoints;
    let mut doc = json!({
        "issuer": config.issuer,
        "authorization_endpoint": config.url(&e.authorization),
        "token_endpoint": config.url(&e.token),
        "userinfo_endpoint": config.url(&e.userinfo),
        "revocation_endpoint": config.url(&e.revocation),
        "introspection_endpoint": config.url(&e.introspection),
        "scopes_supported": config.scopes.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    });
    if let Some(r) = &e.registration {
        doc["registration_endpoint"] = Value::String(config.url(r));
    }
    Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
}
