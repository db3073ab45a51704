//! The server both test files drive: a memory store, nobody logged in.

use std::sync::Arc;

use doorman::redirect::form_encode;
use doorman::{AuthorizationServer, Config, Endpoints, MemoryStore, Sessions, StoreError, UserId};

pub struct NoSessions;

#[async_trait::async_trait]
impl Sessions for NoSessions {
    async fn current_user(&self, _: &http::request::Parts) -> Result<Option<UserId>, StoreError> {
        Ok(None)
    }
    fn login_url(&self, return_to: &str) -> String {
        format!("/login?return_to={}", form_encode(return_to))
    }
}

pub fn server() -> AuthorizationServer {
    let config = Config::builder("http://id.example")
        .endpoints(Endpoints::under("/api/oauth2"))
        .scope("profile", "See your profile")
        .scope("balance", "See your balance")
        .build();
    AuthorizationServer::builder(config, Arc::new(MemoryStore::new()), Arc::new(NoSessions)).build()
}
