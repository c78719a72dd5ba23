//! Auth, roles and every REST endpoint over real HTTP.

use serde_json::json;

use crate::support::{self, Upstream};
use crate::{call, eventually, hit, start, ADMIN, READ};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_and_open_probes() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let t = start(dir.path(), &up, "").await;
    for path in ["/live", "/ready", "/health", "/metrics"] {
        assert_eq!(
            call(&t, "GET", path, "", None).await.status,
            200,
            "{path} is open"
        );
    }
    let none = call(&t, "GET", "/api/admin/quotas/config", "", None).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("content-type"),
        Some("application/problem+json")
    );
    assert!(none
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    assert!(none.json()["detail"]
        .as_str()
        .unwrap()
        .contains("bearer token"));
    let wrong = call(
        &t,
        "GET",
        "/api/admin/quotas/config",
        "admin-token-0123456789abcdeX",
        None,
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.text().contains("abcdeX"), "a token is never echoed");
    for path in [
        "/api/admin/quotas/config",
        "/api/admin/quotas/usage",
        "/api/admin/quotas/violations",
        "/api/admin/quotas/analytics",
        "/api/admin/quotas/alerts",
        "/api/ws/health",
        "/api/admin/openapi.json",
    ] {
        assert_eq!(
            call(&t, "GET", path, READ, None).await.status,
            200,
            "read token on {path}"
        );
        assert_eq!(
            call(&t, "GET", path, ADMIN, None).await.status,
            200,
            "admin token on {path}"
        );
        assert_eq!(
            call(&t, "GET", path, "", None).await.status,
            401,
            "no token on {path}"
        );
    }
    let body = json!({"kind": "override", "key": "vip", "rule": "api", "limits": ["100/m"]});
    let read_write = call(
        &t,
        "POST",
        "/api/admin/quotas/config",
        READ,
        Some(body.clone()),
    )
    .await;
    assert_eq!(read_write.status, 403);
    assert_eq!(
        call(
            &t,
            "POST",
            "/api/admin/quotas/reset",
            READ,
            Some(json!({"key": "a"}))
        )
        .await
        .status,
        403
    );
    assert_eq!(
        call(
            &t,
            "DELETE",
            "/api/admin/quotas/config/rule%3Aapi",
            READ,
            None
        )
        .await
        .status,
        403
    );
    assert_eq!(
        call(&t, "POST", "/api/admin/quotas/config", ADMIN, Some(body))
            .await
            .status,
        201
    );
    assert_eq!(
        call(&t, "GET", "/api/admin/quotas/nope", READ, None)
            .await
            .status,
        404
    );
    assert_eq!(
        call(&t, "PUT", "/api/admin/quotas/usage", ADMIN, None)
            .await
            .status,
        405
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_the_read_token() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let t = start(dir.path(), &up, "metrics_require_token = true").await;
    assert_eq!(call(&t, "GET", "/metrics", "", None).await.status, 401);
    let m = call(&t, "GET", "/metrics", READ, None).await;
    assert_eq!(m.status, 200);
    assert!(m.text().contains("tollgate_ready 1"));
    assert_eq!(call(&t, "GET", "/live", "", None).await.status, 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_live_validate_like_the_file_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let t = start(dir.path(), &up, "").await;
    let listed = call(&t, "GET", "/api/admin/quotas/config", READ, None)
        .await
        .json();
    assert_eq!(listed["rules"][0]["id"], "rule:api");
    assert_eq!(listed["rules"][0]["source"], "file");
    assert_eq!(listed["rules"][0]["routes"], json!(["default"]));

    for _ in 0..5 {
        assert_eq!(hit(&t, "alice").await, 200);
    }
    assert_eq!(hit(&t, "alice").await, 429);
    // Raise the limit: the same counters, now under 10/m, admit the next request at once.
    let raise = json!({"kind": "rule", "name": "api", "key": "header:x-user", "limits": ["10/m"]});
    let r = call(&t, "POST", "/api/admin/quotas/config", ADMIN, Some(raise)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["created"], false);
    assert_eq!(r.json()["persisted"], true);
    assert_eq!(
        hit(&t, "alice").await,
        200,
        "a raised limit takes effect on live counters"
    );
    let listed = call(&t, "GET", "/api/admin/quotas/config", READ, None)
        .await
        .json();
    assert_eq!(listed["rules"][0]["source"], "api");
    assert_eq!(listed["rules"][0]["limits"], json!(["10/m"]));

    // Validated exactly like the file: field names are the body's.
    let bad = json!({"kind": "rule", "name": "api", "key": "header:x-user", "limits": ["ten/m"]});
    let r = call(&t, "POST", "/api/admin/quotas/config", ADMIN, Some(bad)).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        r.json()["errors"][0]["field"],
        "rule.limits[0]",
        "{}",
        r.text()
    );
    let unknown = json!({"kind": "override", "key": "k", "rule": "nope", "limits": ["1/s"]});
    let r = call(&t, "POST", "/api/admin/quotas/config", ADMIN, Some(unknown)).await;
    assert_eq!(
        r.json()["errors"][0]["field"],
        "override.rule",
        "{}",
        r.text()
    );
    let typo = json!({"kind": "rule", "name": "x", "key": "ip", "limitz": ["1/s"]});
    assert_eq!(
        call(&t, "POST", "/api/admin/quotas/config", ADMIN, Some(typo))
            .await
            .status,
        422
    );
    let not_json = crate::support::send(
        &crate::support::h1_client(),
        "POST",
        &t.admin_url("/api/admin/quotas/config"),
        &[("authorization", &format!("Bearer {ADMIN}"))],
        crate::support::full("{"),
    )
    .await;
    assert_eq!(not_json.status, 400);
    assert_eq!(
        hit(&t, "alice").await,
        200,
        "a rejected change changed nothing"
    );

    // A new rule attached to the route through the API, a tier and an override of it.
    let tier = json!({"kind": "tier", "name": "gold", "limits": {"api": ["1000/m"]}});
    assert_eq!(
        call(&t, "POST", "/api/admin/quotas/config", ADMIN, Some(tier))
            .await
            .status,
        201
    );
    let o = json!({"kind": "override", "key": "bob", "rule": "api", "tier": "gold"});
    assert_eq!(
        call(&t, "POST", "/api/admin/quotas/config", ADMIN, Some(o))
            .await
            .status,
        201
    );
    for _ in 0..20 {
        assert_eq!(hit(&t, "bob").await, 200, "bob is gold");
    }
    let strict = json!({"kind": "rule", "name": "burst", "key": "header:x-user", "limits": ["1/s"], "routes": ["default"]});
    assert_eq!(
        call(&t, "POST", "/api/admin/quotas/config", ADMIN, Some(strict))
            .await
            .status,
        201
    );
    assert_eq!(hit(&t, "carol").await, 200);
    assert_eq!(
        hit(&t, "carol").await,
        429,
        "the API rule is checked on the route"
    );

    // Deletes: an API entry goes; a file entry cannot; an unknown id is 404.
    let r = call(
        &t,
        "DELETE",
        "/api/admin/quotas/config/rule%3Aburst",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        hit(&t, "carol").await,
        200,
        "the deleted rule no longer applies"
    );
    let r = call(
        &t,
        "DELETE",
        "/api/admin/quotas/config/rule%3Aapi",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "the API version of a file rule can go: {}",
        r.text()
    );
    assert_eq!(hit(&t, "alice").await, 429, "back to the file's 5/m");
    assert_eq!(
        call(
            &t,
            "DELETE",
            "/api/admin/quotas/config/rule%3Aapi",
            ADMIN,
            None
        )
        .await
        .status,
        409
    );
    assert_eq!(
        call(
            &t,
            "DELETE",
            "/api/admin/quotas/config/tier%3Anope",
            ADMIN,
            None
        )
        .await
        .status,
        404
    );
    // The tier is still used by bob's override: deleting it would make the config invalid.
    assert_eq!(
        call(
            &t,
            "DELETE",
            "/api/admin/quotas/config/tier%3Agold",
            ADMIN,
            None
        )
        .await
        .status,
        422
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let t = start(dir.path(), &up, "").await;
    let o = json!({"kind": "override", "key": "dave", "rule": "api", "limits": ["1/m"]});
    assert_eq!(
        call(&t, "POST", "/api/admin/quotas/config", ADMIN, Some(o))
            .await
            .status,
        201
    );
    t.stop().await;

    let t = start(dir.path(), &up, "").await;
    let listed = call(&t, "GET", "/api/admin/quotas/config", READ, None)
        .await
        .json();
    assert_eq!(
        listed["overrides"][0]["id"], "override:api:dave",
        "{listed}"
    );
    assert_eq!(listed["overrides"][0]["source"], "api");
    assert_eq!(hit(&t, "dave").await, 200);
    assert_eq!(
        hit(&t, "dave").await,
        429,
        "the stored override is in force after the restart"
    );
    assert_eq!(hit(&t, "erin").await, 200);
    assert_eq!(hit(&t, "erin").await, 200, "others keep the file's 5/m");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_violations_analytics_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let t = start(dir.path(), &up, "").await;
    for (user, n) in [("k-1", 7), ("k-2", 2), ("other", 1)] {
        for _ in 0..n {
            hit(&t, user).await;
        }
    }
    let u = call(&t, "GET", "/api/admin/quotas/usage?prefix=k-", READ, None)
        .await
        .json();
    assert_eq!(u["total"], 2, "{u}");
    assert_eq!(u["items"][0]["key"], "k-1");
    assert_eq!(u["items"][0]["windows"][0]["used"], 5);
    assert_eq!(u["items"][0]["windows"][0]["remaining"], 0);
    assert_eq!(u["items"][0]["windows"][0]["limit"], "5/1m");
    assert_eq!(u["items"][1]["windows"][0]["used"], 2);
    let top = call(&t, "GET", "/api/admin/quotas/usage?top=1", READ, None)
        .await
        .json();
    assert_eq!(top["items"].as_array().unwrap().len(), 1);
    assert_eq!(top["items"][0]["key"], "k-1");
    let page = call(
        &t,
        "GET",
        "/api/admin/quotas/usage?limit=1&offset=2",
        READ,
        None,
    )
    .await
    .json();
    assert_eq!(
        (page["total"].as_u64(), page["items"][0]["key"].as_str()),
        (Some(3), Some("other"))
    );
    assert_eq!(
        call(&t, "GET", "/api/admin/quotas/usage?limit=x", READ, None)
            .await
            .status,
        400
    );
    assert_eq!(
        call(&t, "GET", "/api/admin/quotas/usage?rule=nope", READ, None)
            .await
            .status,
        404
    );

    // Two denials of k-1, flushed to the store within a few flush intervals.
    eventually("violations stored", || async {
        let v = call(
            &t,
            "GET",
            "/api/admin/quotas/violations?key=k-1",
            READ,
            None,
        )
        .await
        .json();
        v["items"][0]["count"] == 2
    })
    .await;
    let v = call(
        &t,
        "GET",
        "/api/admin/quotas/violations?key=k-1&shadow=false",
        READ,
        None,
    )
    .await
    .json();
    assert_eq!(v["items"][0]["limit"], "5/1m");
    assert_eq!(v["items"][0]["path"], "/x");
    let none = call(
        &t,
        "GET",
        "/api/admin/quotas/violations?key=k-2",
        READ,
        None,
    )
    .await
    .json();
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    let later = call(
        &t,
        "GET",
        "/api/admin/quotas/violations?since=2100-01-01T00:00:00Z",
        READ,
        None,
    )
    .await
    .json();
    assert_eq!(later["items"].as_array().unwrap().len(), 0);
    assert_eq!(
        call(
            &t,
            "GET",
            "/api/admin/quotas/violations?since=yesterday",
            READ,
            None
        )
        .await
        .status,
        400
    );

    eventually("traffic stored", || async {
        let a = call(
            &t,
            "GET",
            "/api/admin/quotas/analytics?bucket=1m",
            READ,
            None,
        )
        .await
        .json();
        let p = &a["series"][0]["points"][0];
        p["allowed"] == 8 && p["denied"] == 2
    })
    .await;
    let a = call(
        &t,
        "GET",
        "/api/admin/quotas/analytics?bucket=1h",
        READ,
        None,
    )
    .await
    .json();
    assert_eq!(a["series"][0]["rule"], "api");
    assert_eq!(a["top_violators"][0]["key"], "k-1");
    let bands = a["distribution"].as_array().unwrap();
    assert_eq!(bands.len(), 10);
    assert_eq!(bands[9]["keys"], 1, "k-1 is at 100%: {a}");
    assert_eq!(
        call(
            &t,
            "GET",
            "/api/admin/quotas/analytics?bucket=30s",
            READ,
            None
        )
        .await
        .status,
        400
    );

    // Reset: k-1 is allowed again, and the reset is audited.
    assert_eq!(hit(&t, "k-1").await, 429);
    let r = call(
        &t,
        "POST",
        "/api/admin/quotas/reset",
        ADMIN,
        Some(json!({"key": "k-1", "rule": "api"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["reset"], 1);
    assert_eq!(hit(&t, "k-1").await, 200);
    assert_eq!(
        call(
            &t,
            "POST",
            "/api/admin/quotas/reset",
            ADMIN,
            Some(json!({"key": "k-1", "rule": "nope"}))
        )
        .await
        .status,
        404
    );
    assert_eq!(
        call(
            &t,
            "POST",
            "/api/admin/quotas/reset",
            ADMIN,
            Some(json!({"rule": "api"}))
        )
        .await
        .status,
        400
    );
    let store = tollgate::store::connect(&tollgate::store::StoreTarget::Sqlite {
        path: dir.path().join("t.db"),
    })
    .await
    .unwrap();
    let audit = tollgate::store::Store::list_audit(&store, 10)
        .await
        .unwrap();
    assert_eq!(audit[0].action, "reset");
    assert!(
        audit[0].actor.starts_with("admin@127.0.0.1"),
        "{:?}",
        audit[0]
    );
    assert!(audit[0].detail.contains("k-1"));
    store.close().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_history_answers_503_and_changes_are_not_persisted() {
    let up = Upstream::start("up").await;
    let text = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN}\"\n[database]\nenabled = false\n{}",
        "[server]\nlisten = \"127.0.0.1:0\"",
        crate::RULES.replace("UPSTREAM", &up.url())
    );
    let t = support::TestTollgate::from_text(&text, None).await;
    let v = call(&t, "GET", "/api/admin/quotas/violations", ADMIN, None).await;
    assert_eq!(v.status, 503);
    assert!(v.json()["detail"].as_str().unwrap().contains("[database]"));
    let o = json!({"kind": "override", "key": "z", "rule": "api", "limits": ["1/m"]});
    let r = call(&t, "POST", "/api/admin/quotas/config", ADMIN, Some(o)).await;
    assert_eq!(r.json()["persisted"], false);
    t.stop().await;
}
