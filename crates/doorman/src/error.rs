//! Protocol errors (RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3.1; RFC 7009) and
//! the error a store or host callback reports.

use std::borrow::Cow;
use std::fmt;

/// An OAuth 2.0 error code, as registered by RFC 6749, RFC 6750 and RFC 7009.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`: a parameter is missing, repeated, malformed or unsupported.
    InvalidRequest,
    /// `invalid_client`: client authentication failed.
    InvalidClient,
    /// `invalid_grant`: the code or refresh token is invalid, expired, revoked or bound elsewhere.
    InvalidGrant,
    /// `unauthorized_client`: the client may not use this grant type or response type.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `unsupported_response_type`.
    UnsupportedResponseType,
    /// `invalid_scope`: unknown, malformed or not allowed scope.
    InvalidScope,
    /// `access_denied`: the resource owner denied the request.
    AccessDenied,
    /// `unsupported_token_type` (RFC 7009 §2.2.1).
    UnsupportedTokenType,
    /// `invalid_token` (RFC 6750 §3.1): the bearer token is unknown, expired or revoked.
    InvalidToken,
    /// `insufficient_scope` (RFC 6750 §3.1).
    InsufficientScope,
    /// `invalid_redirect_uri` (RFC 7591 §3.2.2).
    InvalidRedirectUri,
    /// `invalid_client_metadata` (RFC 7591 §3.2.2).
    InvalidClientMetadata,
    /// `server_error`: an internal failure; never carries details.
    ServerError,
    /// `temporarily_unavailable`.
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status this code answers with at a direct (non-redirect) endpoint.
    pub const fn status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::InvalidClient | Self::InvalidToken => S::UNAUTHORIZED,
            Self::InsufficientScope | Self::AccessDenied => S::FORBIDDEN,
            Self::ServerError => S::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => S::SERVICE_UNAVAILABLE,
            _ => S::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One protocol error: the RFC code, a human description, and the HTTP
/// status it answers with when it is not delivered by redirect.
///
/// Descriptions are written by doorman and never contain secrets, tokens
/// or storage internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    /// The RFC error code.
    pub code: ErrorCode,
    /// `error_description`: readable, free of secrets.
    pub description: Cow<'static, str>,
    /// The HTTP status for a direct answer (defaults to the code's status).
    pub status: http::StatusCode,
}

impl OAuthError {
    /// An error with the code's usual status.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            status: code.status(),
        }
    }

    /// Overrides the HTTP status.
    #[must_use]
    pub fn with_status(mut self, status: http::StatusCode) -> Self {
        self.status = status;
        self
    }

    /// `invalid_request` with a description.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_grant` with a description.
    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    /// `invalid_client` with a description.
    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    /// `invalid_scope` with a description.
    pub fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, description)
    }

    /// The generic `server_error`: it says nothing about the cause.
    pub fn server_error() -> Self {
        Self::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
    }

    /// `invalid_request` answered with 413 for a body over the limit.
    pub fn body_too_large(limit: usize) -> Self {
        Self::invalid_request(format!("request body exceeds {limit} bytes"))
            .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
    }
}

impl From<StoreError> for OAuthError {
    fn from(_: StoreError) -> Self {
        // The cause is deliberately dropped: a store failure must not leak
        // internals to the client. Hosts log it where it happens.
        Self::server_error()
    }
}

/// A failure of a store or of a host callback (sessions, claims, balance).
///
/// Its text is for the host's logs; to a client it is always a bare
/// `server_error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was violated (for example a client id that exists).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The backend failed (connection, I/O, corrupt row, ...).
    #[error("backend failure: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps any backend error.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(e))
    }

    /// A backend failure described by a message.
    pub fn message(msg: impl Into<String>) -> Self {
        Self::Backend(msg.into().into())
    }
}
