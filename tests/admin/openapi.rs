//! The hand-kept OpenAPI document is checked against real responses: every documented GET
//! (and the writes) is called, and each body must validate against the schema the document
//! gives for that path, method and status.

use serde_json::{json, Value};

use crate::support::{Got, TestTollgate, Upstream};
use crate::{call, eventually, hit, start, ADMIN, READ};

/// The schema for `path`/`method`/`status`, as a standalone JSON Schema over the components.
fn schema_for(doc: &Value, path: &str, method: &str, status: u16) -> Value {
    let resp = &doc["paths"][path][method]["responses"][status.to_string()];
    let content = resp["content"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} {status} undocumented"));
    let (_, media) = content.iter().next().unwrap();
    let mut schema = media["schema"].clone();
    schema["components"] = doc["components"].clone();
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    schema
}

fn check(doc: &Value, path: &str, method: &str, got: &Got) {
    let schema = schema_for(doc, path, method, got.status.as_u16());
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let body = got.json();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {}: {errors:?}\n{body}",
        got.status
    );
}

async fn checked(
    t: &TestTollgate,
    doc: &Value,
    method: &str,
    path: &str,
    query: &str,
    token: &str,
    body: Option<Value>,
) -> Got {
    let got = call(t, method, &format!("{path}{query}"), token, body).await;
    let documented = path.split('?').next().unwrap();
    check(doc, documented, &method.to_lowercase(), &got);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_matches_real_responses() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let t = start(dir.path(), &up, "").await;
    let doc = call(&t, "GET", "/api/admin/openapi.json", READ, None)
        .await
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    for _ in 0..7 {
        hit(&t, "k").await;
    }
    let o = json!({"kind": "override", "key": "vip", "rule": "api", "limits": ["100/m"]});
    let c = "/api/admin/quotas/config";
    assert_eq!(
        checked(&t, &doc, "POST", c, "", ADMIN, Some(o.clone()))
            .await
            .status,
        201
    );
    assert_eq!(
        checked(&t, &doc, "POST", c, "", ADMIN, Some(o))
            .await
            .status,
        200
    );
    let bad = json!({"kind": "tier", "name": "t", "limits": {"nope": ["x"]}});
    assert_eq!(
        checked(&t, &doc, "POST", c, "", ADMIN, Some(bad))
            .await
            .status,
        422
    );
    assert_eq!(
        checked(&t, &doc, "POST", c, "", READ, Some(json!({})))
            .await
            .status,
        403
    );
    assert_eq!(checked(&t, &doc, "GET", c, "", "", None).await.status, 401);
    let listed = checked(&t, &doc, "GET", c, "", READ, None).await.json();
    assert_eq!(listed["overrides"].as_array().unwrap().len(), 1);
    let d = "/api/admin/quotas/config/{id}";
    let del = call(
        &t,
        "DELETE",
        "/api/admin/quotas/config/override%3Aapi%3Avip",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(del.status, 200);
    check(&doc, d, "delete", &del);
    let file_only = call(
        &t,
        "DELETE",
        "/api/admin/quotas/config/rule%3Aapi",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(file_only.status, 409);
    check(&doc, d, "delete", &file_only);
    let unknown = call(
        &t,
        "DELETE",
        "/api/admin/quotas/config/rule%3Anope",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
    check(&doc, d, "delete", &unknown);

    let u = "/api/admin/quotas/usage";
    assert_eq!(
        checked(&t, &doc, "GET", u, "?top=5", READ, None)
            .await
            .json()["total"],
        1
    );
    assert_eq!(
        checked(&t, &doc, "GET", u, "?limit=nope", READ, None)
            .await
            .status,
        400
    );
    eventually("violations stored", || async {
        let v = call(&t, "GET", "/api/admin/quotas/violations", READ, None)
            .await
            .json();
        !v["items"].as_array().unwrap().is_empty()
    })
    .await;
    let v = checked(
        &t,
        &doc,
        "GET",
        "/api/admin/quotas/violations",
        "?key=k",
        READ,
        None,
    )
    .await;
    assert_eq!(v.json()["items"][0]["count"], 2);
    assert_eq!(
        checked(
            &t,
            &doc,
            "GET",
            "/api/admin/quotas/violations",
            "?shadow=maybe",
            READ,
            None,
        )
        .await
        .status,
        400
    );
    let a = checked(
        &t,
        &doc,
        "GET",
        "/api/admin/quotas/analytics",
        "?bucket=1m",
        READ,
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        checked(
            &t,
            &doc,
            "GET",
            "/api/admin/quotas/analytics",
            "?bucket=1s",
            READ,
            None,
        )
        .await
        .status,
        400
    );
    let r = checked(
        &t,
        &doc,
        "POST",
        "/api/admin/quotas/reset",
        "",
        ADMIN,
        Some(json!({"key": "k"})),
    )
    .await;
    assert_eq!(r.json()["reset"], 1);
    assert_eq!(
        checked(
            &t,
            &doc,
            "POST",
            "/api/admin/quotas/reset",
            "",
            ADMIN,
            Some(json!({"key": "k", "rule": "x"})),
        )
        .await
        .status,
        404
    );
    assert_eq!(
        checked(&t, &doc, "GET", "/api/admin/quotas/alerts", "", READ, None)
            .await
            .status,
        200
    );
    assert_eq!(
        checked(&t, &doc, "GET", "/api/ws/health", "", READ, None)
            .await
            .status,
        200
    );
    t.stop().await;
}
