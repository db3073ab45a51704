//! Property tests: no input reaches a panic, and every answer is a
//! well-formed protocol answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use proptest::prelude::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("grant_type".to_owned()),
        Just("code".to_owned()),
        Just("client_id".to_owned()),
        Just("client_secret".to_owned()),
        Just("refresh_token".to_owned()),
        Just("scope".to_owned()),
        Just("code_verifier".to_owned()),
        Just("redirect_uri".to_owned()),
        ".{0,12}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("authorization_code".to_owned()),
        Just("refresh_token".to_owned()),
        Just("client_credentials".to_owned()),
        Just(String::new()),
        ".{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn token_endpoint_answers_every_body_with_a_protocol_error_or_tokens(
        pairs in proptest::collection::vec((field(), value()), 0..8),
        raw in proptest::collection::vec(any::<u8>(), 0..64),
        ct in prop_oneof![Just("application/x-www-form-urlencoded"), Just("application/json"), Just("text/plain")],
        auth in proptest::option::of(".{0,40}"),
    ) {
        let rt = rt();
        rt.block_on(async {
            let h = harness();
            let app = h.app(false).await;
            let mut pairs = pairs;
            pairs.push(("client_id".into(), app.id.clone()));
            for body in [serde_urlencoded::to_string(&pairs).unwrap().into_bytes(), raw.clone()] {
                let mut b = Request::post("/api/oauth2/token").header("content-type", ct);
                if let Some(a) = &auth && let Ok(v) = http::HeaderValue::from_str(a) {
                    b = b.header("authorization", v);
                }
                let res = h.server.token(b.body(Bytes::from(body)).unwrap()).await;
                let v = json(&res);
                if res.status() == 200 {
                    assert!(v["access_token"].is_string());
                } else {
                    assert!(res.status().is_client_error(), "{}", res.status());
                    assert!(v["error"].is_string());
                }
            }
        });
    }

    #[test]
    fn authorization_endpoint_never_redirects_to_an_unregistered_uri(
        pairs in proptest::collection::vec((prop_oneof![
            Just("response_type".to_owned()), Just("client_id".to_owned()), Just("redirect_uri".to_owned()),
            Just("scope".to_owned()), Just("state".to_owned()), Just("code_challenge".to_owned()),
            Just("code_challenge_method".to_owned()), Just("auto_authorize".to_owned()), ".{0,8}"
        ], prop_oneof![
            Just("code".to_owned()), Just(REDIRECT.to_owned()), Just("https://evil.example/cb".to_owned()),
            Just("profile".to_owned()), Just("true".to_owned()), Just("S256".to_owned()), ".{0,30}"
        ]), 0..9),
        use_app in any::<bool>(),
        user in proptest::option::of(prop_oneof![Just("alice"), Just("bob")]),
    ) {
        let rt = rt();
        rt.block_on(async {
            let h = harness();
            let app = h.app(true).await;
            let mut pairs = pairs;
            if use_app {
                pairs.push(("client_id".into(), app.id.clone()));
            }
            let q = serde_urlencoded::to_string(&pairs).unwrap();
            let res = h.authorize(&q, user).await;
            match res.status().as_u16() {
                302 => {
                    let loc = res.headers()["location"].to_str().unwrap();
                    assert!(loc.starts_with("/login?") || loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
                    if loc.starts_with(REDIRECT) {
                        assert_eq!(query_param(loc, "iss").as_deref(), Some(ISSUER));
                    }
                }
                200 | 400 => assert!(res.headers().get("location").is_none()),
                s => panic!("unexpected status {s}"),
            }
        });
    }
}
