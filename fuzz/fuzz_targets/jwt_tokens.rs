//! Bearer tokens as a JWT auth provider verifies them (HS256 with a secret from the
//! environment): headers, claims and signatures from the input.
#![no_main]

use std::sync::{Arc, OnceLock};
use switchboard_dataplane::policy::auth::{Authenticator, Offered};
use switchboard_dataplane::policy::jwks::JwksCache;

mod served;

const YAML: &str = "apiVersion: switchboard.dev/v1\nkind: AuthProvider\nmetadata:\n  name: tokens\nspec:\n  jwt:\n    issuer: https://issuer.test\n    audiences: [switchboard]\n    algorithms: [HS256]\n    keys:\n      - secretEnv: FUZZ_JWT_SECRET\n---\napiVersion: switchboard.dev/v1\nkind: Prompt\nmetadata:\n  name: hello\nspec:\n  template: hi\n---\napiVersion: switchboard.dev/v1\nkind: VirtualServer\nmetadata:\n  name: demo\nspec:\n  authProvider: tokens\n  prompts: [hello]\n";

fn verifier() -> &'static (Arc<Authenticator>, JwksCache) {
    static AUTH: OnceLock<(Arc<Authenticator>, JwksCache)> = OnceLock::new();
    AUTH.get_or_init(|| {
        std::env::set_var("FUZZ_JWT_SECRET", "fuzz-secret-0123456789abcdef");
        let auth = served::demo(YAML).auth.clone().expect("an authenticator");
        (auth, JwksCache::default())
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (auth, jwks) = verifier();
    let token = String::from_utf8_lossy(data);
    let header = format!("Bearer {token}");
    let offered = Offered {
        authorization: Some(&header),
        ..Offered::default()
    };
    let verified = futures::executor::block_on(auth.authenticate(offered, jwks));
    assert!(
        verified.is_err(),
        "a token signed with no key verified: {token}"
    );
});
