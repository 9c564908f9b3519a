//! Bad input of every kind gets an error naming the file, document, line and field; good
//! input (including every file in examples/) passes.

use switchboard_config::{load_sources, Diagnostic, Source};

fn errors_in(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(n, t)| Source {
            name: n.to_string(),
            text: t.to_string(),
        })
        .collect();
    match load_sources(&sources) {
        Ok(set) => panic!("expected errors, got {} valid resources", set.len()),
        Err(d) => d.0,
    }
}

fn errors(text: &str) -> Vec<Diagnostic> {
    errors_in(&[("t.yaml", text)])
}

/// Asserts exactly one error, at `line` and `field`, whose message contains `needle`.
#[track_caller]
fn one_error(text: &str, doc: usize, line: usize, field: &str, needle: &str) -> Diagnostic {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got: {errs:#?}");
    let e = errs.into_iter().next().expect("one error");
    assert_eq!(e.file, "t.yaml", "{e}");
    assert_eq!(e.document, Some(doc), "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.field, field, "{e}");
    assert!(e.message.contains(needle), "message lacks {needle:?}: {e}");
    e
}

const UPSTREAM: &str = "\
kind: Upstream
metadata:
  name: everything
spec:
  mcp:
    url: http://127.0.0.1:3001/mcp
";

#[test]
fn yaml_syntax_error() {
    let e = errors("kind: Upstream\nmetadata: {name: x\nspec: {}\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].message.starts_with("YAML syntax error"), "{}", e[0]);
    assert!(matches!(e[0].line, Some(2 | 3)), "{}", e[0]);
}

#[test]
fn missing_kind() {
    one_error(
        "metadata:\n  name: x\nspec: {}\n",
        0,
        1,
        "kind",
        "missing field `kind`",
    );
}

#[test]
fn unknown_kind() {
    let e = one_error(
        "kind: Upstreem\nmetadata:\n  name: x\nspec: {}\n",
        0,
        1,
        "kind",
        "unknown kind `Upstreem`",
    );
    assert_eq!(e.column, Some(7));
}

#[test]
fn unknown_field_is_rejected() {
    let text = "kind: Upstream\nmetadata:\n  name: x\nspec:\n  mcp:\n    urll: http://a/mcp\n";
    let e = one_error(text, 0, 6, "spec.mcp.urll", "unknown field `urll`");
    assert!(
        e.message
            .starts_with("unknown field `urll`, expected one of"),
        "{e}"
    );
}

#[test]
fn wrong_type() {
    let text = "kind: RateLimitPolicy\nmetadata:\n  name: rl\nspec:\n  requests: many\n  per: 1m\n";
    let e = one_error(text, 0, 5, "spec.requests", "");
    assert!(
        e.message.starts_with("invalid type: string \"many\""),
        "{e}"
    );
}

#[test]
fn missing_required_field() {
    one_error(
        "kind: Upstream\nmetadata:\n  labels: {a: b}\nspec: {}\n",
        0,
        3,
        "metadata",
        "missing field `name`",
    );
}

#[test]
fn invalid_name() {
    let text = UPSTREAM.replace("name: everything", "name: Everything_1");
    one_error(&text, 0, 3, "metadata.name", "invalid name `Everything_1`");
}

#[test]
fn duplicate_name_across_files() {
    let errs = errors_in(&[
        ("a.yaml", UPSTREAM),
        ("b.yaml", &format!("# again\n{UPSTREAM}")),
    ]);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].file, "b.yaml");
    assert_eq!(errs[0].line, Some(4));
    assert!(
        errs[0]
            .message
            .contains("duplicate Upstream `everything` (first defined at a.yaml:3)"),
        "{}",
        errs[0]
    );
}

#[test]
fn dangling_references() {
    let text = format!(
        "{UPSTREAM}---\nkind: VirtualServer\nmetadata:\n  name: vs\nspec:\n  upstreams:\n    - upstream: nope\n  prompts: [missing]\n  authProvider: ghost\n"
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let by_field = |f: &str| {
        errs.iter()
            .find(|e| e.field == f)
            .unwrap_or_else(|| panic!("no error for {f}: {errs:#?}"))
    };
    let up = by_field("spec.upstreams[0].upstream");
    assert_eq!(
        (up.document, up.line, up.column),
        (Some(1), Some(13), Some(17))
    );
    assert!(up.message.contains("Upstream `nope` does not exist"));
    assert_eq!(by_field("spec.prompts[0]").line, Some(14));
    assert_eq!(by_field("spec.authProvider").line, Some(15));
}

#[test]
fn bad_url() {
    let text = UPSTREAM.replace("http://127.0.0.1:3001/mcp", "ftp://example/mcp");
    one_error(&text, 0, 6, "spec.mcp.url", "scheme `ftp`");
    let text = UPSTREAM.replace("http://127.0.0.1:3001/mcp", "not a url");
    one_error(&text, 0, 6, "spec.mcp.url", "invalid URL `not a url`");
}

#[test]
fn transports_exactly_one() {
    one_error(
        "kind: Upstream\nmetadata:\n  name: x\nspec:\n  description: none set\n",
        0,
        5,
        "spec",
        "set exactly one of mcp, stdio, openapi, rest, a2a, grpc",
    );
    let two = format!("{UPSTREAM}  stdio:\n    command: server\n");
    one_error(&two, 0, 5, "spec", "not several (mcp, stdio)");
}

#[test]
fn tool_name_clash_from_shared_prefix() {
    let text = format!(
        "{UPSTREAM}---\n{}---\nkind: VirtualServer\nmetadata:\n  name: vs\nspec:\n  upstreams:\n    - upstream: everything\n    - upstream: other\n",
        UPSTREAM.replace("name: everything", "name: other")
    );
    let e = one_error(
        &text,
        2,
        21,
        "spec.upstreams[1].prefix",
        "share the prefix ``",
    );
    assert_eq!(e.column, Some(7), "{e}");
    assert!(e.message.contains("names may clash"), "{e}");
}

#[test]
fn tool_name_clash_from_rename() {
    let text = format!(
        "{UPSTREAM}---\n{}---\nkind: VirtualServer\nmetadata:\n  name: vs\nspec:\n  upstreams:\n    - upstream: everything\n      prefix: a_\n      tools: [echo]\n    - upstream: other\n      tools: [add]\n      rename: {{add: a_echo}}\n",
        UPSTREAM.replace("name: everything", "name: other")
    );
    one_error(
        &text,
        2,
        24,
        "spec.upstreams[1].tools[0]",
        "tool name `a_echo` clashes with spec.upstreams[0].tools[0]",
    );
}

#[test]
fn bad_template() {
    let text = "kind: Prompt\nmetadata:\n  name: p\nspec:\n  arguments: [{name: text}]\n  template: \"Hello {{ text \"\n";
    one_error(text, 0, 6, "spec.template", "invalid template");
}

#[test]
fn template_uses_undeclared_argument() {
    let text = "kind: Prompt\nmetadata:\n  name: p\nspec:\n  template: \"Hello {{ who }}\"\n";
    one_error(
        text,
        0,
        5,
        "spec.template",
        "`who`, which is not a declared argument",
    );
}

#[test]
fn bad_duration() {
    let text = "kind: RateLimitPolicy\nmetadata:\n  name: rl\nspec:\n  requests: 10\n  per: soon\n";
    one_error(text, 0, 6, "spec.per", "");
}

#[test]
fn durations_past_a_year_are_refused_where_they_are_written() {
    // Big enough to overflow the clock of whoever schedules by it.
    let text = "kind: RateLimitPolicy\nmetadata:\n  name: rl\nspec:\n  requests: 10\n  per: 10000000000d\n";
    one_error(
        text,
        0,
        6,
        "spec.per",
        "`10000000000d` is longer than the longest duration accepted (365 days)",
    );
    let text = "kind: Upstream\nmetadata:\n  name: u\nspec:\n  mcp:\n    url: http://127.0.0.1:1/mcp\n  circuitBreaker:\n    openFor: 500000000000000s\n";
    one_error(
        text,
        0,
        8,
        "spec.circuitBreaker.openFor",
        "longer than the longest duration",
    );
    // A year itself is fine.
    let text = "kind: RateLimitPolicy\nmetadata:\n  name: rl\nspec:\n  requests: 10\n  per: 365d\n";
    assert!(switchboard_config::load_sources(&[Source {
        name: "f.yaml".into(),
        text: text.into()
    }])
    .is_ok());
}

#[test]
fn wrong_api_version() {
    let text = format!("apiVersion: v2\n{UPSTREAM}");
    one_error(&text, 0, 1, "apiVersion", "unsupported apiVersion `v2`");
}

#[test]
fn jwt_none_algorithm_is_not_a_choice() {
    let text = "kind: AuthProvider\nmetadata:\n  name: a\nspec:\n  jwt:\n    issuer: https://issuer.example\n    audiences: [gw]\n    jwksUrl: https://issuer.example/jwks.json\n    algorithms: [RS256, none]\n";
    one_error(
        text,
        0,
        9,
        "spec.jwt.algorithms[1]",
        "unknown variant `none`",
    );
}

#[test]
fn api_key_must_be_a_hash() {
    let text = "kind: AuthProvider\nmetadata:\n  name: a\nspec:\n  apiKeys:\n    keys:\n      - principal: alice\n        sha256: plaintext-key\n";
    one_error(
        text,
        0,
        8,
        "spec.apiKeys.keys[0].sha256",
        "64 lower-case hex digits",
    );
}

#[test]
fn jwt_providers_must_name_an_audience() {
    let text = "kind: AuthProvider\nmetadata:\n  name: a\nspec:\n  jwt:\n    issuer: https://issuer.example\n    jwksUrl: https://issuer.example/jwks.json\n";
    one_error(
        text,
        0,
        6,
        "spec.jwt.audiences",
        "without one, a token the issuer made for any other service would pass",
    );
}

#[test]
fn jwt_keys_need_exactly_one_source_and_hmac_secrets_must_exist() {
    let text = "kind: AuthProvider\nmetadata:\n  name: a\nspec:\n  jwt:\n    issuer: https://issuer.example\n    algorithms: [HS256]\n    keys:\n      - secretEnv: JWT_SECRET\n        secret: {secret: jwt, key: hmac}\n";
    let errs = errors(text);
    assert!(
        errs.iter()
            .any(|e| e.field == "spec.jwt.keys[0]" && e.message.contains("not several")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.field == "spec.jwt.keys[0].secret.secret"
                && e.message.contains("Secret `jwt` does not exist")),
        "{errs:#?}"
    );
}

#[test]
fn authorization_rules_and_retries_are_checked() {
    let text = format!(
        "{UPSTREAM}  retries: {{attempts: 50, backoff: 0s}}\n---\nkind: VirtualServer\nmetadata:\n  name: v\nspec:\n  upstreams:\n    - upstream: everything\n  authorization:\n    rules:\n      - action: deny\n        tools: ['']\n  limits: {{maxJsonDepth: 0}}\n"
    );
    let errs = errors(&text);
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    for want in [
        "spec.retries.attempts",
        "spec.retries.backoff",
        "spec.authorization.rules[0].tools[0]",
        "spec.limits.maxJsonDepth",
    ] {
        assert!(fields.contains(&want), "{want} missing from {errs:#?}");
    }
}

#[test]
fn every_error_is_reported_at_once_with_document_positions() {
    // Three broken documents (one schema error, two semantic errors) after a good one.
    let text = format!(
        "{UPSTREAM}---\nkind: Upstream\nmetadata:\n  name: b\nspec:\n  mcp: {{url: http://x/mcp, bogus: 1}}\n---\n# a comment\nkind: RateLimitPolicy\nmetadata:\n  name: rl\nspec:\n  requests: 0\n  per: 0s\n"
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        [Some(12), Some(19), Some(20)],
        "reported in reading order"
    );
    assert_eq!(
        (errs[0].document, errs[0].line),
        (Some(1), Some(12)),
        "{}",
        errs[0]
    );
    assert_eq!(errs[0].field, "spec.mcp.bogus");
    let rl: Vec<_> = errs.iter().filter(|e| e.document == Some(2)).collect();
    assert_eq!(rl.len(), 2, "{errs:#?}");
    assert!(rl
        .iter()
        .any(|e| e.field == "spec.requests" && e.line == Some(19)));
    assert!(rl
        .iter()
        .any(|e| e.field == "spec.per" && e.line == Some(20)));
}

#[test]
fn display_names_file_line_document_and_field() {
    let text = UPSTREAM.replace("http://127.0.0.1:3001/mcp", "not a url");
    let e = &errors(&text)[0];
    assert_eq!(
        e.to_string(),
        "t.yaml:6:10 (document 0): spec.mcp.url: invalid URL `not a url`: relative URL without a base"
    );
}

#[test]
fn examples_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let sources =
            switchboard_config::read_sources(std::slice::from_ref(&path)).expect("readable");
        if let Err(d) = load_sources(&sources) {
            panic!("{} is invalid:\n{d}", path.display());
        }
        seen += 1;
    }
    assert!(seen >= 2, "expected the quickstart and policies examples");
    // And together, as `switchboard apply -f examples/` would send them.
    let all = switchboard_config::read_sources(&[dir]).expect("readable");
    if let Err(d) = load_sources(&all) {
        panic!("examples/ as a whole is invalid:\n{d}");
    }
}

