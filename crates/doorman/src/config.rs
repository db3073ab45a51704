//! Policy as data: lifetimes, PKCE, redirect schemes, consent, limits.
//! Every field has a safe default (RFC 9700); one builder sets them.

use chrono::TimeDelta;

use crate::scope::{ScopeInfo, Scopes};
use crate::secret::random_bytes;

/// When PKCE is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkcePolicy {
    /// Public clients must use PKCE; confidential ones may (RFC 9700 §2.1.1 minimum).
    PublicClients,
    /// Every client must use PKCE.
    AllClients,
}

/// Paths (or absolute URLs) of the endpoints, used in metadata and in the
/// login `return_to` and consent form action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Authorization endpoint (GET) and consent form target (POST).
    pub authorization: String,
    /// Token endpoint.
    pub token: String,
    /// UserInfo endpoint.
    pub userinfo: String,
    /// Revocation endpoint (RFC 7009).
    pub revocation: String,
    /// Introspection endpoint (RFC 7662).
    pub introspection: String,
    /// Top-up link endpoint.
    pub topup: String,
    /// Dynamic registration endpoint (RFC 7591), if the host offers one.
    pub registration: Option<String>,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            authorization: "/oauth2/authorize".into(),
            token: "/oauth2/token".into(),
            userinfo: "/oauth2/userinfo".into(),
            revocation: "/oauth2/revoke".into(),
            introspection: "/oauth2/introspect".into(),
            topup: "/oauth2/topup".into(),
            registration: None,
        }
    }
}

impl Endpoints {
    /// All endpoints under one prefix, e.g. `/api/oauth2`.
    pub fn under(prefix: &str) -> Self {
        let p = prefix.trim_end_matches('/');
        Self {
            authorization: format!("{p}/authorize"),
            token: format!("{p}/token"),
            userinfo: format!("{p}/userinfo"),
            revocation: format!("{p}/revoke"),
            introspection: format!("{p}/introspect"),
            topup: format!("{p}/topup"),
            registration: Some(format!("{p}/register")),
        }
    }
}

/// The server's policy. Build it with [`Config::builder`].
#[derive(Clone)]
pub struct Config {
    /// The issuer URL (RFC 8414 / RFC 9207), without a trailing slash.
    pub issuer: String,
    /// Endpoint paths.
    pub endpoints: Endpoints,
    /// Authorization-code lifetime (default 600 s).
    pub code_ttl: TimeDelta,
    /// Access-token lifetime; `None` never expires (default 3600 s).
    pub access_ttl: Option<TimeDelta>,
    /// Refresh-token lifetime; `None` never expires (default 30 days).
    pub refresh_ttl: Option<TimeDelta>,
    /// How long the previous access tokens keep working after a refresh (default 0).
    pub refresh_grace: TimeDelta,
    /// Whether refresh tokens are issued with authorization-code grants (default true).
    pub issue_refresh_tokens: bool,
    /// Whether `state` is required at the authorization endpoint (default true).
    pub require_state: bool,
    /// PKCE requirement (default: public clients).
    pub pkce: PkcePolicy,
    /// Allow plain-http redirect URIs to non-loopback hosts (default false).
    pub allow_http_redirects: bool,
    /// The scopes the server knows, with consent-page descriptions.
    pub scopes: Vec<ScopeInfo>,
    /// Scopes used when an authorization request names none; `None` makes
    /// `scope` required.
    pub default_scope: Option<Scopes>,
    /// The scope that releases balance claims (default `balance`).
    pub balance_scope: String,
    /// Largest request body accepted (default 64 KiB); larger → 413.
    pub max_body_bytes: usize,
    /// How long a consent form stays valid (default 10 min).
    pub consent_ttl: TimeDelta,
    /// HMAC key for consent and other form tickets. Random per process by
    /// default; instances behind one load balancer must share it.
    pub form_key: [u8; 32],
    /// Shortest client secret a developer may choose (default 32). Chosen
    /// secrets are hashed with SHA-256 like generated ones, so only their
    /// length keeps them out of reach of offline guessing.
    pub min_client_secret_len: usize,
    /// How long the server keeps a client it read from the store (default
    /// 5 s; zero: no cache). Clients are read on every token, introspection
    /// and userinfo request but change rarely. A change made through this
    /// server ([`AuthorizationServer::register_client`],
    /// [`AuthorizationServer::update_client`],
    /// [`AuthorizationServer::delete_client`]) applies at once; one made
    /// by another instance on the same database, or straight in the store,
    /// applies here within this time. The cache keeps a copy per core (at
    /// most 16), each filled on its own, so the store sees up to that many
    /// reads of a client in this time.
    ///
    /// [`AuthorizationServer::register_client`]: crate::AuthorizationServer::register_client
    /// [`AuthorizationServer::update_client`]: crate::AuthorizationServer::update_client
    /// [`AuthorizationServer::delete_client`]: crate::AuthorizationServer::delete_client
    pub client_cache_ttl: TimeDelta,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("issuer", &self.issuer)
            .field("endpoints", &self.endpoints)
            .field("code_ttl", &self.code_ttl)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("refresh_grace", &self.refresh_grace)
            .field("require_state", &self.require_state)
            .field("pkce", &self.pkce)
            .field("allow_http_redirects", &self.allow_http_redirects)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("client_cache_ttl", &self.client_cache_ttl)
            .field("form_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A builder with safe defaults for `issuer`.
    pub fn builder(issuer: impl Into<String>) -> ConfigBuilder {
        let mut form_key = [0u8; 32];
        random_bytes(&mut form_key);
        ConfigBuilder(Config {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            endpoints: Endpoints::default(),
            code_ttl: TimeDelta::seconds(600),
            access_ttl: Some(TimeDelta::seconds(3600)),
            refresh_ttl: Some(TimeDelta::days(30)),
            refresh_grace: TimeDelta::zero(),
            issue_refresh_tokens: true,
            require_state: true,
            pkce: PkcePolicy::PublicClients,
            allow_http_redirects: false,
            scopes: Vec::new(),
            default_scope: None,
            balance_scope: "balance".into(),
            max_body_bytes: 64 * 1024,
            consent_ttl: TimeDelta::minutes(10),
            form_key,
            min_client_secret_len: 32,
            client_cache_ttl: TimeDelta::seconds(5),
        })
    }

    /// The scopes the server knows, as a set. A configured name that is
    /// not one RFC 6749 scope token (empty, or with a space or a quote in
    /// it) is left out, as [`Scopes::from_tokens`] leaves it: no request
    /// can name it, and it must not make its pieces known.
    pub fn known_scopes(&self) -> Scopes {
        Scopes::from_tokens(self.scopes.iter().map(|s| s.name.as_str()))
    }

    /// An absolute URL for an endpoint path.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{}", self.issuer, path)
        }
    }
}

