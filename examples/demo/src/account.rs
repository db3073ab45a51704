//! The user's authorized-apps page and its revoke buttons.

use bytes::Bytes;
use doorman::UserId;
use doorman::pages::escape_html;
use doorman::redirect::form_encode;
use doorman::wire::Params;
use http::{Request, Response, StatusCode};

use crate::host::{Demo, server_error_page};
use crate::login::see_other;
use crate::pages::{Lang, page, scope_words};

/// The account page's path.
pub const ACCOUNT_PATH: &str = "/account/authorizations";

/// The purpose a revoke form's anti-CSRF token is bound to.
fn revoke_purpose(client_id: &str) -> String {
    format!("revoke:{client_id}")
}

/// Decodes `%XX` escapes of a path segment; `None` if malformed or not UTF-8.
pub(crate) fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The client id in `/account/authorizations/{client_id}/revoke`.
pub(crate) fn revoke_target(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix(ACCOUNT_PATH)?
        .strip_prefix('/')?
        .strip_suffix("/revoke")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn date(ts: chrono::DateTime<chrono::Utc>) -> String {
    ts.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `GET /account/authorizations`: the apps the user has authorized, each
/// with a revoke form carrying an anti-CSRF token.
pub async fn authorizations_page(demo: &Demo, request: Request<Bytes>) -> Response<Bytes> {
    let lang = Lang::of(request.headers());
    let (id, name) = match demo.host().current(request.headers()).await {
        Ok(Some(u)) => u,
        Ok(None) => return see_other(&format!("/login?return_to={}", form_encode(ACCOUNT_PATH))),
        Err(e) => {
            tracing::error!(error = %e, "account page: database failure");
            return server_error_page(lang);
        }
    };
    let user = UserId::new(id.to_string());
    let apps = match demo.server().authorized_apps(&user).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "account page: store failure");
            return server_error_page(lang);
        }
    };
    let mut body = format!(
        "<nav><a href=\"/\">{}</a></nav><h1>{}</h1><p class=\"muted\">{} <strong>{}</strong></p>",
        lang.pick("Home", "首页"),
        lang.pick("Authorized apps", "已授权的应用"),
        lang.pick("Signed in as", "当前登录账户："),
        escape_html(&name),
    );
    if apps.is_empty() {
        body.push_str(&format!(
            "<p>{}</p>",
            lang.pick("You have not authorized any app.", "你还没有授权任何应用。")
        ));
    } else {
        body.push_str(&format!(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
            lang.pick("App", "应用"),
            lang.pick("May", "权限"),
            lang.pick("Since", "授权时间"),
        ));
        for app in &apps {
            let client_id = &app.client.client_id;
            let scopes: Vec<String> = app
                .consent
                .scope
                .iter()
                .map(|s| scope_words(lang, s).map_or_else(|| escape_html(s), str::to_owned))
                .collect();
            let token = demo.server().form_token(&user, &revoke_purpose(client_id));
            body.push_str(&format!(
                "<tr><td><strong>{name}</strong><br><code class=\"muted\">{id}</code></td><td>{scopes}</td>\
                 <td>{since}</td><td><form method=\"post\" action=\"{ACCOUNT_PATH}/{path_id}/revoke\">\
                 <input type=\"hidden\" name=\"csrf_token\" value=\"{token}\">\
                 <button type=\"submit\">{revoke}</button></form></td></tr>",
                name = escape_html(&app.client.name),
                id = escape_html(client_id),
                scopes = scopes.join("<br>"),
                since = date(app.consent.granted_at),
                path_id = escape_html(&form_encode(client_id)),
                token = escape_html(&token),
                revoke = lang.pick("Revoke", "撤销授权"),
            ));
        }
        body.push_str("</table>");
    }
    page(
        lang,
        StatusCode::OK,
        lang.pick("Authorized apps", "已授权的应用"),
        &body,
    )
}

/// `POST /account/authorizations/{client_id}/revoke`: checks the form's
/// anti-CSRF token, revokes the app's consent, grants and tokens, and
/// answers 303 back to the list.
pub async fn revoke(
    demo: &Demo,
    request: Request<Bytes>,
    encoded_client_id: &str,
) -> Response<Bytes> {
    let lang = Lang::of(request.headers());
    let (id, _) = match demo.host().current(request.headers()).await {
        Ok(Some(u)) => u,
        Ok(None) => return see_other(&format!("/login?return_to={}", form_encode(ACCOUNT_PATH))),
        Err(e) => {
            tracing::error!(error = %e, "revoke: database failure");
            return server_error_page(lang);
        }
    };
    let user = UserId::new(id.to_string());
    let client_id = percent_decode(encoded_client_id).unwrap_or_default();
    let params =
        Params::from_form(request.body()).unwrap_or_else(|_| Params::from_pairs(Vec::new()));
    let token_ok = params.get("csrf_token").is_some_and(|t| {
        demo.server()
            .verify_form_token(t, &user, &revoke_purpose(&client_id))
    });
    if client_id.is_empty() || !token_ok {
        let body = format!(
            "<h1>{}</h1><p>{}</p><p><a href=\"{ACCOUNT_PATH}\">{}</a></p>",
            lang.pick("This form has expired", "表单已失效"),
            lang.pick(
                "Nothing was changed. Open your authorized apps again and retry.",
                "未做任何更改。请重新打开已授权的应用页面再试。"
            ),
            lang.pick("Authorized apps", "已授权的应用"),
        );
        return page(
            lang,
            StatusCode::FORBIDDEN,
            lang.pick("Form expired", "表单已失效"),
            &body,
        );
    }
    match demo.server().revoke_app(&user, &client_id).await {
        Ok(_) => {
            tracing::info!(user = %user, client_id = %client_id, "app revoked by user");
            see_other(ACCOUNT_PATH)
        }
        Err(e) => {
            tracing::error!(error = %e, "revoke: store failure");
            server_error_page(lang)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_paths() {
        assert_eq!(
            revoke_target("/account/authorizations/client_ab/revoke"),
            Some("client_ab")
        );
        assert_eq!(revoke_target("/account/authorizations//revoke"), None);
        assert_eq!(revoke_target("/account/authorizations/a/b/revoke"), None);
        assert_eq!(revoke_target("/account/authorizations/a"), None);
        assert_eq!(
            percent_decode("client%5Fab%20"),
            Some("client_ab ".to_owned())
        );
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("bad%4"), None);
    }
}