#[test]
fn empty_documents_are_ignored_but_bad_health_settings_are_not() {
    let text = "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: a\nspec:\n  mcp:\n    url: http://127.0.0.1:1/mcp\n---\n\n---\n~\n";
    let set = load_sources(&[Source {
        name: "t.yaml".into(),
        text: text.into(),
    }])
    .unwrap_or_else(|d| panic!("trailing empty documents are fine:\n{d}"));
    assert_eq!(set.len(), 1);
    one_error(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: a\nspec:\n  mcp:\n    url: http://127.0.0.1:1/mcp\n  health:\n    unhealthyThreshold: 0\n",
        0,
        9,
        "spec.health.unhealthyThreshold",
        "at least 1",
    );
}

#[test]
fn stdio_settings_are_checked() {
    let doc = |stdio: &str| {
        format!(
            "kind: Upstream\nmetadata:\n  name: local\nspec:\n  stdio:\n    command: srv\n{stdio}"
        )
    };
    one_error(
        &doc("    maxSessions: 4\n"),
        0,
        6,
        "spec.stdio",
        "perSession` only",
    );
    one_error(
        &doc("    isolation: perSession\n    maxSessions: 0\n"),
        0,
        8,
        "spec.stdio.maxSessions",
        "at least 2",
    );
    one_error(
        &doc("    secretEnv:\n      TOKEN: {secret: missing, key: token}\n"),
        0,
        8,
        "spec.stdio.secretEnv.TOKEN.secret",
        "Secret `missing` does not exist",
    );
    one_error(
        &doc("    isolation: everyone\n"),
        0,
        7,
        "spec.stdio.isolation",
        "unknown variant",
    );
}

