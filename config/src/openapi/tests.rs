use super::*;
use crate::kinds::upstream::OperationFilter;

fn doc() -> Value {
    serde_yaml::from_str(
        r##"
openapi: 3.0.3
info: {title: shop, version: "1"}
servers: [{url: "/api/{v}", variables: {v: {default: v2}}}]
components:
  securitySchemes:
    key: {type: apiKey, in: query, name: api_key}
  parameters:
    Limit: {name: limit, in: query, schema: {type: integer, minimum: 1, exclusiveMinimum: true}}
  schemas:
    Category:
      type: object
      properties:
        name: {type: string, nullable: true}
        parent: {$ref: "#/components/schemas/Category"}
    Item:
      type: object
      required: [name]
      properties:
        name: {type: string, example: pen}
        category: {$ref: "#/components/schemas/Category"}
paths:
  /items/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
    get:
      operationId: getItem
      summary: One item
      tags: [items]
      parameters:
        - {name: X-Trace, in: header, schema: {type: string}}
        - {name: Authorization, in: header, schema: {type: string}}
      responses:
        "200":
          description: ok
          content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}
    put:
      tags: [admin]
      requestBody:
        required: true
        content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}
      responses: {"204": {description: done}}
  /items:
    get:
      operationId: list items!
      parameters: [{$ref: "#/components/parameters/Limit"}]
      responses: {"200": {description: ok, content: {application/json: {schema: {type: array, items: {type: string}}}}}}
    post:
      operationId: getItem
      requestBody:
        content: {application/json: {schema: {type: array, items: {type: string}}}}
      responses: {"201": {description: made}}
  /upload:
    post:
      requestBody:
        content: {image/png: {schema: {type: string, format: binary}}}
      responses: {"200": {description: ok}}
"##,
    )
    .expect("YAML")
}

fn by_name<'a>(c: &'a Converted, name: &str) -> &'a Value {
    c.tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tool {name} in {:?}", c.tools))
}

#[test]
fn operations_become_tools_with_their_arguments_and_calls() {
    let api = OpenApiUpstream::default();
    let c = convert(&doc(), &api, Some("http://127.0.0.1:9/spec/openapi.yaml")).expect("converts");
    assert_eq!(c.bindings.base_url, "http://127.0.0.1:9/api/v2");
    assert_eq!(c.bindings.query_credentials, vec!["api_key".to_string()]);
    assert_eq!(c.version, "openapi 3.0.3");
    let names: Vec<&str> = c.tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        ["list_items", "getItem", "getItem_2", "put_items__id"]
    );
    assert_eq!(c.skipped.len(), 1, "{:?}", c.skipped);

    // Paths in order: POST /items took the duplicate operationId first.
    let get = by_name(&c, "getItem_2");
    assert_eq!(get["annotations"]["readOnlyHint"], json!(true));
    assert_eq!(get["description"], json!("One item"));
    let props = &get["inputSchema"]["properties"];
    assert_eq!(props["id"], json!({"type": "integer"}));
    assert!(
        props.get("Authorization").is_none(),
        "Authorization is the upstream's credential"
    );
    assert_eq!(get["inputSchema"]["required"], json!(["id"]));
    let out = &get["outputSchema"];
    assert_eq!(out["properties"]["name"], json!({"type": "string"}));
    assert_eq!(
        out["properties"]["category"]["properties"]["name"],
        json!({"type": ["string", "null"]})
    );
    let call = &c.bindings.calls["getItem_2"];
    assert_eq!(call.headers["X-Trace"], "X-Trace");
    assert_eq!(call.path, "/items/{id}");

    let list = by_name(&c, "list_items");
    assert_eq!(
        list["inputSchema"]["properties"]["limit"],
        json!({"type": "integer", "exclusiveMinimum": 1})
    );
    assert!(
        list.get("outputSchema").is_none(),
        "arrays are not structured content"
    );
    assert_eq!(c.bindings.calls["list_items"].query["limit"], "limit");

    // An object body's fields are arguments; other bodies are one `body` argument.
    let put = by_name(&c, "put_items__id");
    assert_eq!(put["annotations"]["idempotentHint"], json!(true));
    assert_eq!(put["inputSchema"]["required"], json!(["id", "name"]));
    assert!(put["inputSchema"]["properties"]["category"].is_object());
    assert_eq!(c.bindings.calls["put_items__id"].body, None);
    let post = by_name(&c, "getItem");
    assert_eq!(
        post["inputSchema"]["properties"]["body"]["type"],
        json!("array")
    );
    assert_eq!(c.bindings.calls["getItem"].body.as_deref(), Some("body"));
    for tool in &c.tools {
        crate::schema::Schema::compile(&tool["inputSchema"]).expect("every input schema compiles");
    }
}