/// Sets [`Config`] fields; see each field for its meaning and default.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Endpoint paths.
    pub fn endpoints(mut self, e: Endpoints) -> Self {
        self.0.endpoints = e;
        self
    }
    /// Authorization-code lifetime.
    pub fn code_ttl(mut self, ttl: TimeDelta) -> Self {
        self.0.code_ttl = ttl;
        self
    }
    /// Access-token lifetime (`None`: never expires).
    pub fn access_ttl(mut self, ttl: Option<TimeDelta>) -> Self {
        self.0.access_ttl = ttl;
        self
    }
    /// Refresh-token lifetime (`None`: never expires).
    pub fn refresh_ttl(mut self, ttl: Option<TimeDelta>) -> Self {
        self.0.refresh_ttl = ttl;
        self
    }
    /// Grace period for previous access tokens after a refresh.
    pub fn refresh_grace(mut self, grace: TimeDelta) -> Self {
        self.0.refresh_grace = grace;
        self
    }
    /// Whether to issue refresh tokens.
    pub fn issue_refresh_tokens(mut self, on: bool) -> Self {
        self.0.issue_refresh_tokens = on;
        self
    }
    /// Whether `state` is required.
    pub fn require_state(mut self, on: bool) -> Self {
        self.0.require_state = on;
        self
    }
    /// PKCE requirement.
    pub fn pkce(mut self, p: PkcePolicy) -> Self {
        self.0.pkce = p;
        self
    }
    /// Allow plain-http redirect URIs.
    pub fn allow_http_redirects(mut self, on: bool) -> Self {
        self.0.allow_http_redirects = on;
        self
    }
    /// Adds a known scope with its consent-page description.
    pub fn scope(mut self, name: &str, description: &str) -> Self {
        self.0.scopes.push(ScopeInfo::new(name, description));
        self
    }
    /// Scopes used when a request names none.
    pub fn default_scope(mut self, scope: Option<Scopes>) -> Self {
        self.0.default_scope = scope;
        self
    }
    /// The scope that releases balance claims.
    pub fn balance_scope(mut self, scope: &str) -> Self {
        self.0.balance_scope = scope.to_owned();
        self
    }
    /// Largest request body.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.0.max_body_bytes = n;
        self
    }
    /// Consent form lifetime.
    pub fn consent_ttl(mut self, ttl: TimeDelta) -> Self {
        self.0.consent_ttl = ttl;
        self
    }
    /// HMAC key for form tickets (share it across instances).
    pub fn form_key(mut self, key: [u8; 32]) -> Self {
        self.0.form_key = key;
        self
    }
    /// Shortest developer-chosen client secret.
    pub fn min_client_secret_len(mut self, n: usize) -> Self {
        self.0.min_client_secret_len = n;
        self
    }
    /// How long a client read from the store is kept (zero: not at all).
    pub fn client_cache_ttl(mut self, ttl: TimeDelta) -> Self {
        self.0.client_cache_ttl = ttl;
        self
    }
    /// The finished configuration.
    pub fn build(self) -> Config {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_name_that_is_no_scope_token_makes_nothing_known() {
        let config = Config::builder("https://id.example")
            .scope("profile", "Your profile")
            .scope("read write", "Two words")
            .scope("", "Nothing")
            .scope("say\"hi\"", "A quote")
            .build();
        let known = config.known_scopes();
        assert_eq!(known.as_str(), "profile");
        assert!(!known.contains("read") && !known.contains("write"));
    }
}