#[test]
fn tls_blocks_that_cannot_work_are_named() {
    let https = |tls: &str| {
        format!("kind: Upstream\nmetadata:\n  name: secure\nspec:\n  mcp:\n    url: https://mcp.example/mcp\n  tls:\n{tls}")
    };
    one_error(
        &https("    caCert: hello\n"),
        0,
        8,
        "spec.tls.caCert",
        "no `-----BEGIN CERTIFICATE-----` block",
    );
    one_error(
        &https("    serverName: \"not a name\"\n"),
        0,
        8,
        "spec.tls.serverName",
        "neither a DNS name nor an IP address",
    );
    let errs = errors(&https(
        "    clientCert: {secret: s, key: crt}\n---\nkind: Secret\nmetadata:\n  name: s\nspec:\n  data:\n    crt: x\n",
    ));
    assert!(
        errs.iter()
            .any(|e| e.field == "spec.tls"
                && e.message.contains("clientCert and clientKey together")),
        "{errs:#?}"
    );
    let plain = UPSTREAM.to_string() + "  tls:\n    serverName: mcp.example\n";
    one_error(&plain, 0, 8, "spec.tls", "https URLs only");
}

#[test]
fn a_listener_secret_needs_a_certificate_and_key() {
    let e = one_error(
        "kind: Secret\nmetadata:\n  name: edge\nspec:\n  servedBy:\n    clusters: [eu]\n  data:\n    tls.crt: x\n",
        0,
        6,
        "spec.servedBy",
        "needs `tls.key`",
    );
    assert!(e.message.contains("PEM"), "{e}");
}

