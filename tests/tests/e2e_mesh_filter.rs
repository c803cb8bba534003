//! envoy/mesh-http-filter.yaml, the filter entry for meshes where routes are
//! not ours to edit, loaded by a real Envoy: the `ExtensionWithMatcher`
//! wrapper still lets challenges reach the filter (and through it the
//! sidecar's challenge API, here in this process with one published
//! token), while every other path goes to its route untouched.

use proxy_acme_e2e::mesh::{http_bootstrap, shipped_mesh_filter};
use proxy_acme_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_filter_entry_answers_challenges_and_passes_everything_else() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tokens = proxy_acme::solvers::http01::Http01Tokens::new();
    let _published = tokens.publish("mesh-token_1", "mesh.proxy-acme.test", "mesh-token_1.thumbprint");
    let sidecar = free_port();
    let _api = proxy_acme::serve::api::serve(
        ([127, 0, 0, 1], sidecar).into(),
        proxy_acme::serve::api::Api { tokens, ..Default::default() },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let (port, admin) = (free_port(), free_port());
    let routes = [
        // What the app would answer on the challenge path: never reached.
        "match: { prefix: \"/\" }\ndirect_response: { status: 200, body: { inline_string: \"app\" } }\n".to_owned(),
    ];
    let yaml =
        http_bootstrap(port, admin, &routes, &shipped_mesh_filter(&wasm_path()), &[("proxy_acme_sidecar", sidecar)]);
    let _envoy = Envoy::start(tmp.path(), &yaml, admin).await;
    let host = "mesh.proxy-acme.test";
    let get = |path: &'static str| http_get(("127.0.0.1", port), host, path, &[]);

    let answer = get("/.well-known/acme-challenge/mesh-token_1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer, (200, "mesh-token_1.thumbprint".to_owned()));
    let unknown = get("/.well-known/acme-challenge/other-token").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unknown.0, 404, "an unknown token is the filter's 404, not the app: {unknown:?}");
    for path in ["/", "/app/page", "/.well-known/other", "/.well-known/acme-challenge"] {
        let passed = get(path).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(passed, (200, "app".to_owned()), "{path}");
    }
}