#[test]
fn recursive_schemas_are_cut_where_they_recur() {
    let c = convert(&doc(), &OpenApiUpstream::default(), Some("http://h/x")).expect("converts");
    let mut depth = 0;
    let tool = by_name(&c, "getItem_2");
    let mut node = &tool["outputSchema"]["properties"]["category"];
    while let Some(parent) = node.pointer("/properties/parent") {
        depth += 1;
        node = parent;
    }
    // Category is expanded once; its `parent` (Category again) is where recursion is cut.
    assert_eq!(depth, 1, "expanded {depth} levels");
    assert!(
        node["description"]
            .as_str()
            .is_some_and(|d| d.contains("recursive")),
        "{node}"
    );
}

#[test]
fn include_and_exclude_pick_operations_by_tag_id_or_path() {
    let only = |include: OperationFilter, exclude: OperationFilter| {
        let api = OpenApiUpstream {
            include,
            exclude,
            base_url: Some("http://api.test/".into()),
            ..OpenApiUpstream::default()
        };
        let c = convert(&doc(), &api, None).expect("converts");
        assert_eq!(c.bindings.base_url, "http://api.test");
        c.tools
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let tags = OperationFilter {
        tags: vec!["items".into()],
        ..OperationFilter::default()
    };
    assert_eq!(only(tags, OperationFilter::default()), ["getItem"]);
    let paths = OperationFilter {
        paths: vec!["/items/*".into()],
        ..OperationFilter::default()
    };
    let admin = OperationFilter {
        tags: vec!["admin".into()],
        ..OperationFilter::default()
    };
    assert_eq!(only(paths, admin), ["getItem"]);
    let nothing = OperationFilter {
        operations: vec!["nope".into()],
        ..OperationFilter::default()
    };
    let api = OpenApiUpstream {
        include: nothing,
        base_url: Some("http://api.test".into()),
        ..OpenApiUpstream::default()
    };
    let err = convert(&doc(), &api, None).expect_err("nothing left");
    assert!(err.to_string().contains("include and exclude"), "{err}");
}

#[test]
fn unusable_documents_are_refused_naming_the_place() {
    let api = OpenApiUpstream::default();
    let err = convert(&json!({"swagger": "2.0"}), &api, None).expect_err("v2");
    assert!(err.to_string().contains("Swagger 2.0"), "{err}");
    let err =
        convert(&json!({"openapi": "3.1.0", "paths": {}}), &api, None).expect_err("no server");
    assert_eq!(err.at, "servers");
    let mut d = doc();
    d["paths"]["/items"]["get"]["parameters"] = json!([{"$ref": "#/components/parameters/Nope"}]);
    let err = convert(&d, &api, Some("http://h/")).expect_err("dangling ref");
    assert_eq!(err.at, "paths./items.get.parameters[0]");
    assert!(err.why.contains("points at nothing"), "{err}");
    let mut d = doc();
    d["paths"]["/items"]["get"]["parameters"] = json!([{"$ref": "other.yaml#/x"}]);
    let err = convert(&d, &api, Some("http://h/")).expect_err("remote ref");
    assert!(err.why.contains("outside the document"), "{err}");
    let mut d = doc();
    d["paths"]["/items"]["get"]["parameters"] = json!([{"in": "query"}]);
    let err = convert(&d, &api, Some("http://h/")).expect_err("no name");
    assert!(err.why.contains("`name` and `in`"), "{err}");
    let looped = json!({"openapi": "3.1.0", "servers": [{"url": "http://h"}],
        "components": {"parameters": {"a": {"$ref": "#/components/parameters/b"},
                                      "b": {"$ref": "#/components/parameters/a"}}},
        "paths": {"/x": {"get": {"parameters": [{"$ref": "#/components/parameters/a"}]}}}});
    let err = convert(&looped, &api, None).expect_err("loop");
    assert!(err.why.contains("a loop"), "{err}");
}

#[test]
fn names_data_and_servers_are_kept_where_the_document_puts_them() {
    let d: Value = serde_yaml::from_str(
        r##"
openapi: 3.0.3
info: {title: t, version: "1"}
servers: [{url: "http://main.test"}]
components:
  securitySchemes:
    key: {type: apiKey, in: query, name: apiKey}
paths:
  /things:
    servers: [{url: "http://things.test/v2"}]
    post:
      operationId: make
      parameters:
        - {name: Host, in: header, schema: {type: string}}
        - {name: "X Bad", in: header, schema: {type: string}}
      requestBody:
        content:
          application/vnd.api+json:
            schema:
              type: object
              properties:
                example: {type: string, default: {x-keep: 1}}
                x-tenant: {type: string, enum: [a, b]}
                nullable: {type: boolean}
  /files:
    get:
      operationId: file
      parameters: [{name: f, in: query, schema: {type: file}}]
    put:
      operationId: hosted
      parameters: [{name: Host, in: header, required: true, schema: {type: string}}]
"##,
    )
    .expect("YAML");
    let c = convert(&d, &OpenApiUpstream::default(), None).expect("converts");
    assert_eq!(c.bindings.query_credentials, vec!["apiKey".to_string()]);
    let make = by_name(&c, "make");
    let props = make["inputSchema"]["properties"]
        .as_object()
        .expect("props");
    let names: Vec<&String> = props.keys().collect();
    assert_eq!(names, ["example", "nullable", "x-tenant"], "{make}");
    assert_eq!(props["example"]["default"], json!({"x-keep": 1}));
    let call = &c.bindings.calls["make"];
    assert!(
        call.headers.is_empty(),
        "Host and invalid names are never parameters: {call:?}"
    );
    assert_eq!(
        call.content_type.as_deref(),
        Some("application/vnd.api+json")
    );
    assert_eq!(call.base_url.as_deref(), Some("http://things.test/v2"));
    assert_eq!(c.bindings.base_url, "http://main.test");
    assert_eq!(c.skipped.len(), 2, "{:?}", c.skipped);
    assert!(
        c.skipped.iter().any(|s| s.contains("input schema")),
        "{:?}",
        c.skipped
    );
    assert!(
        c.skipped.iter().any(|s| s.contains("`Host`")),
        "{:?}",
        c.skipped
    );
}

#[test]
fn references_that_multiply_are_bounded_across_the_document() {
    // One wide schema referenced by many parameters: each copy is small enough, all of
    // them together are not.
    let wide: Map<String, Value> = (0..5000)
        .map(|i| (format!("f{i}"), json!({"type": "string"})))
        .collect();
    let params: Vec<Value> = (0..300)
        .map(|i| json!({"name": format!("p{i}"), "in": "query", "schema": {"$ref": "#/components/schemas/Wide"}}))
        .collect();
    let d = json!({
        "openapi": "3.1.0",
        "servers": [{"url": "http://h"}],
        "components": {"schemas": {"Wide": {"type": "object", "properties": wide}}},
        "paths": {"/x": {"get": {"parameters": params}}},
    });
    let err = convert(&d, &OpenApiUpstream::default(), None).expect_err("too much");
    assert!(err.why.contains("more than 1000000 nodes"), "{err}");
}