#[test]
fn oversized_and_overnested_sources_are_refused_before_parsing() {
    let big = "#".repeat(switchboard_config::parse::MAX_SOURCE_BYTES + 1);
    let (parsed, errors) = switchboard_config::parse_source("big.yaml", &big);
    assert!(parsed.is_empty());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.contains("at most 16777216 are read"),
        "{}",
        errors[0]
    );
    // A document nested past the limit inside a valid resource.
    let deep = format!(
        "apiVersion: switchboard.dev/v1\nkind: Prompt\nmetadata:\n  name: p\nspec:\n  template: x\n  description: {}{}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    let (parsed, errors) = switchboard_config::parse_source("deep.yaml", &deep);
    assert!(parsed.is_empty());
    assert_eq!(
        (errors[0].line, errors[0].column),
        (Some(7), Some(15 + 63)),
        "{}",
        errors[0]
    );
}

const REST: &str = "\
kind: Upstream
metadata:
  name: api
spec:
  rest:
    baseUrl: http://127.0.0.1:8080
    tools:
      - name: get_user
        method: GET
        path: /users/{id}
        inputSchema:
          type: object
          properties:
            id: {type: string}
            verbose: {type: boolean}
          required: [id]
        query: {v: verbose}
        filter: .name
";

#[test]
fn rest_tools_are_checked_where_they_are_declared() {
    assert!(errors_in_ok(REST), "the example REST upstream is valid");
    let text = REST.replace("/users/{id}", "/users/{uid}");
    one_error(
        &text,
        0,
        10,
        "spec.rest.tools[0].path",
        "`{uid}` is not a property of inputSchema",
    );
    let text = REST.replace("{v: verbose}", "{v: verbosity}");
    one_error(
        &text,
        0,
        17,
        "spec.rest.tools[0].query.v",
        "argument `verbosity`",
    );
    let text = REST.replace("filter: .name", "filter: '.name | {'");
    one_error(
        &text,
        0,
        18,
        "spec.rest.tools[0].filter",
        "invalid jq filter",
    );
    let text = REST.replace("verbose: {type: boolean}", "verbose: {type: bool}");
    one_error(
        &text,
        0,
        15,
        "spec.rest.tools[0].inputSchema.properties.verbose.type",
        "invalid JSON Schema",
    );
    let text = REST.replace("method: GET", "method: FETCH");
    let e = errors(&text);
    assert!(e[0].message.contains("unknown variant `FETCH`"), "{}", e[0]);
    let text = REST.replace("required: [id]", "required: []");
    one_error(
        &text,
        0,
        16,
        "spec.rest.tools[0].inputSchema.required",
        "must be a required argument",
    );
}

