//! The edge's admin listener and config reload: purge, the bearer token, a reload that
//! changes upstream, cache size, overload limits and tokens while a download in flight
//! completes, a refused reload, and drain.

// Tests: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use e2e::fake_origin::{Chunk, FakeOrigin, Gate, Script};
use e2e::{body_of, get, sample};
use http::Method;
use service::client::{Fetched, HttpClient, fetch, new_client};

const TOKEN: &str = "admin-token-for-tests-0123";

async fn post(c: &HttpClient, url: &str, token: Option<&str>) -> Fetched {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    fetch(c, Method::POST, url, &headers, Duration::from_secs(10))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_needs_the_token_and_removes_exact_paths_or_prefixes() {
    let origin = FakeOrigin::start().await;
    for (p, seed) in [
        ("/live/a/1.ts", 1),
        ("/live/a/2.ts", 2),
        ("/live/b/1.ts", 3),
    ] {
        origin.route(
            p,
            Script::ok(body_of(10_000, seed), "video/mp2t", "max-age=600"),
        );
    }
    let edge = e2e::start_edge(
        &format!(
            "[admin]\ntoken = \"{TOKEN}\"\n[upstream]\nurls = [\"{}\"]\n",
            origin.url()
        ),
        &[origin.url()],
    )
    .await;
    let c = new_client(Duration::from_secs(10));
    for p in ["/live/a/1.ts", "/live/a/2.ts", "/live/b/1.ts"] {
        assert_eq!(get(&c, &edge.url(p)).await.status, 200);
    }
    // No token, a wrong one, the right one in the wrong scheme: 401, nothing purged.
    for token in [None, Some("admin-token-for-tests-0124")] {
        let r = post(&c, &edge.admin_url("/purge?prefix=/live/a/"), token).await;
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    }
    let basic = fetch(
        &c,
        Method::POST,
        &edge.admin_url("/purge?prefix=/live/a/"),
        &[("authorization", &format!("Basic {TOKEN}"))],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(basic.status, 401);
    assert_eq!(
        get(&c, &edge.url("/live/a/1.ts")).await.header("x-cache"),
        "hit"
    );
    // A GET cannot purge.
    assert_eq!(
        get(&c, &edge.admin_url("/purge?prefix=/")).await.status,
        405
    );
    let r = post(&c, &edge.admin_url("/purge?prefix=/live/a/"), Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&r.body).trim(),
        "purged 2 object(s)"
    );
    assert_eq!(
        get(&c, &edge.url("/live/a/1.ts")).await.header("x-cache"),
        "miss"
    );
    assert_eq!(
        get(&c, &edge.url("/live/b/1.ts")).await.header("x-cache"),
        "hit"
    );
    assert_eq!(origin.hits("/live/a/1.ts"), 2);
    let r = post(&c, &edge.admin_url("/purge?path=/live/b/1.ts"), Some(TOKEN)).await;
    assert_eq!(
        String::from_utf8_lossy(&r.body).trim(),
        "purged 1 object(s)"
    );
    assert_eq!(
        get(&c, &edge.url("/live/b/1.ts")).await.header("x-cache"),
        "miss"
    );
    let r = post(&c, &edge.admin_url("/purge"), Some(TOKEN)).await;
    assert_eq!(r.status, 400);
    // The edge's metrics are on the admin port only: the viewers' /metrics is the
    // upstream's business (a 404 here), never the edge's own.
    let viewer = get(&c, &edge.url("/metrics")).await;
    assert!(!String::from_utf8_lossy(&viewer.body).contains("edge_requests_total"));
    let m = String::from_utf8_lossy(&get(&c, &edge.admin_url("/metrics")).await.body).into_owned();
    assert_eq!(sample(&m, "edge_purged_objects_total "), 3.0);
    assert_eq!(
        sample(
            &m,
            "edge_admin_actions_total{action=\"purge\",outcome=\"unauthorized\"} "
        ),
        3.0
    );
    assert!(
        m.contains("process_resident_memory_bytes"),
        "process collector"
    );
    assert!(sample(&m, "edge_sent_bytes_total ") > 40_000.0);
    assert!(m.contains("edge_connections_open_by_protocol{protocol=\"HTTP/1.1\",tls=\"none\"}"));
}

/// An edge on loopback whose reload reads `text` (a test edits it between reloads).
struct Reloadable {
    viewer: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    text: Arc<Mutex<String>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Reloadable {
    fn start(toml: &str) -> Self {
        let text = Arc::new(Mutex::new(toml.to_string()));
        let cfg = edge::config::Config::parse("reload.toml", toml).unwrap();
        let viewer = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
        let admin = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
        let addrs = (viewer.local_addr().unwrap(), admin.local_addr().unwrap());
        let t = text.clone();
        let source: edge::ReloadSource = Arc::new(move || {
            edge::config::Config::parse("reload.toml", &t.lock().unwrap())
                .map_err(|e| e.to_string())
        });
        let stop = e2e::run_edge_on(
            edge::Sockets {
                viewers: vec![service::Listener {
                    tcp: viewer,
                    tls: None,
                }],
                admin: Some(admin),
            },
            cfg,
            None,
            Some(source),
        );
        Self {
            viewer: addrs.0,
            admin: addrs.1,
            text,
            _stop: stop,
        }
    }
    fn url(&self, p: &str) -> String {
        format!("http://{}{p}", self.viewer)
    }
    fn admin_url(&self, p: &str) -> String {
        format!("http://{}{p}", self.admin)
    }
}

fn config(upstream: &str, capacity_mib: u64, extra: &str) -> String {
    format!(
        "[server]\nmax_connections_per_client = 0\nmax_requests_per_client = 0\n[admin]\ntoken = \"{TOKEN}\"\n[cache]\ncapacity_bytes = {}\nmax_object_bytes = 1100000\n[upstream]\nurls = [\"{upstream}\"]\n{extra}",
        capacity_mib << 20
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_upstream_cache_limits_and_tokens_while_a_download_completes() {
    let a = FakeOrigin::start().await;
    let b = FakeOrigin::start().await;
    // A 1 MiB segment from A whose second half waits for a gate.
    let big = body_of(1 << 20, 9);
    let gate = Gate::new();
    let mut script = Script::ok(Bytes::new(), "video/mp2t", "max-age=600");
    script.chunks = vec![
        Chunk {
            data: big.slice(..1 << 19),
            gate: None,
        },
        Chunk {
            data: big.slice(1 << 19..),
            gate: Some(gate.clone()),
        },
    ];
    a.route("/live/x/big.ts", script);
    for o in [&a, &b] {
        o.route(
            "/live/x/master.m3u8",
            Script::ok(
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n",
                "application/vnd.apple.mpegurl",
                "max-age=1",
            ),
        );
    }
    for i in 0..6 {
        a.route(
            &format!("/live/x/fill{i}.ts"),
            Script::ok(body_of(1_000_000, i), "video/mp2t", "max-age=600"),
        );
    }
    b.route(
        "/live/x/new.ts",
        Script::ok(body_of(5_000, 7), "video/mp2t", "max-age=600"),
    );
    let edge = Reloadable::start(&config(&a.url(), 8, ""));
    let c = new_client(Duration::from_secs(30));
    e2e::wait_ok(&c, &edge.admin_url("/healthz"), Duration::from_secs(5)).await;
    for i in 0..6 {
        assert_eq!(
            get(&c, &edge.url(&format!("/live/x/fill{i}.ts")))
                .await
                .status,
            200
        );
    }
    assert_eq!(get(&c, &edge.url("/live/x/master.m3u8")).await.status, 200);
    // The download starts from A and stalls halfway.
    let download = tokio::spawn({
        let (c, url) = (c.clone(), edge.url("/live/x/big.ts"));
        async move { fetch(&c, Method::GET, &url, &[], Duration::from_secs(30)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!download.is_finished());

    // An invalid config is refused whole, with the key at fault.
    *edge.text.lock().unwrap() = config(&b.url(), 2, "[overload]\nmax_active = 0\n");
    let r = post(&c, &edge.admin_url("/reload"), Some(TOKEN)).await;
    assert_eq!(r.status, 422);
    let why = String::from_utf8_lossy(&r.body).into_owned();
    assert!(why.contains("overload.max_active"), "{why}");
    assert_eq!(
        get(&c, &edge.url("/live/x/fill0.ts"))
            .await
            .header("x-cache"),
        "hit"
    );

    // Upstream B, a 2 MiB cache, new joins shed above 0 requests, and a token on /live/x/.
    *edge.text.lock().unwrap() = config(
        &b.url(),
        2,
        "[overload]\nnew_joins_above = 0\nmax_active = 1000\n[[tokens]]\nprefix = \"/live/x/tok/\"\nsecrets = [\"0123456789abcdef0123\"]\n",
    );
    let r = post(&c, &edge.admin_url("/reload"), Some(TOKEN)).await;
    let said = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 200, "{said}");
    assert!(
        said.contains("upstream") && said.contains("cache") && said.contains("tokens"),
        "{said}"
    );

    // The download in flight completes from A, every byte.
    gate.open();
    let got = download.await.unwrap().unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body, big);
    // New fetches go to B.
    assert_eq!(get(&c, &edge.url("/live/x/new.ts")).await.status, 200);
    assert_eq!((a.hits("/live/x/new.ts"), b.hits("/live/x/new.ts")), (0, 1));
    // The cache shrank to its new capacity.
    let m = String::from_utf8_lossy(&get(&c, &edge.admin_url("/metrics")).await.body).into_owned();
    let bytes = sample(&m, "edge_cache_bytes ");
    assert!(
        bytes > 0.0 && bytes <= (2 << 20) as f64,
        "cache holds {bytes} bytes"
    );
    assert_eq!(sample(&m, "edge_reloads_total{outcome=\"refused\"} "), 1.0);
    assert_eq!(sample(&m, "edge_reloads_total{outcome=\"ok\"} "), 1.0);
    // New overload limits: a new join is shed; a segment is not.
    let join = get(&c, &edge.url("/live/x/master.m3u8")).await;
    assert_eq!(join.status, 503);
    // The new token rule.
    let tok = get(&c, &edge.url("/live/x/tok/1.ts")).await;
    assert_eq!(tok.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_fails_readiness_and_stops_accepting() {
    let origin = FakeOrigin::start().await;
    origin.route(
        "/a.ts",
        Script::ok(body_of(1000, 1), "video/mp2t", "max-age=60"),
    );
    let edge = Reloadable::start(&config(&origin.url(), 8, ""));
    let c = new_client(Duration::from_secs(10));
    e2e::wait_ok(&c, &edge.admin_url("/readyz"), Duration::from_secs(5)).await;
    assert_eq!(post(&c, &edge.admin_url("/drain"), None).await.status, 401);
    assert_eq!(get(&c, &edge.url("/a.ts")).await.status, 200);
    let r = post(&c, &edge.admin_url("/drain"), Some(TOKEN)).await;
    assert_eq!(r.status, 202);
    let ready = get(&c, &edge.admin_url("/readyz")).await;
    assert_eq!(ready.status, 503);
    assert_eq!(String::from_utf8_lossy(&ready.body).trim(), "draining");
    // The listener closes: new connections are refused within moments.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(edge.viewer).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the viewers' listener still accepts after a drain");
}
