//! Userinfo when the host reads the token and its user's claims together
//! (`Claims::claims_with_token`): it answers exactly what the two separate
//! reads answer, and every check of a bearer token still holds, whatever
//! record the host's joined read hands back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use doorman::{
    AuthorizationServer, Claims, MemoryStore, StoreError, TokenClaims, TokenHash, TokenKind,
    TokenRecord, TokenStore as _, UserClaims, UserId,
};

type Tamper = fn(&mut TokenRecord);

/// A host whose joined read is the memory store's token plus [`Users`]'
/// claims, with ways to make it answer wrongly.
struct Joined {
    store: Arc<MemoryStore>,
    joined: AtomicUsize,
    separate: AtomicUsize,
    /// Applied to the token record before it is handed back.
    tamper: Mutex<Option<Tamper>>,
    /// Answer no claims, as when the user's row is gone.
    user_gone: Mutex<bool>,
}

#[async_trait]
impl Claims for Joined {
    async fn claims(&self, user: &UserId) -> Result<Option<UserClaims>, StoreError> {
        self.separate.fetch_add(1, Ordering::SeqCst);
        Users.claims(user).await
    }

    async fn claims_with_token(&self, hash: &TokenHash) -> Result<TokenClaims, StoreError> {
        self.joined.fetch_add(1, Ordering::SeqCst);
        let Some(mut record) = self.store.token(hash).await? else {
            return Ok(TokenClaims::NoToken);
        };
        if let Some(tamper) = *self.tamper.lock().unwrap() {
            tamper(&mut record);
        }
        let claims = match &record.user_id {
            Some(user) if !*self.user_gone.lock().unwrap() => Users.claims(user).await?,
            _ => None,
        };
        Ok(TokenClaims::Found(record, claims))
    }
}

/// `h`, and a second server over the same store and clock whose host
/// reads claims through [`Joined`].
fn pair() -> (Harness, Harness, Arc<Joined>) {
    let h = harness();
    let joined = Arc::new(Joined {
        store: h.store.clone(),
        joined: AtomicUsize::new(0),
        separate: AtomicUsize::new(0),
        tamper: Mutex::new(None),
        user_gone: Mutex::new(false),
    });
    let server =
        AuthorizationServer::builder(config().build(), h.store.clone(), Arc::new(HeaderSessions))
            .claims(joined.clone())
            .balances(Arc::new(Users))
            .clock(h.clock.clone())
            .build();
    let j = Harness {
        server,
        clock: h.clock.clone(),
        store: h.store.clone(),
    };
    (h, j, joined)
}

async fn access_token(h: &Harness, app: &App, scope: &str) -> serde_json::Value {
    let code = h.code(app, scope, None).await;
    json(&h.exchange(app, &code, None).await)
}

#[tokio::test]
async fn the_joined_read_answers_what_the_separate_reads_answer_in_one_call() {
    let (h, j, joined) = pair();
    let app = h.app(true).await;
    let narrow = h
        .app_with(|r| {
            r.trusted = true;
            r.released_claims = Some(vec!["username".into(), "quota".into()]);
        })
        .await;
    for (app, scope) in [
        (&app, "profile balance"),
        (&app, "profile"),
        (&app, "balance"),
        (&narrow, "profile balance"),
    ] {
        let t = access_token(&h, app, scope).await;
        let at = t["access_token"].as_str().unwrap();
        let separate = h.get_bearer("/api/oauth2/userinfo", at).await;
        let before = joined.joined.load(Ordering::SeqCst);
        let together = j.get_bearer("/api/oauth2/userinfo", at).await;
        assert_eq!(separate.status(), 200, "{scope}");
        assert_eq!(together.status(), 200, "{scope}");
        assert_eq!(json(&together), json(&separate), "{scope}");
        assert_eq!(joined.joined.load(Ordering::SeqCst), before + 1);
    }
    // The profile scope released the username, and only with it.
    let t = access_token(&h, &app, "balance").await;
    let body = json(
        &j.get_bearer("/api/oauth2/userinfo", t["access_token"].as_str().unwrap())
            .await,
    );
    assert!(body.get("username").is_none(), "{body}");
    assert_eq!(body["quota"], 1_000_000);
    // Never the separate claims read.
    assert_eq!(joined.separate.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_joined_read_cannot_pass_what_the_bearer_check_refuses() {
    let (h, j, joined) = pair();
    let app = h.app(true).await;
    let t = access_token(&h, &app, "profile").await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        j.get_bearer("/api/oauth2/userinfo", &at).await.status(),
        200
    );

    // Unknown token, and a refresh token presented as a bearer token.
    let res = j.get_bearer("/api/oauth2/userinfo", "garbage").await;
    assert_eq!(
        (res.status().as_u16(), err_code(&res)),
        (401, "invalid_token".into())
    );
    let refresh = t["refresh_token"].as_str().unwrap();
    let res = j.get_bearer("/api/oauth2/userinfo", refresh).await;
    assert_eq!(
        (res.status().as_u16(), err_code(&res)),
        (401, "invalid_token".into())
    );

    // A host whose joined read hands back the wrong record: another
    // token's, or the right one turned into a refresh token.
    let refusals: [(Tamper, &str); 2] = [
        (|r| r.hash = TokenHash::of("another token"), "invalid"),
        (|r| r.kind = TokenKind::Refresh, "invalid"),
    ];
    for (tamper, what) in refusals {
        *joined.tamper.lock().unwrap() = Some(tamper);
        let res = j.get_bearer("/api/oauth2/userinfo", &at).await;
        assert_eq!(res.status(), 401, "{what}");
        assert_eq!(err_code(&res), "invalid_token");
    }
    *joined.tamper.lock().unwrap() = None;

    // The user's row is gone: the token no longer answers for anyone.
    *joined.user_gone.lock().unwrap() = true;
    let res = j.get_bearer("/api/oauth2/userinfo", &at).await;
    assert_eq!(
        (res.status().as_u16(), err_code(&res)),
        (401, "invalid_token".into())
    );
    *joined.user_gone.lock().unwrap() = false;

    // A client-credentials token acts for no user.
    let cc = json(
        &h.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app.id),
            ("client_secret", app.secret.as_deref().unwrap()),
        ])
        .await,
    );
    let res = j
        .get_bearer("/api/oauth2/userinfo", cc["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        (res.status().as_u16(), err_code(&res)),
        (403, "insufficient_scope".into())
    );

    // Revoked, then expired.
    let revoked = access_token(&h, &app, "profile").await;
    let rat = revoked["access_token"].as_str().unwrap();
    let res = h
        .post_client("/api/oauth2/revoke", &app, &[("token", rat)])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        j.get_bearer("/api/oauth2/userinfo", rat).await.status(),
        401
    );
    h.clock.advance(chrono::Duration::days(30));
    let res = j.get_bearer("/api/oauth2/userinfo", &at).await;
    assert_eq!(res.status(), 401);
    assert!(body_text(&res).contains("expired"), "{}", body_text(&res));
    assert_eq!(joined.separate.load(Ordering::SeqCst), 0);
}
