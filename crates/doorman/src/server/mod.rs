//! The authorization server: every endpoint as `http::Request<Bytes>` in,
//! `http::Response<Bytes>` out, with typed functions underneath.

mod authorize;
mod client_auth;
mod client_cache;
mod registration;
mod resource;
mod routes;
mod ticket;
mod token;
mod token_admin;

pub use authorize::{AuthorizeOutcome, AuthorizeRequest};
pub use registration::{ClientRegistration, RegisteredClient, SecretChoice};
pub use resource::{BearerError, ValidatedToken};
pub use routes::{Endpoint, METADATA_PATH, metadata_path, route_path};

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{OAuthError, StoreError};
use crate::host::{Balances, Claims, DefaultPages, Pages, Sessions};
use crate::model::{Client, Consent, Purged, UserId};
use crate::store::Store;
use crate::wire::{Rfc6749, WireProfile};

/// An OAuth 2.0 authorization server over a store and the host's users.
///
/// Cheap to clone (one `Arc`); share one value across the application.
#[derive(Clone)]
pub struct AuthorizationServer {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Arc<dyn Store>,
    sessions: Arc<dyn Sessions>,
    claims: Option<Arc<dyn Claims>>,
    balances: Option<Arc<dyn Balances>>,
    pages: Arc<dyn Pages>,
    clock: Arc<dyn Clock>,
    profile: Arc<dyn WireProfile>,
    metadata: Bytes,
    clients: client_cache::ClientCache,
}

impl std::fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Assembles an [`AuthorizationServer`].
#[must_use]
pub struct ServerBuilder {
    config: Config,
    store: Arc<dyn Store>,
    sessions: Arc<dyn Sessions>,
    claims: Option<Arc<dyn Claims>>,
    balances: Option<Arc<dyn Balances>>,
    pages: Arc<dyn Pages>,
    clock: Arc<dyn Clock>,
    profile: Arc<dyn WireProfile>,
}

impl ServerBuilder {
    /// The host's user profiles, for userinfo.
    pub fn claims(mut self, claims: Arc<dyn Claims>) -> Self {
        self.claims = Some(claims);
        self
    }
    /// The host's balances, for userinfo and top-up.
    pub fn balances(mut self, balances: Arc<dyn Balances>) -> Self {
        self.balances = Some(balances);
        self
    }
    /// The host's consent and error pages.
    pub fn pages(mut self, pages: Arc<dyn Pages>) -> Self {
        self.pages = pages;
        self
    }
    /// The clock (tests inject a [`ManualClock`](crate::ManualClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// The wire profile (default [`Rfc6749`]).
    pub fn profile(mut self, profile: Arc<dyn WireProfile>) -> Self {
        self.profile = profile;
        self
    }
    /// The server.
    pub fn build(self) -> AuthorizationServer {
        let metadata = token_admin::metadata_document(&self.config);
        let clients = client_cache::ClientCache::new(self.config.client_cache_ttl);
        AuthorizationServer {
            inner: Arc::new(Inner {
                clients,
                config: self.config,
                store: self.store,
                sessions: self.sessions,
                claims: self.claims,
                balances: self.balances,
                pages: self.pages,
                clock: self.clock,
                profile: self.profile,
                metadata,
            }),
        }
    }
}

/// One app a user has authorized, for the host's account page.
#[derive(Debug, Clone)]
pub struct AuthorizedApp {
    /// The client.
    pub client: Client,
    /// What the user approved, and when.
    pub consent: Consent,
}

