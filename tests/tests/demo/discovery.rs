//! RFC 8414 metadata.

use doorman_tests::*;
use serde_json::{Value, json};

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

async fn discovery(env: &TestEnv) {
    let res = env
        .get(&env.api(), "/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let m = res.json();
    let iss = env.issuer();
    // The default issuer is `http://<DOORMAN_ADDR>`.
    assert_eq!(iss, env.base_url().as_str());
    assert_eq!(m["issuer"], iss, "{m}");
    for (field, path) in [
        ("authorization_endpoint", AUTHORIZE),
        ("token_endpoint", TOKEN),
        ("userinfo_endpoint", USERINFO),
        ("revocation_endpoint", REVOKE),
        ("introspection_endpoint", INTROSPECT),
        ("registration_endpoint", REGISTER),
    ] {
        assert_eq!(m[field], json!(format!("{iss}{path}")), "{field} in {m}");
    }
    let scopes = strings(&m["scopes_supported"]);
    assert!(
        scopes.contains(&"profile") && scopes.contains(&"balance"),
        "{m}"
    );
    assert_eq!(m["response_types_supported"], json!(["code"]), "{m}");
    let grants = strings(&m["grant_types_supported"]);
    for g in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(grants.contains(&g), "{g} missing: {m}");
    }
    let auth = strings(&m["token_endpoint_auth_methods_supported"]);
    assert!(
        auth.contains(&"client_secret_basic") && auth.contains(&"client_secret_post"),
        "{m}"
    );
    assert_eq!(
        m["code_challenge_methods_supported"],
        json!(["S256"]),
        "{m}"
    );
    assert_eq!(
        m["authorization_response_iss_parameter_supported"],
        json!(true),
        "{m}"
    );
}

adapters!(discovery);
