//! The authorization endpoint (RFC 6749 §4.1.1, §3.1.2, §3.3; RFC 7636;
//! RFC 9207; RFC 9700 §2.1, §4.1) and the consent form's submission.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, LOCATION, REFERRER_POLICY};
use http::{HeaderValue, Method, Request, Response, StatusCode};

use super::{AuthorizationServer, ticket};
use crate::error::{ErrorCode, OAuthError};
use crate::host::ConsentPrompt;
use crate::model::{Client, CodeRecord, GrantId, GrantType, UserId};
use crate::redirect::{append_query, find_match};
use crate::scope::{ScopeInfo, Scopes};
use crate::secret::AuthorizationCode;
use crate::wire::{Params, method_not_allowed};

/// A validated authorization request: the client and redirect URI are
/// trusted, so any later error may be redirected.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// The client, as registered (shared with the client cache).
    pub client: Arc<Client>,
    /// Where the answer goes.
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri` (the token request must then repeat it).
    pub redirect_uri_explicit: bool,
    /// The scopes requested (or the configured default).
    pub scope: Scopes,
    /// The client's `state`, echoed back.
    pub state: Option<String>,
    /// PKCE `S256` challenge.
    pub code_challenge: Option<String>,
    /// One-click login asked for (`auto_authorize=true`).
    pub auto_authorize: bool,
}

/// How an authorization request ends. Exactly one of these; the host (or
/// [`AuthorizationServer::render_authorize`]) turns it into a response.
#[derive(Debug, Clone)]
pub enum AuthorizeOutcome {
    /// Nobody is logged in: send the browser to `login_url`, which returns
    /// it to this request afterwards.
    NeedsLogin {
        /// The host's login URL with the return path.
        login_url: String,
    },
    /// Ask the user.
    NeedsConsent(Box<ConsentPrompt>),
    /// Approved: redirect to `location` (the client's URI with `code`, `state`, `iss`).
    Approved {
        /// The full redirect target.
        location: String,
    },
    /// An error reported to the client by redirect (with `error`, `state`, `iss`).
    ErrorRedirect {
        /// The full redirect target.
        location: String,
        /// The error it carries.
        error: OAuthError,
    },
    /// An error shown to the user; never a redirect (unknown client or
    /// unregistered redirect URI, forged consent form, …).
    ErrorPage(OAuthError),
}

/// The parameters the consent ticket binds, in order.
fn ticket_fields<'a>(user: &'a UserId, r: &'a AuthorizeRequest, scope: &'a str) -> [&'a str; 7] {
    [
        user.as_str(),
        &r.client.client_id,
        &r.redirect_uri,
        if r.redirect_uri_explicit { "1" } else { "0" },
        scope,
        r.state.as_deref().unwrap_or(""),
        r.code_challenge.as_deref().unwrap_or(""),
    ]
}

impl AuthorizationServer {
    /// The authorization endpoint over HTTP: `GET` is the authorization
    /// request, `POST` the consent form. Asks the host's [`Sessions`](crate::Sessions)
    /// who is logged in.
    pub async fn authorize(&self, request: Request<Bytes>) -> Response<Bytes> {
        let (parts, body) = request.into_parts();
        if body.len() > self.config().max_body_bytes {
            return self.body_too_large();
        }
        let user = match self.inner.sessions.current_user(&parts).await {
            Ok(u) => u,
            Err(_) => {
                return self
                    .inner
                    .pages
                    .error_page(&OAuthError::server_error(), &parts);
            }
        };
        let outcome = if parts.method == Method::GET {
            self.authorize_request(&parts, user.as_ref()).await
        } else if parts.method == Method::POST {
            match Params::from_form(&body) {
                Ok(params) => self.consent_decision(&params, user.as_ref()).await,
                Err(e) => AuthorizeOutcome::ErrorPage(e),
            }
        } else {
            return method_not_allowed(self.profile(), "GET, POST");
        };
        self.render_authorize(outcome, &parts)
    }

    /// The authorization request (GET) as a typed decision, given the
    /// logged-in user.
    pub async fn authorize_request(
        &self,
        parts: &http::request::Parts,
        user: Option<&UserId>,
    ) -> AuthorizeOutcome {
        let params = match Params::from_query(parts.uri.query()) {
            Ok(p) => p,
            Err(e) => return AuthorizeOutcome::ErrorPage(e),
        };
        let request = match self.validate_authorize(&params).await {
            Ok(r) => r,
            Err(outcome) => return *outcome,
        };
        let Some(user) = user else {
            let return_to = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            return AuthorizeOutcome::NeedsLogin {
                login_url: self.inner.sessions.login_url(return_to),
            };
        };
        let consent = match self
            .inner
            .store
            .consent(user, &request.client.client_id)
            .await
        {
            Ok(c) => c,
            Err(_) => return self.error_redirect(&request, OAuthError::server_error()),
        };
        let covered = consent
            .as_ref()
            .is_some_and(|c| request.scope.is_subset_of(&c.scope));
        if request.auto_authorize && (request.client.trusted || covered) {
            return self.approve(&request, user, !covered).await;
        }
        AuthorizeOutcome::NeedsConsent(Box::new(self.consent_prompt(&request, user)))
    }

    /// The consent form's submission (POST) as a typed decision.
    pub async fn consent_decision(
        &self,
        params: &Params,
        user: Option<&UserId>,
    ) -> AuthorizeOutcome {
        let request = match self.validate_authorize(params).await {
            Ok(r) => r,
            Err(outcome) => return *outcome,
        };
        let Some(user) = user else {
            // The session ended while the form was open: start the request again after login.
            let replay: Vec<(&str, &str)> = params
                .pairs()
                .filter(|(k, _)| *k != "ticket" && *k != "decision")
                .collect();
            let return_to = append_query(&self.config().endpoints.authorization, &replay);
            return AuthorizeOutcome::NeedsLogin {
                login_url: self.inner.sessions.login_url(&return_to),
            };
        };
        let scope = request.scope.to_string();
        let ticket_ok = params.get("ticket").is_some_and(|t| {
            ticket::verify(
                &self.config().form_key,
                t,
                self.inner.clock.now(),
                self.config().consent_ttl,
                &ticket_fields(user, &request, &scope),
            )
        });
        if !ticket_ok {
            return AuthorizeOutcome::ErrorPage(OAuthError::invalid_request(
                "this consent form has expired or was not issued to you; please start again",
            ));
        }
        match params.get("decision") {
            Some("approve") => self.approve(&request, user, true).await,
            Some("deny") => self.error_redirect(
                &request,
                OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
            ),
            _ => self.error_redirect(
                &request,
                OAuthError::invalid_request("decision must be approve or deny"),
            ),
        }
    }

    /// Turns an outcome into the HTTP answer: redirects (302, `no-store`),
    /// the host's consent page, or its error page.
    pub fn render_authorize(
        &self,
        outcome: AuthorizeOutcome,
        parts: &http::request::Parts,
    ) -> Response<Bytes> {
        match outcome {
            AuthorizeOutcome::NeedsLogin { login_url } => redirect(&login_url),
            AuthorizeOutcome::NeedsConsent(prompt) => self.inner.pages.consent_page(&prompt, parts),
            AuthorizeOutcome::Approved { location }
            | AuthorizeOutcome::ErrorRedirect { location, .. } => redirect(&location),
            AuthorizeOutcome::ErrorPage(e) => self.inner.pages.error_page(&e, parts),
        }
    }

    /// Validates everything but the user. Until the client and redirect URI
    /// are known good, errors go to a page; after that, by redirect.
    async fn validate_authorize(
        &self,
        params: &Params,
    ) -> Result<AuthorizeRequest, Box<AuthorizeOutcome>> {
        let page = |e: OAuthError| Box::new(AuthorizeOutcome::ErrorPage(e));
        for name in ["client_id", "redirect_uri"] {
            if params.is_repeated(name) {
                return Err(page(OAuthError::invalid_request(format!(
                    "parameter `{name}` is repeated"
                ))));
            }
        }
        let client_id = params
            .get("client_id")
            .ok_or_else(|| page(OAuthError::invalid_request("missing client_id")))?;
        let client = match self.client(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(page(OAuthError::invalid_request("unknown client_id"))),
            Err(_) => return Err(page(OAuthError::server_error())),
        };
        let (redirect_uri, explicit) = match params.get("redirect_uri") {
            Some(r) => match find_match(&client.redirect_uris, r) {
                Some(_) => (r.to_owned(), true),
                None => {
                    return Err(page(OAuthError::invalid_request(
                        "redirect_uri is not registered for this client",
                    )));
                }
            },
            None => match client.redirect_uris.as_slice() {
                [only] => (only.clone(), false),
                _ => return Err(page(OAuthError::invalid_request("missing redirect_uri"))),
            },
        };
        let state = if params.is_repeated("state") {
            None
        } else {
            params.get("state").map(str::to_owned)
        };
        let mut request = AuthorizeRequest {
            client,
            redirect_uri,
            redirect_uri_explicit: explicit,
            scope: Scopes::empty(),
            state,
            code_challenge: None,
            auto_authorize: params.get("auto_authorize") == Some("true"),
        };
        let fail = |r: &AuthorizeRequest, e: OAuthError| Box::new(self.error_redirect(r, e));
        if let Err(e) = params.reject_repeats() {
            return Err(fail(&request, e));
        }
        match params.get("response_type") {
            None => {
                return Err(fail(
                    &request,
                    OAuthError::invalid_request("missing response_type"),
                ));
            }
            Some("code") => {}
            Some(_) => {
                return Err(fail(
                    &request,
                    OAuthError::new(
                        ErrorCode::UnsupportedResponseType,
                        "only response_type=code is supported",
                    ),
                ));
            }
        }
        if self.config().require_state && request.state.is_none() {
            return Err(fail(&request, OAuthError::invalid_request("missing state")));
        }
        if !request.client.allows_grant(GrantType::AuthorizationCode) {
            return Err(fail(
                &request,
                OAuthError::new(
                    ErrorCode::UnauthorizedClient,
                    "this client may not use the authorization code grant",
                ),
            ));
        }
        request.scope = match self.requested_scope(params.get("scope"), &request.client) {
            Ok(s) => s,
            Err(e) => return Err(fail(&request, e)),
        };
        request.code_challenge = match self.pkce_challenge(params, &request.client) {
            Ok(c) => c,
            Err(e) => return Err(fail(&request, e)),
        };
        Ok(request)
    }

    fn requested_scope(&self, raw: Option<&str>, client: &Client) -> Result<Scopes, OAuthError> {
        let scope = match raw {
            Some(s) => Scopes::parse(s).map_err(|e| OAuthError::invalid_scope(e.to_string()))?,
            None => Scopes::empty(),
        };
        let scope = if scope.is_empty() {
            self.config()
                .default_scope
                .clone()
                .ok_or_else(|| OAuthError::invalid_scope("missing scope"))?
        } else {
            scope
        };
        if let Some(bad) = scope.iter().find(|s| !client.scope.contains(s)) {
            let shown: String = bad.chars().take(64).collect();
            return Err(OAuthError::invalid_scope(format!(
                "scope `{shown}` is not allowed for this client"
            )));
        }
        Ok(scope)
    }

    fn pkce_challenge(
        &self,
        params: &Params,
        client: &Client,
    ) -> Result<Option<String>, OAuthError> {
        let challenge = params.get("code_challenge");
        let method = params.get("code_challenge_method");
        match (challenge, method) {
            (None, Some(_)) => Err(OAuthError::invalid_request(
                "code_challenge_method without code_challenge",
            )),
            (Some(_), None) | (Some(_), Some("plain")) => Err(OAuthError::invalid_request(
                "code_challenge_method must be S256; plain is not accepted",
            )),
            (Some(_), Some(m)) if m != "S256" => Err(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            )),
            (Some(c), Some(_)) => {
                if c.len() == 43
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    Ok(Some(c.to_owned()))
                } else {
                    Err(OAuthError::invalid_request(
                        "code_challenge must be a base64url SHA-256 (43 characters)",
                    ))
                }
            }
            (None, None) => {
                let required = !client.is_confidential()
                    || self.config().pkce == crate::config::PkcePolicy::AllClients;
                if required {
                    Err(OAuthError::invalid_request(
                        "PKCE is required: send code_challenge with S256",
                    ))
                } else {
                    Ok(None)
                }
            }
        }
    }

    fn consent_prompt(&self, request: &AuthorizeRequest, user: &UserId) -> ConsentPrompt {
        let scope = request.scope.to_string();
        let ticket = ticket::issue(
            &self.config().form_key,
            self.inner.clock.now(),
            &ticket_fields(user, request, &scope),
        );
        let mut hidden = vec![
            ("response_type".to_owned(), "code".to_owned()),
            ("client_id".to_owned(), request.client.client_id.clone()),
        ];
        if request.redirect_uri_explicit {
            hidden.push(("redirect_uri".to_owned(), request.redirect_uri.clone()));
        }
        hidden.push(("scope".to_owned(), scope));
        if let Some(s) = &request.state {
            hidden.push(("state".to_owned(), s.clone()));
        }
        if let Some(c) = &request.code_challenge {
            hidden.push(("code_challenge".to_owned(), c.clone()));
            hidden.push(("code_challenge_method".to_owned(), "S256".to_owned()));
        }
        hidden.push(("ticket".to_owned(), ticket));
        let known = &self.config().scopes;
        let scopes = request
            .scope
            .iter()
            .map(|s| {
                known
                    .iter()
                    .find(|k| k.name == s)
                    .cloned()
                    .unwrap_or_else(|| ScopeInfo::new(s, s))
            })
            .collect();
        ConsentPrompt {
            user_id: user.clone(),
            client_id: request.client.client_id.clone(),
            client_name: request.client.name.clone(),
            client_description: request.client.description.clone(),
            scopes,
            form_action: self.config().endpoints.authorization.clone(),
            hidden_fields: hidden,
        }
    }

    /// Issues the code (and remembers the consent) for an approved request.
    async fn approve(
        &self,
        request: &AuthorizeRequest,
        user: &UserId,
        record_consent: bool,
    ) -> AuthorizeOutcome {
        let now = self.inner.clock.now();
        if record_consent
            && self
                .inner
                .store
                .add_consent(user, &request.client.client_id, &request.scope, now)
                .await
                .is_err()
        {
            return self.error_redirect(request, OAuthError::server_error());
        }
        let code = AuthorizationCode::generate();
        let record = CodeRecord {
            hash: code.hash(),
            grant_id: GrantId::generate(),
            client_id: request.client.client_id.clone(),
            user_id: user.clone(),
            redirect_uri: request.redirect_uri.clone(),
            redirect_uri_explicit: request.redirect_uri_explicit,
            scope: request.scope.clone(),
            code_challenge: request.code_challenge.clone(),
            issued_at: now,
            expires_at: now + self.config().code_ttl,
        };
        if self.inner.store.put_code(&record).await.is_err() {
            return self.error_redirect(request, OAuthError::server_error());
        }
        let mut params = vec![("code", code.secret())];
        if let Some(s) = &request.state {
            params.push(("state", s));
        }
        params.push(("iss", &self.config().issuer));
        AuthorizeOutcome::Approved {
            location: append_query(&request.redirect_uri, &params),
        }
    }

    fn error_redirect(&self, request: &AuthorizeRequest, error: OAuthError) -> AuthorizeOutcome {
        let mut params = vec![
            ("error", error.code.as_str()),
            ("error_description", &*error.description),
        ];
        if let Some(s) = &request.state {
            params.push(("state", s));
        }
        params.push(("iss", &self.config().issuer));
        let location = append_query(&request.redirect_uri, &params);
        AuthorizeOutcome::ErrorRedirect { location, error }
    }
}

fn redirect(location: &str) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    match HeaderValue::from_str(location) {
        Ok(v) => {
            *res.status_mut() = StatusCode::FOUND;
            res.headers_mut().insert(LOCATION, v);
        }
        // Every location we build is form-encoded ASCII; a host login URL
        // that is not is a host bug, answered without echoing it.
        Err(_) => *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    let h = res.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}
