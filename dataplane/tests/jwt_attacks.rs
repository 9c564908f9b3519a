//! The JWT attack suite: tokens forged the way an attacker would (tests/peers/jwt_forge.py,
//! PyJWT and cryptography) against a provider that takes RS256 (a PEM key with kid `main`)
//! and HS256 (its own secret), with the default 60 s clock skew.

use serde_json::Value;
use switchboard_config::kinds::auth_provider::AuthProviderSpec;
use switchboard_config::Snapshot;
use switchboard_dataplane::policy::auth::{AuthError, Authenticator, Offered};
use switchboard_dataplane::policy::jwks::JwksCache;

const ISSUER: &str = "https://issuer.test";

/// The forger's output: the provider's public key and secret, and the tokens by name.
fn forged() -> Value {
    let python = switchboard_testkit::python_bin().expect("PyJWT installed (make deps)");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(python)
        .arg(root.join("tests/peers/jwt_forge.py"))
        .args([ISSUER, "sb"])
        .output()
        .expect("the forger runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn provider(forged: &Value) -> Authenticator {
    let pem = forged["public_pem"].as_str().expect("pem");
    let indented: String = pem.lines().map(|l| format!("          {l}\n")).collect();
    let yaml = format!(
        "jwt:\n  issuer: {ISSUER}\n  audiences: [sb]\n  algorithms: [RS256, HS256]\n  keys:\n    - kid: main\n      pem: |\n{indented}    - secret: {{secret: jwt, key: hmac}}\n"
    );
    let spec: AuthProviderSpec = serde_yaml::from_str(&yaml).expect("spec");
    let mut snap = Snapshot::default();
    let secret = forged["hmac"].as_str().expect("hmac").to_string();
    snap.secrets
        .insert("jwt".into(), [("hmac".to_string(), secret)].into());
    Authenticator::compile("issuer", &spec, &snap).expect("compiles")
}

#[tokio::test]
async fn forged_tokens_are_refused_and_good_ones_at_the_clock_skew_edges_pass() {
    let forged = forged();
    let auth = provider(&forged);
    let jwks = JwksCache::default();
    let verify = |name: &str| {
        let token = forged["tokens"][name].as_str().expect(name).to_string();
        let auth = &auth;
        let jwks = &jwks;
        async move {
            let header = format!("Bearer {token}");
            let offered = Offered {
                authorization: Some(&header),
                ..Offered::default()
            };
            auth.authenticate(offered, jwks).await
        }
    };
    for good in [
        "good_rs256",
        "good_hs256",
        "expired_within_skew",
        "nbf_within_skew",
    ] {
        let p = verify(good).await.unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(p.subject, "victim", "{good}");
    }
    let refused = [
        ("confusion_pem_as_secret", "signature"),
        ("confusion_pem_as_secret_kid", "signature"),
        ("kid_path", "no key with kid `../../../../../../etc/passwd`"),
        ("kid_sql", "no key with kid"),
        ("jwk_embedded", "signature"),
        ("jku_remote", "signature"),
        ("x5u_remote", "signature"),
        ("crit_unknown", "critical (`crit`)"),
        ("oversized", "at most 16384"),
        ("expired_past_skew", "expired"),
        ("nbf_past_skew", "not valid yet"),
        ("no_exp", "exp"),
        ("alg_none", "none"),
        ("alg_none_upper", "not a usable JWT"),
    ];
    for (name, why) in refused {
        match verify(name).await {
            Err(AuthError::Invalid(m)) => {
                assert!(m.contains(why), "{name}: `{m}` should say {why}")
            }
            other => panic!("{name} was not refused as invalid: {other:?}"),
        }
    }
}
