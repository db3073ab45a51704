//! The demo's HTML: the shared layout, the language choice, and the
//! consent and error pages the core asks for (as [`doorman::Pages`]).
//!
//! Every page is self-contained (inline style, no scripts, no external
//! assets) and goes out through [`doorman::pages::html_response`], which
//! adds CSP, `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`,
//! `nosniff` and `no-store`. Every piece of text that did not come from
//! this file is escaped.

use std::sync::Arc;

use bytes::Bytes;
use doorman::pages::{escape_html, html_response};
use doorman::{ConsentPrompt, OAuthError, Pages};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::users::HostData;

/// The languages the pages speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English (the default).
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// The best supported language for an `Accept-Language` header value
    /// (RFC 9110 §12.5.4): the highest `q` wins, the first listed on a
    /// tie; any `zh` tag picks Chinese, anything else (or nothing) English.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else {
            return Lang::En;
        };
        let mut best: Option<(u32, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .or_else(|| p.trim().strip_prefix("Q="))
                })
                .map_or(Some(1000), parse_q);
            let Some(q) = q else { continue };
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") || tag == "*" {
                Lang::En
            } else {
                continue;
            };
            if q > 0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// The language the request asks for.
    pub fn of(headers: &HeaderMap) -> Lang {
        Lang::from_accept_language(
            headers
                .get(http::header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        )
    }

    /// The `lang` attribute / `Content-Language` value.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// Picks the English or the Chinese text.
    pub fn pick(self, en: &'static str, zh: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }
}

/// A quality value (`0`, `0.5`, `1.000`) in thousandths; `None` if malformed.
fn parse_q(s: &str) -> Option<u32> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u32 = 0;
    for i in 0..3 {
        let d = frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
        thousandths = thousandths * 10 + d;
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI','PingFang SC','Microsoft YaHei',sans-serif;\
background:#f4f5f7;color:#1f2328;margin:0;padding:2rem 1rem}\
main{max-width:34rem;margin:0 auto;background:#fff;border:1px solid #d0d7de;border-radius:10px;padding:1.5rem 2rem}\
h1{font-size:1.35rem;margin-top:0}ul{padding-left:1.2rem}li{margin:.4rem 0}\
.muted{color:#57606a;font-size:.9rem}.about{background:#f6f8fa;border-left:3px solid #d0d7de;padding:.5rem .8rem;\
white-space:pre-wrap;word-break:break-word}.error{color:#cf222e}code{word-break:break-all}\
.actions{display:flex;gap:.8rem;margin-top:1.2rem}button{font-size:1rem;padding:.55rem 1.3rem;border-radius:6px;\
border:1px solid #d0d7de;background:#f6f8fa;cursor:pointer}button.primary{background:#1f883d;color:#fff;border-color:#1f883d}\
label{display:block;margin:.6rem 0 .2rem}input[type=text],input[type=password]{width:100%;box-sizing:border-box;\
padding:.45rem;font-size:1rem}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem;\
border-bottom:1px solid #eaeef2;vertical-align:top}nav{margin-bottom:1rem}nav a{margin-right:1rem}";

/// A complete page in the demo's layout. `title` is escaped here; `body`
/// is HTML the caller built (escaping what it inserted).
pub fn page(lang: Lang, status: StatusCode, title: &str, body: &str) -> http::Response<Bytes> {
    let html = format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        lang = lang.tag(),
        title = escape_html(title),
    );
    let mut res = html_response(status, html);
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.tag()),
    );
    h.insert(
        http::header::VARY,
        HeaderValue::from_static("Accept-Language, Cookie"),
    );
    res
}

/// What a scope lets an app do, in plain words; `None` for a scope this
/// page has no words for.
pub fn scope_words(lang: Lang, scope: &str) -> Option<&'static str> {
    Some(match scope {
        "profile" => lang.pick(
            "See your username and email address",
            "查看你的用户名和邮箱地址",
        ),
        "balance" => lang.pick(
            "See your quota, used quota and balance, and send you to the top-up page",
            "查看你的额度、已用额度和余额，并引导你前往充值页面",
        ),
        _ => return None,
    })
}