const OPENAPI: &str = "\
kind: Upstream
metadata:
  name: api
spec:
  openapi:
    baseUrl: http://127.0.0.1:8080
    spec:
      openapi: 3.1.0
      info: {title: t, version: '1'}
      paths:
        /pets:
          get:
            operationId: listPets
            parameters:
              - $ref: '#/components/parameters/Nope'
";

#[test]
fn inline_openapi_documents_are_converted_at_apply_naming_the_place() {
    let e = one_error(
        OPENAPI,
        0,
        15,
        "spec.openapi.spec.paths./pets.get.parameters[0]",
        "points at nothing",
    );
    assert!(e.message.contains("#/components/parameters/Nope"), "{e}");
    let fixed = OPENAPI.replace(
        "              - $ref: '#/components/parameters/Nope'\n",
        "              - {name: limit, in: query, schema: {type: integer}}\n",
    );
    assert!(errors_in_ok(&fixed), "{fixed}");
    let neither =
        "kind: Upstream\nmetadata:\n  name: api\nspec:\n  openapi:\n    baseUrl: http://h\n";
    one_error(neither, 0, 6, "spec.openapi", "set specUrl");
}

fn errors_in_ok(text: &str) -> bool {
    load_sources(&[Source {
        name: "t.yaml".into(),
        text: text.into(),
    }])
    .is_ok()
}

#[test]
fn a_passthrough_server_proxies_only_mcp_upstreams() {
    let text = format!(
        "{REST}---\nkind: VirtualServer\nmetadata:\n  name: vs\nspec:\n  passthrough: api\n"
    );
    one_error(&text, 1, 24, "spec.passthrough", "is of kind `rest`");
}
