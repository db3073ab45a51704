//! What adapters mount: each endpoint's path and one dispatch function,
//! so that every adapter mounts the same routes the same way.

use bytes::Bytes;
use http::{Request, Response};

use super::AuthorizationServer;

/// The well-known prefix of the RFC 8414 metadata document.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// One endpoint of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Authorization endpoint and consent form ([`AuthorizationServer::authorize`]).
    Authorize,
    /// Token endpoint ([`AuthorizationServer::token`]).
    Token,
    /// UserInfo ([`AuthorizationServer::userinfo`]).
    Userinfo,
    /// Revocation ([`AuthorizationServer::revoke`]).
    Revoke,
    /// Introspection ([`AuthorizationServer::introspect`]).
    Introspect,
    /// Top-up link ([`AuthorizationServer::topup`]).
    Topup,
    /// RFC 8414 metadata ([`AuthorizationServer::metadata`]).
    Metadata,
}

/// The path of an endpoint given as a path or an absolute URL, without
/// query or fragment; `None` if it has no path.
///
/// ```
/// use doorman::server::route_path;
/// assert_eq!(route_path("/oauth2/token"), Some("/oauth2/token"));
/// assert_eq!(route_path("https://id.example/oauth2/token?x=1"), Some("/oauth2/token"));
/// assert_eq!(route_path("https://id.example"), None);
/// ```
pub fn route_path(endpoint: &str) -> Option<&str> {
    let path = match endpoint.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => endpoint,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.starts_with('/').then_some(path)
}

/// Where the metadata of `issuer` is published (RFC 8414 §3.1): the
/// well-known prefix, followed by the issuer's path if it has one.
///
/// ```
/// use doorman::server::metadata_path;
/// assert_eq!(metadata_path("https://id.example"), "/.well-known/oauth-authorization-server");
/// assert_eq!(metadata_path("https://id.example/t1"), "/.well-known/oauth-authorization-server/t1");
/// ```
pub fn metadata_path(issuer: &str) -> String {
    let path = route_path(issuer).unwrap_or("").trim_end_matches('/');
    format!("{METADATA_PATH}{path}")
}

impl AuthorizationServer {
    /// The paths to mount and the endpoint each serves: the configured
    /// endpoints (an absolute URL is mounted at its path) and the metadata
    /// document. Registration is not among them: who may register clients
    /// is the host's decision ([`AuthorizationServer::register`]).
    pub fn routes(&self) -> Vec<(String, Endpoint)> {
        let e = &self.config().endpoints;
        let mut out: Vec<(String, Endpoint)> = [
            (&e.authorization, Endpoint::Authorize),
            (&e.token, Endpoint::Token),
            (&e.userinfo, Endpoint::Userinfo),
            (&e.revocation, Endpoint::Revoke),
            (&e.introspection, Endpoint::Introspect),
            (&e.topup, Endpoint::Topup),
        ]
        .into_iter()
        .filter_map(|(p, ep)| route_path(p).map(|p| (p.to_owned(), ep)))
        .collect();
        out.push((metadata_path(&self.config().issuer), Endpoint::Metadata));
        out
    }

    /// Serves `request` at `endpoint`. Every endpoint checks its own
    /// method and answers 405 in the wire format.
    pub async fn handle(&self, endpoint: Endpoint, request: Request<Bytes>) -> Response<Bytes> {
        match endpoint {
            Endpoint::Authorize => self.authorize(request).await,
            Endpoint::Token => self.token(request).await,
            Endpoint::Userinfo => self.userinfo(request).await,
            Endpoint::Revoke => self.revoke(request).await,
            Endpoint::Introspect => self.introspect(request).await,
            Endpoint::Topup => self.topup(request).await,
            Endpoint::Metadata => {
                if request.method() == http::Method::GET || request.method() == http::Method::HEAD {
                    self.metadata()
                } else {
                    crate::wire::method_not_allowed(self.profile(), "GET")
                }
            }
        }
    }
}
