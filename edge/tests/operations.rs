//! The edge binary under an operator's hands. In-place upgrade: a second `edge --upgrade`
//! takes the listening sockets of the running one, which drains and exits, while clients
//! keep requesting (over kept-alive connections and over a new connection per request); no
//! request may fail. Reload: SIGHUP and `POST /reload` change the log level.

// Tests: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Requests the loop makes at least.
const REQUESTS: usize = 10_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(config: &std::path::Path, log: &std::path::Path, upgrade: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge"));
    cmd.arg("--config").arg(config);
    if upgrade {
        cmd.arg("--upgrade");
    }
    cmd.env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// One GET on a new connection, `Connection: close`; Ok when the answer is a 200.
async fn one_shot(addr: SocketAddr, path: &str) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if buf.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "answer: {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(80)])
        ))
    }
}

/// The upstream both tests use: 2 KB or so per path, cacheable for a minute.
async fn upstream() -> service::InProcess {
    service::InProcess::spawn("upstream", |l, stop| async move {
        service::serve(
            l,
            |req: http::Request<hyper::body::Incoming>, _| async move {
                let mut r =
                    http::Response::new(service::body::full(vec![
                        b'x';
                        2048 + req.uri().path().len()
                    ]));
                r.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("max-age=60"),
                );
                r
            },
            service::ServerLimits::default(),
            stop,
        )
        .await;
        Ok::<(), std::convert::Infallible>(())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_a_client_loop_loses_no_request() {
    let upstream = upstream().await;
    let dir = std::env::temp_dir().join(format!("edge-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (viewer, admin) = (free_port(), free_port());
    let viewer_addr: SocketAddr = ([127, 0, 0, 1], viewer).into();
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{viewer}\"\nupgrade_socket = {:?}\n[server]\nmax_connections_per_client = 0\nmax_requests_per_client = 0\ndrain_timeout = \"4s\"\nworker_threads = 1\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[upstream]\nurls = [\"{}\"]\n",
            dir.join("upgrade.sock"),
            upstream.url("")
        ),
    )
    .unwrap();
    let old = start(&config, &dir.join("old.log"), false);
    let client = service::client::new_client(Duration::from_secs(10));
    let up = service::client::wait_ok(
        &client,
        &format!("http://{viewer_addr}/live/0.ts"),
        Duration::from_secs(10),
    )
    .await;
    assert!(up.is_ok(), "the first edge did not come up: {up:?}");

    let done = Arc::new(AtomicUsize::new(0));
    let upgraded_at = Arc::new(AtomicUsize::new(usize::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut workers = Vec::new();
    for w in 0..6 {
        let (done, stop, failures) = (done.clone(), stop.clone(), failures.clone());
        let client = client.clone();
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let path = format!("/live/{}.ts", i % 64);
                let r = if w < 4 {
                    // Kept-alive connections (the client's pool).
                    service::client::fetch(
                        &client,
                        http::Method::GET,
                        &format!("http://{viewer_addr}{path}"),
                        &[],
                        Duration::from_secs(10),
                    )
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|f| {
                        if f.status == 200 {
                            Ok(())
                        } else {
                            Err(format!("status {}", f.status))
                        }
                    })
                } else {
                    one_shot(viewer_addr, &path).await
                };
                if let Err(e) = r {
                    failures.lock().unwrap().push(format!("{path}: {e}"));
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 6;
            }
        }));
    }
    // Two upgrades in a row (the successor must itself be upgradable), each once the loop
    // is well under way on the edge of the moment.
    let mut current = old;
    let mut exits = Vec::new();
    for round in 0..2 {
        let at = done.load(Ordering::Relaxed) + 2_000;
        while done.load(Ordering::Relaxed) < at {
            assert!(Instant::now() < deadline, "the client loop is too slow");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let next = start(&config, &dir.join(format!("new{round}.log")), true);
        let exit = tokio::task::spawn_blocking(move || {
            let until = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(s) = current.try_wait().unwrap() {
                    return Some(s);
                }
                if Instant::now() > until {
                    let _ = current.kill();
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap();
        exits.push(exit);
        current = next;
    }
    let mut new = current;
    upgraded_at.store(done.load(Ordering::Relaxed), Ordering::Relaxed);
    // Keep going on the last edge alone.
    let after = upgraded_at.load(Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < REQUESTS.max(after + 2_000) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let total = done.load(Ordering::Relaxed);
    let metrics = service::client::fetch(
        &client,
        http::Method::GET,
        &format!("http://127.0.0.1:{admin}/metrics"),
        &[],
        Duration::from_secs(5),
    )
    .await;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(new.id().to_string())
        .status();
    let new_exit = tokio::task::spawn_blocking(move || new.wait().unwrap())
        .await
        .unwrap();
    let logs = ["old.log", "new0.log", "new1.log"]
        .iter()
        .map(|f| {
            format!(
                "{f}:\n{}",
                std::fs::read_to_string(dir.join(f)).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed, e.g. {:?}\n{logs}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(total >= REQUESTS, "only {total} requests\n{logs}");
    for (i, exit) in exits.into_iter().enumerate() {
        let exit =
            exit.unwrap_or_else(|| panic!("edge {i} did not exit after its upgrade\n{logs}"));
        assert!(exit.success(), "edge {i}: {exit}\n{logs}");
    }
    assert!(new_exit.success(), "new edge: {new_exit}\n{logs}");
    // The new edge answered on the handed-over admin socket and served the loop's tail.
    let m = String::from_utf8_lossy(&metrics.unwrap().body).into_owned();
    let served: f64 = m
        .lines()
        .filter(|l| l.starts_with("edge_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        served >= 2_000.0,
        "the new edge served {served} requests\n{logs}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGHUP and `POST /reload` apply `log_level` to the running binary; an invalid one is
/// refused with its key and the level stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_log_level() {
    let upstream = upstream().await;
    let dir = std::env::temp_dir().join(format!("edge-loglevel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (viewer, admin) = (free_port(), free_port());
    let config = dir.join("edge.toml");
    let write = |level: &str| {
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{viewer}\"\nlog_level = \"{level}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"log-level-test-token-0123\"\n[upstream]\nurls = [\"{}\"]\n",
                upstream.url("")
            ),
        )
        .unwrap()
    };
    write("warn");
    let log = dir.join("edge.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge"));
    let mut edge = cmd
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let c = service::client::new_client(Duration::from_secs(5));
    let get = |p: &str| {
        let (c, url) = (c.clone(), format!("http://127.0.0.1:{viewer}{p}"));
        async move {
            service::client::wait_ok(&c, &url, Duration::from_secs(10))
                .await
                .unwrap()
        }
    };
    let debug_lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("DEBUG"))
            .count()
    };
    get("/a.ts").await;
    assert_eq!(debug_lines(), 0);
    let reload = |auth: bool| {
        let c = c.clone();
        async move {
            let h = [("authorization", "Bearer log-level-test-token-0123")];
            service::client::fetch(
                &c,
                http::Method::POST,
                &format!("http://127.0.0.1:{admin}/reload"),
                if auth { &h[..] } else { &[] },
                Duration::from_secs(5),
            )
            .await
            .unwrap()
        }
    };
    write("debug");
    assert_eq!(reload(false).await.status, 401);
    let r = reload(true).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("log_level"));
    get("/b.ts").await;
    let at_debug = debug_lines();
    assert!(at_debug > 0, "no debug line after the reload to debug");
    write("edge=loud");
    let r = reload(true).await;
    assert_eq!(r.status, 422);
    assert!(String::from_utf8_lossy(&r.body).contains("log_level"));
    // Back to warn with SIGHUP: no more debug lines.
    write("warn");
    let _ = Command::new("kill")
        .arg("-HUP")
        .arg(edge.id().to_string())
        .status();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = debug_lines();
    get("/c.ts").await;
    get("/d.ts").await;
    assert_eq!(
        debug_lines(),
        before,
        "debug lines after SIGHUP back to warn"
    );
    let _ = edge.kill();
    let _ = edge.wait();
    std::fs::remove_dir_all(&dir).ok();
}
