//! The host's own login, logout, home and top-up pages.

use bytes::Bytes;
use doorman::pages::escape_html;
use doorman::redirect::form_encode;
use doorman::wire::Params;
use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::host::{Demo, server_error_page};
use crate::pages::{Lang, page};

/// Where to go after logging in: `raw` if it is a path on this server,
/// otherwise `/`.
///
/// A local path starts with a single `/`. `//host` and `/\host` are read
/// by browsers as another host, and browsers drop tabs and newlines
/// before parsing (`/\t/host` is `//host`), so any control character
/// disqualifies it too.
pub fn safe_return_to(raw: Option<&str>) -> &str {
    match raw {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && p.len() <= 8192
                && !p.chars().any(char::is_control) =>
        {
            p
        }
        _ => "/",
    }
}

/// A `303 See Other` to `location` (which must be a header-safe URL).
pub(crate) fn see_other(location: &str) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    *res.status_mut() = StatusCode::SEE_OTHER;
    let location = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    res.headers_mut().insert(header::LOCATION, location);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn login_form(
    lang: Lang,
    status: StatusCode,
    return_to: &str,
    username: &str,
    failed: bool,
) -> Response<Bytes> {
    let error = if failed {
        format!(
            "<p class=\"error\">{}</p>",
            lang.pick("Wrong username or password.", "用户名或密码错误。")
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>{title}</h1>{error}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"return_to\" value=\"{return_to}\">\
         <label for=\"username\">{user_label}</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">{pw_label}</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <div class=\"actions\"><button class=\"primary\" type=\"submit\">{submit}</button></div></form>\
         <p class=\"muted\">{hint}</p>",
        title = lang.pick("Sign in to doorman demo", "登录 doorman 演示站"),
        return_to = escape_html(return_to),
        username = escape_html(username),
        user_label = lang.pick("Username", "用户名"),
        pw_label = lang.pick("Password", "密码"),
        submit = lang.pick("Sign in", "登录"),
        hint = lang.pick(
            "Demo accounts: alice / alice-password, bob / bob-password.",
            "演示账户：alice / alice-password，bob / bob-password。"
        ),
    );
    page(lang, status, lang.pick("Sign in", "登录"), &body)
}

/// `GET /login`: the form, remembering a safe `return_to`.
pub async fn login_page(_demo: &Demo, request: Request<Bytes>) -> Response<Bytes> {
    let lang = Lang::of(request.headers());
    let params = Params::from_query(request.uri().query())
        .unwrap_or_else(|_| Params::from_pairs(Vec::new()));
    login_form(
        lang,
        StatusCode::OK,
        safe_return_to(params.get("return_to")),
        "",
        false,
    )
}

/// `POST /login`: checks the password; on success a new session cookie
/// and 303 to `return_to`, otherwise the form again with 401.
pub async fn login(demo: &Demo, request: Request<Bytes>) -> Response<Bytes> {
    let lang = Lang::of(request.headers());
    let params =
        Params::from_form(request.body()).unwrap_or_else(|_| Params::from_pairs(Vec::new()));
    let return_to = safe_return_to(params.get("return_to"));
    let username = params.get("username").unwrap_or("");
    let password = params.get("password").unwrap_or("");
    let host = demo.host();
    match host.login(username, password).await {
        Ok(Some(cookie)) => {
            // The previous session, if any, ends: one browser, one session.
            if let Err(e) = host.logout(request.headers()).await {
                tracing::warn!(error = %e, "could not delete the previous session");
            }
            let mut res = see_other(return_to);
            match host.session_cookie_header(&cookie) {
                Some(v) => {
                    res.headers_mut().insert(header::SET_COOKIE, v);
                }
                None => return server_error_page(lang),
            }
            tracing::info!(username, "login");
            res
        }
        Ok(None) => {
            tracing::info!("login failed");
            login_form(lang, StatusCode::UNAUTHORIZED, return_to, username, true)
        }
        Err(e) => {
            tracing::error!(error = %e, "login: database failure");
            server_error_page(lang)
        }
    }
}

/// `POST /logout`: deletes the session on the server, clears the cookie, 303 to `/`.
pub async fn logout(demo: &Demo, request: Request<Bytes>) -> Response<Bytes> {
    if let Err(e) = demo.host().logout(request.headers()).await {
        tracing::error!(error = %e, "logout: database failure");
        return server_error_page(Lang::of(request.headers()));
    }
    let mut res = see_other("/");
    res.headers_mut()
        .insert(header::SET_COOKIE, demo.host().clear_cookie_header());
    res
}

/// `GET /`: who is logged in, and links.
pub async fn home(demo: &Demo, request: Request<Bytes>) -> Response<Bytes> {
    let lang = Lang::of(request.headers());
    let user = match demo.host().current(request.headers()).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "home: database failure");
            return server_error_page(lang);
        }
    };
    let mut body = format!(
        "<h1>doorman demo</h1><p>{}</p>",
        lang.pick(
            "An OAuth 2.0 provider built with doorman. Apps register through the developer API and \
             ask you for access; you decide what they may see.",
            "这是一个用 doorman 构建的 OAuth 2.0 授权服务。应用通过开发者 API 注册，并向你请求访问权限；由你决定它们能看到什么。"
        )
    );
    match user {
        Some((_, name)) => body.push_str(&format!(
            "<p>{} <strong>{}</strong></p><p><a href=\"/account/authorizations\">{}</a></p>\
             <form method=\"post\" action=\"/logout\"><button type=\"submit\">{}</button></form>",
            lang.pick("Signed in as", "当前登录账户："),
            escape_html(&name),
            lang.pick("Authorized apps", "已授权的应用"),
            lang.pick("Sign out", "退出登录"),
        )),
        None => body.push_str(&format!(
            "<p><a href=\"/login\">{}</a></p>",
            lang.pick("Sign in", "登录")
        )),
    }
    body.push_str(&format!(
        "<p class=\"muted\"><a href=\"/.well-known/oauth-authorization-server\">{}</a></p>",
        lang.pick("Server metadata (RFC 8414)", "服务元数据（RFC 8414）")
    ));
    page(lang, StatusCode::OK, "doorman demo", &body)
}

