//! Redirect URIs: what may be registered (RFC 6749 §3.1.2, RFC 9700 §2.1,
//! RFC 8252 §7) and how a presented one is matched against the registered
//! list (exact string match; loopback IP literals may differ in port only,
//! RFC 8252 §7.3).

/// The parts of an absolute URI that the matching rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
    /// Path and query, everything after the authority up to a fragment.
    rest: &'a str,
    fragment: bool,
}

fn parse(uri: &str) -> Option<Parts<'_>> {
    if uri
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80)
    {
        return None;
    }
    let colon = uri.find(':')?;
    let scheme = &uri[..colon];
    let mut sc = scheme.bytes();
    if !sc.next()?.is_ascii_alphabetic()
        || !sc.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let after = &uri[colon + 1..];
    let (before_frag, fragment) = match after.find('#') {
        Some(i) => (&after[..i], true),
        None => (after, false),
    };
    let Some(hier) = before_frag.strip_prefix("//") else {
        // No authority (e.g. `com.example.app:/callback`).
        return Some(Parts {
            scheme,
            userinfo: None,
            host: "",
            port: None,
            rest: before_frag,
            fragment,
        });
    };
    let auth_end = hier.find(['/', '?']).unwrap_or(hier.len());
    let (authority, rest) = hier.split_at(auth_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let close = v6.find(']')?;
        let host = &hostport[..close + 2];
        match &v6[close + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match hostport.rfind(':') {
            Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
            None => (hostport, None),
        }
    };
    if let Some(p) = port
        && (p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some(Parts {
        scheme,
        userinfo,
        host,
        port,
        rest,
        fragment,
    })
}

fn is_loopback_ip(host: &str) -> bool {
    host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    /// Not an absolute URI.
    #[error("redirect_uri must be an absolute URI")]
    NotAbsolute,
    /// Carries a fragment (RFC 6749 §3.1.2).
    #[error("redirect_uri must not contain a fragment")]
    Fragment,
    /// Carries user information (`user@host`).
    #[error("redirect_uri must not contain user information")]
    UserInfo,
    /// `http` to a host other than a loopback IP, with plain-http redirects disallowed.
    #[error("redirect_uri must use https (plain http only for loopback IP addresses)")]
    InsecureScheme,
    /// A scheme that can run code or read local files, or a custom scheme
    /// without a reverse-domain name (RFC 8252 §7.1).
    #[error("redirect_uri scheme is not allowed")]
    ForbiddenScheme,
}

/// Checks that `uri` may be registered as a redirect URI.
///
/// `https` is always allowed; `http` only to a loopback IP literal unless
/// `allow_http` is set; private-use schemes must look like a reversed
/// domain name (`com.example.app:`), per RFC 8252 §7.1.
pub fn validate_registration(uri: &str, allow_http: bool) -> Result<(), RedirectUriError> {
    let p = parse(uri).ok_or(RedirectUriError::NotAbsolute)?;
    if p.fragment {
        return Err(RedirectUriError::Fragment);
    }
    if p.userinfo.is_some() {
        return Err(RedirectUriError::UserInfo);
    }
    let scheme = p.scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "https" | "http" if p.host.is_empty() => Err(RedirectUriError::NotAbsolute),
        "https" => Ok(()),
        "http" if allow_http || is_loopback_ip(p.host) => Ok(()),
        "http" => Err(RedirectUriError::InsecureScheme),
        s if s.contains('.') => Ok(()),
        _ => Err(RedirectUriError::ForbiddenScheme),
    }
}

/// Finds the registered redirect URI that `presented` matches.
///
/// The match is exact, character for character, except that for a
/// registered `http` URI whose host is a loopback IP literal (`127.0.0.1`,
/// `[::1]`) the port may differ (RFC 8252 §7.3). `localhost` gets no such
/// leniency (RFC 8252 §8.3).
pub fn find_match<'a>(registered: &'a [String], presented: &str) -> Option<&'a str> {
    if let Some(exact) = registered.iter().find(|r| r.as_str() == presented) {
        return Some(exact);
    }
    let p = parse(presented)?;
    if p.fragment
        || p.userinfo.is_some()
        || !p.scheme.eq_ignore_ascii_case("http")
        || !is_loopback_ip(p.host)
    {
        return None;
    }
    registered.iter().map(String::as_str).find(|r| {
        parse(r).is_some_and(|q| {
            q.scheme.eq_ignore_ascii_case("http")
                && q.userinfo.is_none()
                && !q.fragment
                && q.host == p.host
                && q.rest == p.rest
        })
    })
}