/// The consent page for `prompt`, with `username` the person being asked.
pub fn consent_page(
    lang: Lang,
    prompt: &ConsentPrompt,
    username: Option<&str>,
) -> http::Response<Bytes> {
    let app = escape_html(&prompt.client_name);
    let mut body = String::new();
    body.push_str(&format!(
        "<h1>{}</h1>",
        match lang {
            Lang::En => format!("<strong>{app}</strong> wants to access your account"),
            Lang::Zh => format!("<strong>{app}</strong> 请求访问你的账户"),
        }
    ));
    if let Some(name) = username {
        body.push_str(&format!(
            "<p class=\"muted\">{} <strong>{}</strong></p>",
            lang.pick("Signed in as", "当前登录账户："),
            escape_html(name)
        ));
    }
    if !prompt.client_description.trim().is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p><p class=\"about\">{}</p>",
            lang.pick(
                "About this app, in its developer's words:",
                "应用简介（由开发者提供）："
            ),
            escape_html(&prompt.client_description)
        ));
    }
    body.push_str(&format!(
        "<p>{}</p><ul>",
        lang.pick("If you approve, it will be able to:", "授权后，它将可以：")
    ));
    for s in &prompt.scopes {
        let words = match scope_words(lang, &s.name) {
            Some(w) => w.to_owned(),
            None => escape_html(&s.description),
        };
        body.push_str(&format!(
            "<li>{words} <span class=\"muted\">(<code>{}</code>)</span></li>",
            escape_html(&s.name)
        ));
    }
    body.push_str("</ul>");
    if let Some((_, uri)) = prompt
        .hidden_fields
        .iter()
        .find(|(k, _)| k == "redirect_uri")
    {
        body.push_str(&format!(
            "<p class=\"muted\">{} <code>{}</code></p>",
            lang.pick("Afterwards you will be sent to", "完成后你将被带到"),
            escape_html(uri)
        ));
    }
    body.push_str(&format!(
        "<p class=\"muted\">{} <a href=\"/account/authorizations\">{}</a>{}</p>",
        lang.pick(
            "Approve only if you trust this app. You can take its access away at any time on",
            "请仅在信任该应用时允许。你可以随时在"
        ),
        lang.pick("your authorized apps page", "已授权的应用"),
        lang.pick(".", "页面撤销授权。"),
    ));
    let mut hidden = String::new();
    for (k, v) in &prompt.hidden_fields {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape_html(k),
            escape_html(v)
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"{action}\">{hidden}<div class=\"actions\">\
         <button class=\"primary\" type=\"submit\" name=\"decision\" value=\"approve\">{approve}</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">{deny}</button></div></form>",
        action = escape_html(&prompt.form_action),
        approve = lang.pick("Approve", "允许"),
        deny = lang.pick("Deny", "拒绝"),
    ));
    body.push_str(&format!(
        "<p class=\"muted\">{} <code>{}</code></p>",
        lang.pick("App ID:", "应用 ID："),
        escape_html(&prompt.client_id)
    ));
    let title = match lang {
        Lang::En => format!("Authorize {}", prompt.client_name),
        Lang::Zh => format!("授权 {}", prompt.client_name),
    };
    page(lang, StatusCode::OK, &title, &body)
}

/// The page shown instead of a redirect (unknown client, unregistered
/// redirect URI, expired consent form, …), with the error's status.
pub fn error_page(lang: Lang, error: &OAuthError) -> http::Response<Bytes> {
    let body = format!(
        "<h1>{}</h1><p>{}</p><p class=\"error\"><code>{}</code>: {}</p><p><a href=\"/\">{}</a></p>",
        lang.pick("This authorization request cannot continue", "无法继续此授权请求"),
        lang.pick(
            "The link that brought you here is not valid for this app, so you were not sent back to it. \
             Return to the app and try again, or contact its developer.",
            "带你来到这里的链接对该应用无效，因此没有将你送回该应用。请返回应用重试，或联系应用的开发者。"
        ),
        escape_html(error.code.as_str()),
        escape_html(&error.description),
        lang.pick("Home", "首页"),
    );
    page(
        lang,
        error.status,
        lang.pick("Authorization error", "授权出错"),
        &body,
    )
}

/// The demo's [`Pages`]: consent and error pages in the visitor's language.
pub(crate) struct DemoPages(pub(crate) Arc<HostData>);

impl Pages for DemoPages {
    fn consent_page(
        &self,
        prompt: &ConsentPrompt,
        request: &http::request::Parts,
    ) -> http::Response<Bytes> {
        let username = self.0.cached_username(&prompt.user_id);
        consent_page(Lang::of(&request.headers), prompt, username.as_deref())
    }