/// `GET /topup`: where `topup_url` points. The demo sells nothing.
pub async fn topup_page(demo: &Demo, request: Request<Bytes>) -> Response<Bytes> {
    let lang = Lang::of(request.headers());
    let signed_in = matches!(demo.host().current(request.headers()).await, Ok(Some(_)));
    let mut body = format!(
        "<h1>{}</h1><p>{}</p>",
        lang.pick("Top up", "充值"),
        lang.pick(
            "This is where a real provider would sell credit. The demo keeps the seeded balances.",
            "真实的服务会在这里出售额度。演示站保持初始余额不变。"
        )
    );
    if !signed_in {
        body.push_str(&format!(
            "<p><a href=\"/login?return_to={}\">{}</a></p>",
            form_encode("/topup"),
            lang.pick("Sign in", "登录")
        ));
    }
    page(lang, StatusCode::OK, lang.pick("Top up", "充值"), &body)
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn return_to_must_be_a_local_path() {
        for ok in [
            "/",
            "/account/authorizations",
            "/api/oauth2/authorize?client_id=a&state=%2F%2Fx",
            "/a//b",
            "/a/\\b",
        ] {
            assert_eq!(safe_return_to(Some(ok)), ok);
        }
        for bad in [
            "",
            "//evil.example",
            "//evil.example/path",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\nSet-Cookie: x=1",
            "/\u{7f}",
            "/\u{85}x",
            "https://evil.example",
            "evil.example",
            "javascript:alert(1)",
            " /x",
            "\\\\evil.example",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_to(None), "/");
        assert_eq!(safe_return_to(Some(&format!("/{}", "a".repeat(9000)))), "/");
    }
}
