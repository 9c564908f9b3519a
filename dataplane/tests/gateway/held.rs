//! Held calls: a stateless client's call whose upstream asks it something comes back as an
//! `InputRequiredResult`; the retry with the answer and the handed-out state finishes the
//! very call the upstream is still running; a state the gateway never gave is refused.

use crate::harness::{federated, post, stateless, InProcessGateway};
use crate::upstream::RustUpstream;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstreams_question_holds_the_call_until_the_retry_answers_it() {
    let upstream = RustUpstream::start().await;
    let gateway = InProcessGateway::start(&federated(&upstream.url)).await;
    let url = gateway.url("demo");
    let (meta, headers) = stateless("tools/call", "rs_ask", json!({"elicitation": {}}));
    let call = |extra: Value| {
        let mut params = json!({"name": "rs_ask", "arguments": {}, "_meta": meta.clone()});
        if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": params})
    };

    let first = post(&url, &headers, &call(json!({}))).await;
    assert_eq!(first.status, 200, "{:?}", first.messages);
    let result = &first.last()["result"];
    assert_eq!(result["resultType"], "input_required", "{result}");
    let asked = result["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(asked.len(), 1, "{result}");
    let (key, question) = asked.iter().next().expect("one question");
    assert_eq!(question["method"], "elicitation/create", "{question}");
    assert_eq!(question["params"]["message"], "Which word?");
    let state = result["requestState"].as_str().expect("requestState");

    let answers = json!({key.clone(): {"action": "accept", "content": {"word": "tangerine"}}});
    let retried = post(
        &url,
        &headers,
        &call(json!({"requestState": state, "inputResponses": answers})),
    )
    .await;
    assert_eq!(retried.status, 200, "{:?}", retried.messages);
    let done = retried.last();
    assert_eq!(done["id"], 11);
    assert_eq!(
        done["result"]["content"][0]["text"],
        "the client said tangerine"
    );
    assert_eq!(done["result"]["resultType"], "complete");

    // The state is spent: a second retry with it names no call.
    let again = post(
        &url,
        &headers,
        &call(json!({"requestState": state, "inputResponses": answers})),
    )
    .await;
    assert_eq!(again.status, 400, "{:?}", again.messages);
    assert_eq!(again.last()["error"]["code"], -32602);
    assert!(again.last()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("requestState names no call"));
}
