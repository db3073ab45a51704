//! The developer API: app registration in the provider's own format
//! (`POST /api/oauth_apps`) and RFC 7591 (`POST /api/oauth2/register`),
//! both behind the developer token.

use bytes::Bytes;
use doorman::secret::ct_eq_bytes;
use doorman::wire::json_response;
use doorman::{
    BearerError, ClientRegistration, ClientSecret, ErrorCode, GrantType, OAuthError, SecretChoice,
};
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::host::Demo;

/// How the request's developer token compares with the configured one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DevToken {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token that is not the developer token.
    Wrong,
    /// The developer token.
    Valid,
}

/// Checks `Authorization: Bearer <token>` against `expected`, in constant time.
pub(crate) fn check_dev_token(headers: &http::HeaderMap, expected: &str) -> DevToken {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return if headers.contains_key(header::AUTHORIZATION) {
            DevToken::Wrong
        } else {
            DevToken::Missing
        };
    };
    let Some((scheme, token)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return DevToken::Wrong;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return DevToken::Missing;
    }
    if !expected.is_empty() && ct_eq_bytes(token.trim().as_bytes(), expected.as_bytes()) {
        DevToken::Valid
    } else {
        DevToken::Wrong
    }
}

fn failure(status: StatusCode, message: &str) -> Response<Bytes> {
    let mut res = json_response(status, &json!({ "success": false, "message": message }));
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"doorman-demo developer API\""),
        );
    }
    res
}

/// What `POST /api/oauth_apps` asks for.
#[derive(Debug)]
pub(crate) struct AppRequest {
    pub name: String,
    pub description: String,
    pub redirect_uri: String,
    pub client_secret: Option<String>,
    pub auto_authorize: bool,
}

/// Reads the JSON body; the error is the message for a 400.
pub(crate) fn parse_app_request(body: &[u8]) -> Result<AppRequest, &'static str> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| "the body must be a JSON object")?;
    let Value::Object(obj) = value else {
        return Err("the body must be a JSON object");
    };
    fn string(
        obj: &Map<String, Value>,
        name: &str,
        err: &'static str,
    ) -> Result<Option<String>, &'static str> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err),
        }
    }
    let name = string(&obj, "name", "name must be a string")?.unwrap_or_default();
    if name.trim().is_empty() {
        return Err("name is required");
    }
    let redirect_uri =
        string(&obj, "redirect_uri", "redirect_uri must be a string")?.unwrap_or_default();
    if redirect_uri.trim().is_empty() {
        return Err("redirect_uri is required");
    }
    let description =
        string(&obj, "description", "description must be a string")?.unwrap_or_default();
    let client_secret = string(&obj, "client_secret", "client_secret must be a string")?;
    let auto_authorize = match obj.get("auto_authorize") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("auto_authorize must be true or false"),
    };
    Ok(AppRequest {
        name: name.trim().to_owned(),
        description,
        redirect_uri,
        client_secret,
        auto_authorize,
    })
}

/// `POST /api/oauth_apps`: registers an app for the holder of the
/// developer token and shows its secret once.
pub async fn create_app(demo: &Demo, request: Request<Bytes>) -> Response<Bytes> {
    if check_dev_token(request.headers(), demo.dev_token()) != DevToken::Valid {
        return failure(
            StatusCode::UNAUTHORIZED,
            "a valid developer token is required (Authorization: Bearer …)",
        );
    }
    let app = match parse_app_request(request.body()) {
        Ok(a) => a,
        Err(message) => return failure(StatusCode::BAD_REQUEST, message),
    };
    let mut reg = ClientRegistration::new(app.name, vec![app.redirect_uri]);
    reg.description = app.description;
    reg.trusted = app.auto_authorize;
    reg.grant_types = Some(vec![
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ]);
    reg.secret = match app.client_secret {
        Some(s) => SecretChoice::Chosen(ClientSecret::new(s)),
        None => SecretChoice::Generate,
    };
    let registered = match demo.server().register_client(reg).await {
        Ok(r) => r,
        Err(e) if e.code == ErrorCode::ServerError => {
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the app could not be saved; try again",
            );
        }
        Err(e) => return failure(StatusCode::BAD_REQUEST, &e.description),
    };
    let client = &registered.client;
    let created_time = client.created_at.timestamp();
    let id = match demo
        .host()
        .db
        .insert_app(&client.client_id, created_time)
        .await
    {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "oauth_apps: could not store the app id");
            // Nothing half-written: the client goes too.
            if let Err(e) = demo.server().store().delete_client(&client.client_id).await {
                tracing::error!(error = %e, "oauth_apps: could not roll back the client");
            }
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the app could not be saved; try again",
            );
        }
    };
    tracing::info!(app_id = id, client_id = %client.client_id, trusted = client.trusted, "app registered");
    let secret = registered
        .client_secret
        .as_ref()
        .map(|s| s.secret().to_owned());
    json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "message": "application created",
            "data": {
                "id": id,
                "name": client.name,
                "client_id": client.client_id,
                "client_secret": secret,
                "redirect_uri": client.redirect_uris.first(),
                "created_time": created_time,
            }
        }),
    )
}

