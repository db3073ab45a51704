//! Client registration: the typed call hosts use for their own developer
//! consoles, and RFC 7591 dynamic registration over HTTP.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::AuthorizationServer;
use crate::error::{ErrorCode, OAuthError};
use crate::model::{Client, GrantType};
use crate::redirect::validate_registration;
use crate::scope::Scopes;
use crate::secret::{ClientSecret, random_bytes};
use crate::wire::method_not_allowed;

/// What secret a new client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretChoice {
    /// A generated 256-bit secret (recommended).
    Generate,
    /// One the developer chose; it must be at least
    /// [`Config::min_client_secret_len`](crate::Config::min_client_secret_len) long.
    Chosen(ClientSecret),
    /// None: a public client (native or browser app), which must use PKCE.
    Public,
}

/// A request to register a client.
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    /// Display name (required).
    pub name: String,
    /// Description.
    pub description: String,
    /// Redirect URIs (at least one).
    pub redirect_uris: Vec<String>,
    /// Allowed scopes; `None` allows every scope the server knows.
    pub scope: Option<Scopes>,
    /// Grant types; `None` gives `authorization_code` and `refresh_token`.
    pub grant_types: Option<Vec<GrantType>>,
    /// Secret.
    pub secret: SecretChoice,
    /// May `auto_authorize=true` skip the first consent.
    pub trusted: bool,
    /// Per-client claim release (see [`Client::released_claims`]).
    pub released_claims: Option<Vec<String>>,
}

impl ClientRegistration {
    /// A confidential client with a generated secret and the default grants.
    pub fn new(name: impl Into<String>, redirect_uris: Vec<String>) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            redirect_uris,
            scope: None,
            grant_types: None,
            secret: SecretChoice::Generate,
            trusted: false,
            released_claims: None,
        }
    }
}

/// A registered client and, once, its secret in plaintext.
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    /// The client as stored.
    pub client: Client,
    /// The secret to show the developer once; `None` for a public client.
    pub client_secret: Option<ClientSecret>,
}