impl AuthorizationServer {
    /// Starts a server over `store`, asking `sessions` who is logged in.
    pub fn builder(
        config: Config,
        store: Arc<dyn Store>,
        sessions: Arc<dyn Sessions>,
    ) -> ServerBuilder {
        ServerBuilder {
            config,
            store,
            sessions,
            claims: None,
            balances: None,
            pages: Arc::new(DefaultPages),
            clock: Arc::new(SystemClock),
            profile: Arc::new(Rfc6749),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The wire profile.
    pub fn profile(&self) -> &dyn WireProfile {
        &*self.inner.profile
    }

    /// The 413 answer for a body over [`Config::max_body_bytes`], for
    /// adapters that stop reading a body early.
    pub fn body_too_large(&self) -> Response<Bytes> {
        self.profile().error_response(
            &OAuthError::body_too_large(self.config().max_body_bytes),
            false,
        )
    }

    /// The RFC 8414 metadata document (`GET /.well-known/oauth-authorization-server`).
    pub fn metadata(&self) -> Response<Bytes> {
        let mut res = Response::new(self.inner.metadata.clone());
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        res
    }

    /// The registered client with this id, through the client cache
    /// ([`Config::client_cache_ttl`]).
    pub async fn client(&self, client_id: &str) -> Result<Option<Arc<Client>>, StoreError> {
        self.client_at(client_id, self.inner.clock.now()).await
    }

    /// [`AuthorizationServer::client`] with the clock already read: a
    /// request that has `now` in hand spares itself a second read.
    pub(crate) async fn client_at(
        &self,
        client_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Arc<Client>>, StoreError> {
        if let Some(c) = self.inner.clients.get(client_id, now) {
            return Ok(Some(c));
        }
        let generation = self.inner.clients.generation();
        let Some(client) = self.inner.store.client(client_id).await? else {
            return Ok(None);
        };
        let client = Arc::new(client);
        self.inner.clients.put(client.clone(), now, generation);
        Ok(Some(client))
    }

    /// Replaces a registered client (a reset secret, new redirect URIs, …);
    /// this server sees the change at once, other instances within
    /// [`Config::client_cache_ttl`]. `Ok(false)` if the client is unknown.
    pub async fn update_client(&self, client: &Client) -> Result<bool, StoreError> {
        self.inner.clients.forget(&client.client_id);
        let updated = self.inner.store.update_client(client).await;
        // Again: a read that began before the first forget may have cached
        // the old record during the write.
        self.inner.clients.forget(&client.client_id);
        updated
    }

    /// Deletes a client with everything issued to it (see
    /// [`ClientStore::delete_client`](crate::ClientStore::delete_client));
    /// `Ok(false)` if unknown.
    pub async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        self.inner.clients.forget(client_id);
        let deleted = self.inner.store.delete_client(client_id).await;
        self.inner.clients.forget(client_id);
        deleted
    }

    /// Deletes expired codes, tokens and empty grants; call it periodically.
    pub async fn purge_expired(&self) -> Result<Purged, StoreError> {
        self.inner.store.purge_expired(self.inner.clock.now()).await
    }

    /// The apps `user` has authorized, for the host's account page.
    pub async fn authorized_apps(&self, user: &UserId) -> Result<Vec<AuthorizedApp>, StoreError> {
        let consents = self.inner.store.list_consents(user).await?;
        let mut out = Vec::with_capacity(consents.len());
        for consent in consents {
            if let Some(client) = self.client(&consent.client_id).await? {
                out.push(AuthorizedApp {
                    client: Client::clone(&client),
                    consent,
                });
            }
        }
        Ok(out)
    }

    /// The user takes an app's access away: its consent and every grant
    /// and token of the user to that app. Answers whether anything existed.
    pub async fn revoke_app(&self, user: &UserId, client_id: &str) -> Result<bool, StoreError> {
        self.inner.store.revoke_consent(user, client_id).await
    }

    /// A token for a host form (e.g. the account page's revoke button)
    /// bound to `user` and `purpose`, valid for [`Config::consent_ttl`].
    pub fn form_token(&self, user: &UserId, purpose: &str) -> String {
        ticket::issue(
            &self.inner.config.form_key,
            self.inner.clock.now(),
            &[user.as_str(), purpose],
        )
    }

    /// Checks a [`AuthorizationServer::form_token`].
    pub fn verify_form_token(&self, token: &str, user: &UserId, purpose: &str) -> bool {
        ticket::verify(
            &self.inner.config.form_key,
            token,
            self.inner.clock.now(),
            self.inner.config.consent_ttl,
            &[user.as_str(), purpose],
        )
    }

    fn too_large<T>(&self, request: &Request<T>, len: usize) -> Option<Response<Bytes>> {
        let _ = request;
        (len > self.inner.config.max_body_bytes).then(|| self.body_too_large())
    }
}