/// `POST /api/oauth2/register`: RFC 7591 for the holder of the developer
/// token (used as the initial access token, RFC 7591 §3); refusals are
/// RFC 6750 answers.
pub async fn register(demo: &Demo, request: Request<Bytes>) -> Response<Bytes> {
    let refused = match check_dev_token(request.headers(), demo.dev_token()) {
        DevToken::Valid => return demo.server().register(request).await,
        DevToken::Missing => BearerError {
            error: OAuthError::new(ErrorCode::InvalidToken, "the developer token is required"),
            scope: None,
            missing: true,
        },
        DevToken::Wrong => BearerError {
            error: OAuthError::new(ErrorCode::InvalidToken, "the developer token is not valid"),
            scope: None,
            missing: false,
        },
    };
    demo.server().bearer_error_response(&refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for a in auth {
            h.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(a).expect("header"),
            );
        }
        h
    }

    #[test]
    fn developer_token_check() {
        assert_eq!(check_dev_token(&headers(&[]), "tok"), DevToken::Missing);
        assert_eq!(
            check_dev_token(&headers(&["Bearer tok"]), "tok"),
            DevToken::Valid
        );
        assert_eq!(
            check_dev_token(&headers(&["bearer tok"]), "tok"),
            DevToken::Valid
        );
        assert_eq!(
            check_dev_token(&headers(&["Bearer tok2"]), "tok"),
            DevToken::Wrong
        );
        assert_eq!(
            check_dev_token(&headers(&["Bearer "]), "tok"),
            DevToken::Wrong
        );
        assert_eq!(
            check_dev_token(&headers(&["Bearer tok", "Bearer tok"]), "tok"),
            DevToken::Wrong
        );
        assert_eq!(
            check_dev_token(&headers(&["Basic dG9rOg=="]), "tok"),
            DevToken::Missing
        );
        assert_eq!(check_dev_token(&headers(&["Bearer "]), ""), DevToken::Wrong);
    }

    #[test]
    fn app_requests() {
        let ok = parse_app_request(
            br#"{"name":" App ","description":"d","redirect_uri":"https://a.example/cb"}"#,
        )
        .expect("valid");
        assert_eq!(
            (
                ok.name.as_str(),
                ok.auto_authorize,
                ok.client_secret.is_none()
            ),
            ("App", false, true)
        );
        let ok = parse_app_request(
            br#"{"name":"App","redirect_uri":"https://a.example/cb","auto_authorize":true,"client_secret":"s"}"#,
        )
        .expect("valid");
        assert!(ok.auto_authorize && ok.client_secret.as_deref() == Some("s"));
        for bad in [
            &b"not json"[..],
            br#"[]"#,
            br#"{"redirect_uri":"https://a.example/cb"}"#,
            br#"{"name":"","redirect_uri":"https://a.example/cb"}"#,
            br#"{"name":"App"}"#,
            br#"{"name":"App","redirect_uri":"  "}"#,
            br#"{"name":5,"redirect_uri":"https://a.example/cb"}"#,
            br#"{"name":"App","redirect_uri":["https://a.example/cb"]}"#,
            br#"{"name":"App","redirect_uri":"https://a.example/cb","auto_authorize":"yes"}"#,
            br#"{"name":"App","redirect_uri":"https://a.example/cb","description":1}"#,
            br#"{"name":"App","redirect_uri":"https://a.example/cb","client_secret":12}"#,
        ] {
            assert!(
                parse_app_request(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
