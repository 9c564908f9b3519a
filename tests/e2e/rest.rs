//! REST APIs as MCP tools, with real services we did not write: httpbin (PyPI) behind
//! declared `rest` tools, a FastAPI app's generated OpenAPI 3.1 document, and the Petstore
//! 3.0 document (npm `@readme/oas-examples`) served by Prism's mock server (npm
//! `@stoplight/prism-cli`). Clients are the official PyPI `mcp` SDK's.

use crate::common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_testkit::{free_port, wait_for_http_ok, ManagedProcess};

/// httpbin on a reserved port: (process, base URL).
async fn httpbin() -> (ManagedProcess, String) {
    let port = free_port();
    let mut cmd = Command::new(switchboard_testkit::python_bin().expect("python"));
    cmd.args(["-m", "httpbin.core", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string());
    let p = ManagedProcess::spawn(cmd).expect("httpbin");
    let base = format!("http://127.0.0.1:{port}");
    if let Err(e) = wait_for_http_ok(&format!("{base}/get"), WAIT).await {
        panic!("httpbin did not start: {e}\n{}", p.log_tail(20));
    }
    (p, base)
}

/// Calls tools through `url` with the SDK client: its view of the tools and each result.
async fn sdk_calls(url: &str, calls: Value) -> Value {
    python_peer("py_tool_calls.py", &[url, &calls.to_string()]).await
}

/// The `switchboard_upstream_retries_total` count for `upstream` on the data plane.
async fn retries(base: &str, upstream: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics");
    let series = format!("switchboard_upstream_retries_total{{upstream=\"{upstream}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

/// Seals the Secrets these tests store.
const KEY: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=";

const SECRET: &str = "apiVersion: switchboard.dev/v1\nkind: Secret\nmetadata:\n  name: api\nspec:\n  data:\n    token: s3cr3t-token\n    key: petstore-key\n    client: client-pw\n---\n";

const HTTPBIN_TOOLS: &str = r#"
    tools:
      - name: echo_get
        description: Echoes a GET, reshaped by a jq filter.
        method: GET
        path: /anything/{item}
        inputSchema:
          type: object
          properties:
            item: {type: string}
            color: {type: string}
            count: {type: integer, minimum: 1}
            trace: {type: string}
          required: [item]
        query: {colour: color}
        headers: {X-Trace: trace}
        filter: '{path: (.url | sub("^https?://[^/]+"; "")), method, colour: .args.colour, count: .args.count, trace: .headers["X-Trace"]}'
        outputSchema:
          type: object
          properties: {path: {type: string}, method: {type: string}}
          required: [path, method]
      - name: echo_post
        method: POST
        path: /anything
        inputSchema:
          type: object
          properties: {name: {type: string}, tags: {type: array, items: {type: string}}}
          required: [name]
        filter: '{method, json}'
      - name: status
        method: GET
        path: /status/{code}
        inputSchema: {type: object, properties: {code: {type: integer}}, required: [code]}
      - name: post_status
        method: POST
        path: /status/{code}
        inputSchema: {type: object, properties: {code: {type: integer}}, required: [code]}
      - name: slow
        method: GET
        path: /delay/{seconds}
        timeout: 1s
        inputSchema: {type: object, properties: {seconds: {type: integer}}, required: [seconds]}
      - name: whoami
        method: GET
        path: /bearer
        inputSchema: {type: object}
      - name: image
        method: GET
        path: /image/png
        inputSchema: {type: object}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_rest_tools_call_httpbin_through_a_virtual_server() {
    let (_httpbin, base) = httpbin().await;
    let (_cp, admin, _data) = control_plane_with_key(None, Some(KEY)).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let dp_base = url.trim_end_matches("/servers/demo/mcp").to_string();
    let upstream = format!(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: httpbin\nspec:\n  rest:\n    baseUrl: {base}\n{HTTPBIN_TOOLS}  auth:\n    bearer: {{secret: api, key: token}}\n  retries: {{backoff: 20ms}}\n---\n"
    );
    apply(
        &admin,
        &format!("{SECRET}{upstream}{}", server(&[("httpbin", "")])),
    );
    wait_for_tools(&url, WAIT, "httpbin tools", |t| t.len() == 7).await;

    let before_get = retries(&dp_base, "httpbin").await;
    let got = sdk_calls(
        &url,
        json!([
            ["echo_get", {"item": "a b/c", "color": "red", "count": 3, "trace": "t-1"}],
            ["echo_post", {"name": "pen", "tags": ["x"]}],
            ["status", {"code": 418}],
            ["whoami", {}],
            ["image", {}],
            ["echo_get", {"item": "x", "count": "many"}],
            ["echo_get", {"color": "red"}],
        ]),
    )
    .await;
    let tools = &got["tools"];
    assert_eq!(
        tools["echo_get"]["annotations"]["readOnlyHint"],
        json!(true),
        "{tools}"
    );
    assert_eq!(
        tools["echo_post"]["annotations"]["readOnlyHint"],
        json!(false)
    );
    assert_eq!(
        tools["echo_get"]["inputSchema"]["required"],
        json!(["item"])
    );
    let calls = got["calls"].as_array().expect("calls");
    // Path (one encoded segment: httpbin echoes it with `%2F` decoded), query, header,
    // filter; structured content the SDK checked against the output schema.
    assert_eq!(
        calls[0]["structured"],
        json!({"path": "/anything/a%20b/c?colour=red&count=3", "method": "GET", "colour": "red", "count": "3", "trace": "t-1"}),
        "{}",
        calls[0]
    );
    // Unplaced arguments of a POST are its JSON body.
    assert_eq!(
        calls[1]["structured"],
        json!({"method": "POST", "json": {"name": "pen", "tags": ["x"]}}),
        "{}",
        calls[1]
    );
    // An HTTP error is a tool error carrying the status.
    assert_eq!(calls[2]["isError"], json!(true), "{}", calls[2]);
    assert!(
        calls[2]["text"][0]
            .as_str()
            .is_some_and(|t| t.starts_with("HTTP 418")),
        "{}",
        calls[2]
    );
    // The upstream's credentials (a bearer token from a Secret) reach the API.
    assert_eq!(
        calls[3]["structured"]["authenticated"],
        json!(true),
        "{}",
        calls[3]
    );
    assert_eq!(calls[4]["types"], json!(["image"]), "{}", calls[4]);
    // Arguments that break the schema are refused with -32602 naming the field.
    assert_eq!(calls[5]["error"]["code"], json!(-32602), "{}", calls[5]);
    let message = calls[5]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("/count") && message.contains("integer"),
        "{message}"
    );
    assert_eq!(calls[6]["error"]["code"], json!(-32602), "{}", calls[6]);
    assert!(calls[6]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("\"item\" is a required property"));
    assert_eq!(
        retries(&dp_base, "httpbin").await,
        before_get,
        "nothing above was retried"
    );

    // 503: a GET is retried (twice, then the error); a POST is not.
    let got = sdk_calls(&url, json!([["status", {"code": 503}]])).await;
    let failed = &got["calls"][0];
    assert!(failed.to_string().contains("503"), "{failed}");
    assert_eq!(retries(&dp_base, "httpbin").await, before_get + 2);
    let got = sdk_calls(&url, json!([["post_status", {"code": 503}]])).await;
    assert!(
        got["calls"][0].to_string().contains("503"),
        "{}",
        got["calls"][0]
    );
    assert_eq!(
        retries(&dp_base, "httpbin").await,
        before_get + 2,
        "a POST is never repeated"
    );

    // The tool's own timeout cuts a slow answer (and a timed-out GET is retried within it).
    let started = Instant::now();
    let got = sdk_calls(&url, json!([["slow", {"seconds": 5}]])).await;
    let took = started.elapsed();
    let cut = got["calls"][0].to_string();
    assert!(cut.contains("did not answer within 1s"), "{cut}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fastapi_apps_openapi_31_document_becomes_tools_that_reach_it() {
    const TOKEN: &str = "s3cr3t-token";
    let (_app, base) = peer("rest_api.py", &[TOKEN]).await;
    // The app's token comes from an OAuth2 client-credentials grant.
    let (_tokens, token_url) = peer("token_server.py", &["switchboard", "client-pw", TOKEN]).await;
    let (_cp, admin, _data) = control_plane_with_key(None, Some(KEY)).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let upstream = format!(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: inventory\nspec:\n  openapi:\n    specUrl: {base}/openapi.json\n    baseUrl: {base}\n  auth:\n    oauth2:\n      tokenUrl: {token_url}/token\n      clientId: switchboard\n      clientSecret: {{secret: api, key: client}}\n---\n"
    );
    apply(
        &admin,
        &format!("{SECRET}{upstream}{}", server(&[("inventory", "inv_")])),
    );
    wait_for_tools(&url, WAIT, "inventory tools", |t| t.len() == 3).await;
    let status = upstream_status(&admin, "inventory");
    println!("status: {status}");

    let stats = || async {
        reqwest::get(format!("{base}/stats"))
            .await
            .expect("stats")
            .json::<Value>()
            .await
            .expect("JSON")
    };
    let read = "inv_read_item_items__item_id__get";
    let create = "inv_create_item_items_post";
    let got = sdk_calls(
        &url,
        json!([
            [read, {"item_id": 5, "q": "blue", "x-request-id": "r-9"}],
            [create, {"name": "pen", "price": 1.5, "tags": ["office"]}],
            ["inv_countdown_countdown_get", {"n": 3}],
        ]),
    )
    .await;
    let tools = &got["tools"];
    assert_eq!(
        tools[read]["annotations"]["readOnlyHint"],
        json!(true),
        "{tools}"
    );
    assert_eq!(
        tools[read]["inputSchema"]["properties"]["item_id"]["type"],
        json!("integer")
    );
    assert_eq!(
        tools[create]["inputSchema"]["required"],
        json!(["name", "price"]),
        "{tools}"
    );
    assert_eq!(tools[create]["description"], json!("Create an item"));
    let calls = &got["calls"];
    assert_eq!(
        calls[0]["structured"],
        json!({"item_id": 5, "q": "blue", "request_id": "r-9"}),
        "{}",
        calls[0]
    );
    assert_eq!(
        calls[1]["structured"],
        json!({"name": "pen", "price": 1.5, "tags": ["office"], "id": 7, "owner": "bearer"}),
        "{}",
        calls[1]
    );
    let issued: Value = reqwest::get(format!("{token_url}/count"))
        .await
        .expect("count")
        .json()
        .await
        .expect("JSON");
    assert_eq!(issued["issued"], json!(1), "one grant, its token reused");
    // An SSE answer: each event reached the client as progress, then the result.
    assert_eq!(calls[2]["progress"], json!(["3", "2", "1"]), "{}", calls[2]);
    assert_eq!(calls[2]["text"], json!(["3\n2\n1"]), "{}", calls[2]);
    assert_eq!(stats().await["last"], json!("GET /countdown?n=3"));

    // A call whose arguments break the schema never reaches the app.
    let before = stats().await["requests"].clone();
    let got = sdk_calls(
        &url,
        json!([[create, {"name": "pen", "price": "cheap"}], [read, {"q": "x"}]]),
    )
    .await;
    for call in got["calls"].as_array().expect("calls") {
        assert_eq!(call["error"]["code"], json!(-32602), "{call}");
    }
    assert!(got["calls"][0]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("/price"));
    assert_eq!(
        stats().await["requests"],
        before,
        "a refused call reached the app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_petstore_document_served_by_prism_becomes_tools_whose_calls_succeed() {
    let spec = switchboard_testkit::npm_module_dir("@readme/oas-examples")
        .expect("oas-examples installed")
        .join("3.0/json/petstore.json");
    let prism = switchboard_testkit::npm_module_dir("@stoplight/prism-cli")
        .expect("prism installed")
        .join("dist/index.js");
    let port = free_port();
    let mut cmd = Command::new(switchboard_testkit::node22_bin().expect("Node 22"));
    cmd.arg(&prism)
        .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg(&spec);
    let prism = ManagedProcess::spawn(cmd).expect("prism");
    let mock = format!("http://127.0.0.1:{port}");
    if let Err(e) = switchboard_testkit::wait_for_tcp(&format!("127.0.0.1:{port}"), WAIT).await {
        panic!("prism did not start: {e}\n{}", prism.log_tail(20));
    }
    let (_cp, admin, _data) = control_plane_with_key(None, Some(KEY)).await;
    let (_dp, url, _state) = data_plane(admin.trim_start_matches("http://")).await;
    let upstream = format!(
        "apiVersion: switchboard.dev/v1\nkind: Upstream\nmetadata:\n  name: petstore\nspec:\n  openapi:\n    specUrl: file://{}\n    baseUrl: {mock}\n    exclude:\n      operations: [uploadFile]\n  auth:\n    bearer: {{secret: api, key: token}}\n    headers:\n      api_key: {{secret: api, key: key}}\n---\n",
        spec.display()
    );
    apply(
        &admin,
        &format!("{SECRET}{upstream}{}", server(&[("petstore", "")])),
    );
    wait_for_tools(&url, WAIT, "petstore tools", |t| {
        t.iter().any(|n| n == "getPetById")
    })
    .await;
    let got = sdk_calls(
        &url,
        json!([
            ["getPetById", {"petId": 1}],
            ["findPetsByStatus", {"status": ["available", "pending"]}],
            ["placeOrder", {"petId": 1, "quantity": 2, "status": "placed"}],
            ["addPet", {"name": "doggie", "photoUrls": ["https://example.com/p.png"]}],
            ["getPetById", {"petId": "one"}],
        ]),
    )
    .await;
    let tools = got["tools"].as_object().expect("tools");
    assert!(!tools.contains_key("uploadFile"), "excluded");
    assert!(
        tools.contains_key("placeOrder") && tools.contains_key("loginUser"),
        "{:?}",
        tools.keys()
    );
    assert_eq!(
        tools["deletePet"]["annotations"]["idempotentHint"],
        json!(true)
    );
    let calls = &got["calls"];
    assert_eq!(calls[0]["isError"], json!(false), "{}", calls[0]);
    assert!(calls[0]["structured"]["name"].is_string(), "{}", calls[0]);
    assert_eq!(calls[1]["isError"], json!(false), "{}", calls[1]);
    let pets: Value =
        serde_json::from_str(calls[1]["text"][0].as_str().unwrap_or("null")).expect("JSON text");
    assert!(pets.is_array(), "{pets}");
    // The order's fields were the tool's arguments, sent as its JSON body.
    assert_eq!(calls[2]["isError"], json!(false), "{}", calls[2]);
    assert!(
        calls[2]["structured"]["quantity"].is_number(),
        "{}",
        calls[2]
    );
    // The document gives addPet one answer, 405, which Prism sends: a tool error.
    assert_eq!(calls[3]["isError"], json!(true), "{}", calls[3]);
    assert!(calls[3]["text"][0]
        .as_str()
        .is_some_and(|t| t.starts_with("HTTP 405")));
    assert_eq!(calls[4]["error"]["code"], json!(-32602), "{}", calls[4]);
}
