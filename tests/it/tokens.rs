//! Ephemeral tokens against the realtime simulator on 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use realtime_voiced::config::{Config, Secret};
use realtime_voiced::transport::token::TokenSource;
use realtime_voiced::transport::ConnectError;
use serde_json::json;
use testkit::sim::{self, RunningSim, SimOptions};

const KEY: &str = "sk-test-0123456789abcdefSECRET";

fn key_config(sim: &RunningSim, dir: &tempfile::TempDir) -> Config {
    let path = dir.path().join("api-key");
    std::fs::write(&path, format!("{KEY}\n")).expect("write key");
    let mut c = Config::default();
    c.api.base_url = sim.base_url();
    c.api.api_key_file = Some(path);
    c.transport.connect_timeout_ms = 2000;
    c
}

fn source(c: Config) -> TokenSource {
    TokenSource::new(
        Arc::new(c),
        json!({"type": "realtime", "model": "gpt-realtime"}),
    )
    .expect("token source")
}

async fn token(src: &TokenSource) -> Result<Secret, ConnectError> {
    tokio::time::timeout(Duration::from_secs(10), src.token())
        .await
        .expect("token request is bounded")
}

fn requests(sim: &RunningSim) -> u64 {
    sim.sim.stats.token_requests.load(Ordering::Relaxed)
}

fn assert_clean(e: &ConnectError) {
    assert!(!e.message.contains('\n'), "one line: {}", e.message);
    assert!(!e.message.contains(KEY), "key leaked: {}", e.message);
    assert!(
        !e.message.contains("SECRET"),
        "key fragment leaked: {}",
        e.message
    );
}