fn metadata_error(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

impl AuthorizationServer {
    /// Validates and stores a new client. Errors are RFC 7591 codes
    /// (`invalid_redirect_uri`, `invalid_client_metadata`) with status 400.
    pub async fn register_client(
        &self,
        reg: ClientRegistration,
    ) -> Result<RegisteredClient, OAuthError> {
        let name = reg.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(metadata_error("name must be 1 to 200 characters"));
        }
        if reg.description.chars().count() > 2000 {
            return Err(metadata_error(
                "description must be at most 2000 characters",
            ));
        }
        if reg.redirect_uris.is_empty() || reg.redirect_uris.len() > 20 {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "register 1 to 20 redirect URIs",
            ));
        }
        for uri in &reg.redirect_uris {
            if uri.len() > 2000 {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRedirectUri,
                    "redirect_uri is too long",
                ));
            }
            validate_registration(uri, self.config().allow_http_redirects)
                .map_err(|e| OAuthError::new(ErrorCode::InvalidRedirectUri, e.to_string()))?;
        }
        let known = self.config().known_scopes();
        let scope = match reg.scope {
            Some(s) if !known.is_empty() && !s.is_subset_of(&known) => {
                return Err(metadata_error(
                    "scope names a scope this server does not offer",
                ));
            }
            Some(s) => s,
            None => known,
        };
        let grant_types = reg
            .grant_types
            .unwrap_or_else(|| vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
        if grant_types.is_empty() {
            return Err(metadata_error("grant_types must not be empty"));
        }
        let secret = match reg.secret {
            SecretChoice::Generate => Some(ClientSecret::generate()),
            SecretChoice::Chosen(s) => {
                if s.secret().chars().count() < self.config().min_client_secret_len {
                    return Err(metadata_error(format!(
                        "client_secret must be at least {} characters",
                        self.config().min_client_secret_len
                    )));
                }
                Some(s)
            }
            SecretChoice::Public => None,
        };
        if secret.is_none() && grant_types.contains(&GrantType::ClientCredentials) {
            return Err(metadata_error(
                "a public client cannot use client_credentials",
            ));
        }
        let mut client = Client {
            client_id: String::new(),
            secret_hash: secret.as_ref().map(ClientSecret::hash),
            name: name.to_owned(),
            description: reg.description,
            redirect_uris: reg.redirect_uris,
            scope,
            grant_types,
            trusted: reg.trusted,
            released_claims: reg.released_claims,
            created_at: self.inner.clock.now(),
        };
        // 128 random bits: a collision is not expected, but never overwrite.
        for _ in 0..3 {
            client.client_id = new_client_id();
            if self.inner.store.create_client(&client).await? {
                return Ok(RegisteredClient {
                    client,
                    client_secret: secret,
                });
            }
        }
        Err(OAuthError::server_error())
    }

    /// RFC 7591 dynamic registration over HTTP. The host decides who may
    /// call it (an initial access token, a developer session) before
    /// passing the request on.
    pub async fn register(&self, request: Request<Bytes>) -> Response<Bytes> {
        if request.method() != Method::POST {
            return method_not_allowed(self.profile(), "POST");
        }
        if let Some(res) = self.too_large(&request, request.body().len()) {
            return res;
        }
        let meta: Rfc7591Request = match serde_json::from_slice(request.body()) {
            Ok(m) => m,
            Err(_) => {
                return self.profile().error_response(
                    &metadata_error("the body must be a JSON object of client metadata"),
                    false,
                );
            }
        };
        match self.register_rfc7591(meta).await {
            Ok(res) => res,
            Err(e) => self.profile().error_response(&e, false),
        }
    }

    async fn register_rfc7591(&self, meta: Rfc7591Request) -> Result<Response<Bytes>, OAuthError> {
        let method = meta
            .token_endpoint_auth_method
            .as_deref()
            .unwrap_or("client_secret_basic");
        let secret = match method {
            "none" => SecretChoice::Public,
            "client_secret_basic" | "client_secret_post" => SecretChoice::Generate,
            _ => return Err(metadata_error("unsupported token_endpoint_auth_method")),
        };
        let grant_types = match meta.grant_types {
            None => None,
            Some(g) => Some(
                g.iter()
                    .map(|s| {
                        GrantType::parse(s).ok_or_else(|| metadata_error("unsupported grant type"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        if let Some(rt) = &meta.response_types
            && rt.iter().any(|r| r != "code")
        {
            return Err(metadata_error("only the code response type is supported"));
        }
        let scope = match meta.scope.as_deref() {
            None => None,
            Some(s) => Some(Scopes::parse(s).map_err(|e| metadata_error(e.to_string()))?),
        };
        let registered = self
            .register_client(ClientRegistration {
                name: meta.client_name.unwrap_or_default(),
                description: String::new(),
                redirect_uris: meta.redirect_uris.unwrap_or_default(),
                scope,
                grant_types,
                secret,
                trusted: false,
                released_claims: None,
            })
            .await?;
        let c = &registered.client;
        let mut body = json!({
            "client_id": c.client_id,
            "client_id_issued_at": c.created_at.timestamp(),
            "client_name": c.name,
            "redirect_uris": c.redirect_uris,
            "grant_types": c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "response_types": ["code"],
            "scope": c.scope.to_string(),
            "token_endpoint_auth_method": method,
        });
        if let Some(s) = &registered.client_secret {
            body["client_secret"] = json!(s.secret());
            body["client_secret_expires_at"] = json!(0);
        }
        Ok(self.profile().json(StatusCode::CREATED, &body))
    }
}

#[derive(Deserialize)]
struct Rfc7591Request {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    scope: Option<String>,
}

fn new_client_id() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    let mut s = String::from("client_");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}