/// Appends query parameters to a redirect URI (which has no fragment).
pub fn append_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(uri.len() + 128);
    out.push_str(uri);
    let mut sep = if uri.contains('?') {
        if uri.ends_with('?') || uri.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    for (k, v) in params {
        out.push_str(sep);
        out.push_str(&form_encode(k));
        out.push('=');
        out.push_str(&form_encode(v));
        sep = "&";
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of one name or value
/// (for example a login URL's `return_to`).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reg(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn exact_match_only_for_ordinary_hosts() {
        let r = reg(&["https://app.example/cb"]);
        assert_eq!(
            find_match(&r, "https://app.example/cb"),
            Some("https://app.example/cb")
        );
        for bad in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://app.example/CB",
            "https://APP.example/cb",
            "https://app.example:443/cb",
            "https://app.example/cb#f",
            "https://app.example.evil/cb",
            "https://evil@app.example/cb",
            "http://app.example/cb",
        ] {
            assert_eq!(find_match(&r, bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_port_may_vary_localhost_may_not() {
        let r = reg(&[
            "http://127.0.0.1/cb",
            "http://[::1]:8000/cb",
            "http://localhost:3000/cb",
        ]);
        assert!(find_match(&r, "http://127.0.0.1:51234/cb").is_some());
        assert!(find_match(&r, "http://[::1]:4444/cb").is_some());
        assert!(find_match(&r, "http://[::1]/cb").is_some());
        assert_eq!(find_match(&r, "http://localhost:3001/cb"), None);
        assert_eq!(find_match(&r, "http://127.0.0.1:51234/other"), None);
        assert_eq!(find_match(&r, "https://127.0.0.1:51234/cb"), None);
        assert_eq!(find_match(&r, "http://127.0.0.1:51234/cb#x"), None);
        assert_eq!(find_match(&r, "http://a@127.0.0.1:5/cb"), None);
        assert_eq!(find_match(&r, "http://127.0.0.1:99999999/cb"), None);
    }

    #[test]
    fn registration_rules() {
        assert!(validate_registration("https://a.example/cb", false).is_ok());
        assert!(validate_registration("http://127.0.0.1:8080/cb", false).is_ok());
        assert!(validate_registration("com.example.app:/cb", false).is_ok());
        assert_eq!(
            validate_registration("http://a.example/cb", false),
            Err(RedirectUriError::InsecureScheme)
        );
        assert!(validate_registration("http://a.example/cb", true).is_ok());
        assert_eq!(
            validate_registration("https://a.example/cb#x", false),
            Err(RedirectUriError::Fragment)
        );
        assert_eq!(
            validate_registration("javascript:alert(1)", true),
            Err(RedirectUriError::ForbiddenScheme)
        );
        assert_eq!(
            validate_registration("data:text/html,x", true),
            Err(RedirectUriError::ForbiddenScheme)
        );
        assert_eq!(
            validate_registration("/relative", true),
            Err(RedirectUriError::NotAbsolute)
        );
        assert_eq!(
            validate_registration("https://u:p@a.example/", true),
            Err(RedirectUriError::UserInfo)
        );
        assert_eq!(
            validate_registration("https:///nohost", true),
            Err(RedirectUriError::NotAbsolute)
        );
        assert_eq!(
            validate_registration("https://a.example/\ncb", true),
            Err(RedirectUriError::NotAbsolute)
        );
    }

    #[test]
    fn append_query_encodes() {
        assert_eq!(
            append_query("https://a/cb", &[("code", "x y&z")]),
            "https://a/cb?code=x+y%26z"
        );
        assert_eq!(
            append_query("https://a/cb?k=v", &[("state", "s")]),
            "https://a/cb?k=v&state=s"
        );
    }

    proptest! {
        #[test]
        fn matching_never_panics_and_is_exact_or_loopback(reg_uri in "[a-z:/.0-9\\[\\]@#?]{0,40}", pres in "[a-z:/.0-9\\[\\]@#?]{0,40}") {
            let r = vec![reg_uri.clone()];
            let _ = validate_registration(&pres, true);
            if let Some(m) = find_match(&r, &pres) {
                prop_assert_eq!(m, reg_uri.as_str());
                if pres != reg_uri {
                    // Only the loopback rule may match a different string.
                    let p = parse(&pres).expect("matched implies parsed");
                    prop_assert!(is_loopback_ip(p.host));
                    prop_assert_eq!(p.scheme, "http");
                }
            }
        }

        #[test]
        fn loopback_any_port_matches(port in 1u16..) {
            let r = vec!["http://127.0.0.1/cb".to_owned()];
            let presented = format!("http://127.0.0.1:{port}/cb");
            prop_assert!(find_match(&r, &presented).is_some());
            let other = format!("http://127.0.0.1:{port}/cb2");
            prop_assert!(find_match(&r, &other).is_none());
        }
    }
}
