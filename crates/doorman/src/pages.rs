//! The default consent and error pages: plain, escaped, self-contained.

use bytes::Bytes;

use crate::error::OAuthError;
use crate::host::ConsentPrompt;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Security headers every HTML page of the provider carries: no framing
/// (clickjacking, RFC 9700 §4.16), no external resources, no referrer.
pub fn html_response(status: http::StatusCode, body: String) -> http::Response<Bytes> {
    let mut res = http::Response::new(Bytes::from(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        http::header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    res
}

pub(crate) fn default_consent_page(p: &ConsentPrompt) -> http::Response<Bytes> {
    let mut scopes = String::new();
    for s in &p.scopes {
        scopes.push_str(&format!(
            "<li><strong>{}</strong>: {}</li>",
            escape_html(&s.name),
            escape_html(&s.description)
        ));
    }
    let mut hidden = String::new();
    for (k, v) in &p.hidden_fields {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape_html(k),
            escape_html(v)
        ));
    }
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Authorize {name}</title></head>\
         <body><h1>Authorize {name}</h1><p>{desc}</p><p>{name} asks to:</p><ul>{scopes}</ul>\
         <form method=\"post\" action=\"{action}\">{hidden}\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form></body></html>",
        name = escape_html(&p.client_name),
        desc = escape_html(&p.client_description),
        action = escape_html(&p.form_action),
    );
    html_response(http::StatusCode::OK, body)
}

pub(crate) fn default_error_page(e: &OAuthError) -> http::Response<Bytes> {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Authorization error</title></head>\
         <body><h1>Authorization error</h1><p><code>{}</code>: {}</p></body></html>",
        escape_html(e.code.as_str()),
        escape_html(&e.description)
    );
    html_response(e.status, body)
}