    fn error_page(
        &self,
        error: &OAuthError,
        request: &http::request::Parts,
    ) -> http::Response<Bytes> {
        error_page(Lang::of(&request.headers), error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorman::{ScopeInfo, UserId};

    #[test]
    fn accept_language_choice() {
        assert_eq!(Lang::from_accept_language(None), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("")), Lang::En);
        assert_eq!(
            Lang::from_accept_language(Some("zh-CN,zh;q=0.9,en;q=0.8")),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_accept_language(Some("en-US,en;q=0.9,zh-CN;q=0.8")),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language(Some("fr-FR, zh-Hans;q=0.5")),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_accept_language(Some("zh;q=0.4, en;q=0.6")),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language(Some("ZH-cn")), Lang::Zh);
        assert_eq!(Lang::from_accept_language(Some("zh;q=0")), Lang::En);
        assert_eq!(
            Lang::from_accept_language(Some("zh;q=garbage, en;q=0.1")),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language(Some("de, *;q=0.5, zh;q=0.7")),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_accept_language(Some("en;q=0.5,zh;q=0.5")),
            Lang::En
        );
    }

    fn prompt(name: &str) -> ConsentPrompt {
        ConsentPrompt {
            user_id: UserId::new("1"),
            client_id: "client_<id>".into(),
            client_name: name.into(),
            client_description: "<img src=x onerror=alert(1)> & friends".into(),
            scopes: vec![
                ScopeInfo::new("profile", "p"),
                ScopeInfo::new("weird<b>", "<i>desc</i>"),
            ],
            form_action: "/api/oauth2/authorize".into(),
            hidden_fields: vec![
                ("client_id".into(), "client_<id>".into()),
                (
                    "redirect_uri".into(),
                    "https://app.example/cb?a=1&b=\"2\"".into(),
                ),
                ("state".into(), "\"><script>alert(2)</script>".into()),
                ("ticket".into(), "123.abc".into()),
            ],
        }
    }

    fn body(res: &http::Response<Bytes>) -> String {
        String::from_utf8(res.body().to_vec()).expect("utf-8")
    }

    #[test]
    fn consent_page_escapes_a_hostile_app() {
        let hostile = "<script>alert('x')</script>\"Evil\" & Co";
        for lang in [Lang::En, Lang::Zh] {
            let res = consent_page(lang, &prompt(hostile), Some("<alice>"));
            assert_eq!(res.status(), StatusCode::OK);
            let html = body(&res);
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("<b>") && !html.contains("<i>"), "{html}");
            assert!(!html.contains("<alice>"), "{html}");
            assert!(html.contains(
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;Evil&quot; &amp; Co"
            ));
            assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;\""));
            assert!(html.contains("https://app.example/cb?a=1&amp;b=&quot;2&quot;"));
            assert_eq!(html.matches("<form").count(), 1);
            assert!(html.contains("<form method=\"post\" action=\"/api/oauth2/authorize\">"));
            assert!(html.contains("name=\"decision\" value=\"approve\""));
            assert!(html.contains("name=\"decision\" value=\"deny\""));
            assert!(html.contains("<input type=\"hidden\" name=\"ticket\" value=\"123.abc\">"));
            let h = res.headers();
            assert_eq!(h["x-frame-options"], "DENY");
            assert_eq!(h["referrer-policy"], "no-referrer");
            assert!(
                h["content-security-policy"]
                    .to_str()
                    .unwrap_or("")
                    .contains("frame-ancestors 'none'")
            );
        }
        let zh = body(&consent_page(Lang::Zh, &prompt("App"), None));
        assert!(
            zh.contains("lang=\"zh-CN\"")
                && zh.contains("允许")
                && zh.contains("查看你的用户名和邮箱地址")
        );
        let en = body(&consent_page(Lang::En, &prompt("App"), None));
        assert!(
            en.contains("lang=\"en\"")
                && en.contains("Approve")
                && en.contains("username and email")
        );
    }

    #[test]
    fn error_page_is_400_and_escaped() {
        let e = OAuthError::invalid_request("unknown client_id <x>");
        let res = error_page(Lang::En, &e);
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let html = body(&res);
        assert!(html.contains("unknown client_id &lt;x&gt;"));
        assert!(res.headers().get(http::header::LOCATION).is_none());
    }
}