#[tokio::test]
async fn minted_from_the_key_and_cached() {
    let sim = sim::start(SimOptions::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = source(key_config(&sim, &dir));
    let first = token(&src).await.expect("token");
    assert!(
        first.expose().starts_with("ek_sim_"),
        "{:?}",
        first.expose()
    );
    assert_ne!(first.expose(), KEY, "the key itself is never the token");
    let second = token(&src).await.expect("token");
    assert_eq!(first.expose(), second.expose());
    assert_eq!(
        requests(&sim),
        1,
        "the second call is served from the cache"
    );
    src.invalidate().await;
    let third = token(&src).await.expect("token");
    assert_ne!(third.expose(), first.expose());
    assert_eq!(requests(&sim), 2);
}

#[tokio::test]
async fn prefetch_makes_the_next_token_instant() {
    let sim = sim::start(SimOptions::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Arc::new(source(key_config(&sim, &dir)));
    src.prefetch();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while requests(&sim) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    token(&src).await.expect("token");
    assert_eq!(requests(&sim), 1, "the prefetched token was used");
}

fn backend_config(sim: &RunningSim, path: &str, with_header: bool) -> Config {
    let mut c = Config::default();
    c.api.base_url = sim.base_url();
    c.api.token_url = Some(format!("{}{path}", sim.base_url()));
    if with_header {
        c.api.token_url_headers = BTreeMap::from([(
            "Authorization".to_owned(),
            Secret::new("Bearer device-SECRET-42"),
        )]);
    }
    c.transport.connect_timeout_ms = 2000;
    c
}

#[tokio::test]
async fn fetched_from_a_backend_in_either_shape() {
    let sim = sim::start(SimOptions::default()).await;
    for path in ["/token", "/token/flat"] {
        let src = source(backend_config(&sim, path, true));
        let t = token(&src).await.expect("token");
        assert!(t.expose().starts_with("ek_sim_"), "{path}");
        token(&src).await.expect("cached");
    }
    assert_eq!(requests(&sim), 2);

    let src = source(backend_config(&sim, "/token", false));
    let e = token(&src)
        .await
        .expect_err("no credentials for the backend");
    assert!(!e.is_retryable(), "{e:?}");
    assert!(e.message.contains("401"), "{}", e.message);
    assert_clean(&e);
}

#[tokio::test]
async fn refused_key_is_fatal_and_never_echoed() {
    let sim = sim::start(SimOptions {
        fail_token: Some(401),
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let e = token(&source(key_config(&sim, &dir)))
        .await
        .expect_err("refused");
    assert!(!e.is_retryable());
    assert!(e.message.contains("refused the API key"), "{}", e.message);
    assert!(e.message.contains("401"), "{}", e.message);
    assert!(
        e.message.contains("Incorrect API key provided"),
        "{}",
        e.message
    );
    assert_clean(&e);
    assert!(!format!("{e:?}").contains(KEY));

    // A backend refusing the device's header value: the same care.
    let e = token(&source(backend_config(&sim, "/token", true)))
        .await
        .expect_err("refused");
    assert!(!e.is_retryable());
    assert_clean(&e);
    assert!(!e.message.contains("device-SECRET-42"), "{}", e.message);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable() {
    for status in [429, 500, 503] {
        let sim = sim::start(SimOptions {
            fail_token: Some(status),
            ..SimOptions::default()
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let e = token(&source(key_config(&sim, &dir)))
            .await
            .expect_err("fails");
        assert!(e.is_retryable(), "{status}: {e:?}");
        assert!(e.message.contains(&status.to_string()), "{}", e.message);
        assert_clean(&e);
    }
}

#[tokio::test]
async fn slow_and_dead_servers_fail_in_bounded_time() {
    let sim = sim::start(SimOptions {
        slow_ms: 5000,
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = key_config(&sim, &dir);
    c.transport.connect_timeout_ms = 500;
    let started = std::time::Instant::now();
    let e = token(&source(c)).await.expect_err("too slow");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(e.is_retryable());
    assert_clean(&e);

    // A closed port on loopback.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut c = key_config(&sim, &dir);
    c.api.base_url = format!("http://127.0.0.1:{port}/v1");
    let e = token(&source(c)).await.expect_err("dead port");
    assert!(e.is_retryable());
    assert!(e.message.contains("client_secrets"), "{}", e.message);
    assert_clean(&e);
}

#[tokio::test]
async fn no_key_and_no_backend_says_where_to_put_one() {
    if testkit::rerun_alone!(
        no_key_and_no_backend_says_where_to_put_one,
        Duration::from_secs(30)
    ) {
        return;
    }
    // The only test in its process: nothing else reads the environment's key settings.
    testkit::link::install_crypto();
    std::env::remove_var("OPENAI_API_KEY");
    std::env::remove_var("CREDENTIALS_DIRECTORY");
    let mut c = Config::default();
    c.api.base_url = "http://127.0.0.1:9/v1".into();
    let e = token(&source(c)).await.expect_err("no key");
    assert!(!e.is_retryable());
    assert_eq!(
        e.message,
        "no API key: put it in /etc/realtime-voiced/api-key, set api.api_key_file or \
         OPENAI_API_KEY, or set api.token_url"
    );
}

#[tokio::test]
async fn transport_errors_name_the_host_but_not_the_url() {
    testkit::link::install_crypto();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut c = Config::default();
    c.api.token_url = Some(format!("http://127.0.0.1:{port}/token?key=url-SECRET"));
    c.transport.connect_timeout_ms = 1000;
    let e = token(&source(c)).await.expect_err("dead port");
    eprintln!("{}", e.message);
    assert!(e.is_retryable());
    assert!(
        e.message.contains(&format!("127.0.0.1:{port}")),
        "{}",
        e.message
    );
    assert!(!e.message.contains("url-SECRET"), "{}", e.message);
    assert_clean(&e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_token_reply_is_cut_off_not_read_into_memory() {
    use axum::response::IntoResponse;
    let chunk = bytes::Bytes::from(vec![b'{'; 64 * 1024]);
    let app = axum::Router::new().route(
        "/v1/realtime/client_secrets",
        axum::routing::post(move || {
            let chunk = chunk.clone();
            async move {
                let stream = futures_util::stream::repeat_with(move || {
                    Ok::<_, std::io::Error>(chunk.clone())
                });
                axum::body::Body::from_stream(stream).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    testkit::link::install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("api-key");
    std::fs::write(&key, KEY).expect("key");
    let mut c = Config::default();
    c.api.base_url = format!("http://{addr}/v1");
    c.api.api_key_file = Some(key);
    c.transport.connect_timeout_ms = 5000;
    let e = token(&source(c))
        .await
        .expect_err("no token from an endless reply");
    assert!(e.message.contains("larger than 64 KiB"), "{e:?}");
    assert!(e.is_retryable());
    assert_clean(&e);
}

#[tokio::test]
async fn a_rate_limit_says_how_long_to_wait() {
    let sim = sim::start(SimOptions {
        fail_token: Some(429),
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let e = token(&source(key_config(&sim, &dir)))
        .await
        .expect_err("rate limited");
    assert!(e.is_retryable());
    // "Please try again in 2s." in the service's message.
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)), "{e:?}");
}
