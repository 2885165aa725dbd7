//! What the service asks of storage: a list as the history grows (phase 5), and the storage
//! requests of one 7-subreddit job against the fewest a job can make (phase 6).
//!
//! Phase 6 puts a counting proxy between the handler and Azurite: every request the handler
//! sends to storage passes through it and is counted. Shared-key signatures cover the path,
//! query and `x-ms-*` headers, not the host, so Azurite accepts the proxied requests as they are.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt as _;
use http::HeaderMap;

use super::*;

/// Jobs kept when the list is first measured, then when it is measured again.
const FEW_JOBS: usize = 100;
const MANY_JOBS: usize = 10_000;
const LIST_SAMPLES: usize = 200;
/// A list that reads every kept job takes seconds with 10,000 of them: fewer samples are
/// taken rather than letting the phase run for an hour.
const LIST_BUDGET: Duration = Duration::from_secs(60);
/// What a job cannot do without: create its status document, write its 7 output blobs, write
/// its final status.
const JOB_FLOOR_REQUESTS: f64 = 9.0;

/// Phase 5: `GET ?top=20` with 100 jobs kept, then with 10,000.
pub(super) async fn list_phase(handler: &Handler) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    fill(&http, handler, FEW_JOBS).await?;
    let few = list_latency(&http, handler).await?;
    fill(&http, handler, MANY_JOBS - FEW_JOBS).await?;
    let many = list_latency(&http, handler).await?;
    Ok(vec![Figure::new(
        "list top=20 p50, 10,000 jobs kept",
        ms(many.p50),
        "ms",
    )
    .against(ms(few.p50), "the same list, 100 jobs kept")
    .note(format!(
        "p99 {:.1} ms against {:.1} ms",
        ms(many.p99),
        ms(few.p99)
    ))
    .ratio_at_most(1.5)])
}

/// Issues `count` more tickets, 32 clients at once.
async fn fill(http: &reqwest::Client, handler: &Handler, count: usize) -> anyhow::Result<()> {
    let failures = Failures::default();
    futures::stream::iter(0..count)
        .map(|_| ticket(http, handler, TICKET_BODY))
        .buffer_unordered(CLIENTS)
        .for_each(|result| {
            if let Err(error) = result {
                failures.record(error);
            }
            async {}
        })
        .await;
    failures.check(count)
}

async fn list_latency(http: &reqwest::Client, handler: &Handler) -> anyhow::Result<Summary> {
    let url = format!("{}/api/SummaryWomble?top=20", handler.base);
    let list = || async {
        let answer = http.get(&url).send().await?;
        ensure!(
            answer.status() == 200,
            "a list answered {}",
            answer.status()
        );
        answer.bytes().await?;
        anyhow::Ok(())
    };
    let failures = Failures::default();
    let (mut samples, mut scratch) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for _ in 0..WARMUP_SAMPLES {
        timed(&mut scratch, &failures, list()).await;
        if started.elapsed() > LIST_BUDGET / 4 {
            break;
        }
    }
    let started = Instant::now();
    let mut calls = scratch.len();
    for _ in 0..LIST_SAMPLES {
        timed(&mut samples, &failures, list()).await;
        calls += 1;
        if started.elapsed() > LIST_BUDGET {
            break;
        }
    }
    failures.check(calls)?;
    Ok(Summary::of(&mut samples))
}

/// Phase 6: the storage requests of the standard job, counted at a proxy.
pub(super) async fn requests_per_job(
    bench: &mut Bench,
    azurite: &Azurite,
) -> anyhow::Result<Figure> {
    let proxy = CountingProxy::start(&azurite.connection_string).await?;
    let (handler, store) = bench
        .handler(
            azurite,
            "requests",
            &[
                ("OUTPUT_STORAGE_CONNECTION_STRING", &proxy.connection_string),
                // No stale-job scan during the job: only the job's own requests are counted.
                ("JOB_STALE_AFTER_SECONDS", "86400"),
            ],
        )
        .await?;
    // Start-up (the container, the first scan) is not the job's.
    proxy.requests.store(0, Ordering::SeqCst);
    standard_job(&handler, &store).await?;
    let counted = proxy.requests.load(Ordering::SeqCst) as f64;
    drop(handler);
    Ok(
        Figure::new("storage requests, 7-subreddit job", counted, "requests").against(
            JOB_FLOOR_REQUESTS,
            "1 create + 7 output writes + 1 final write",
        ),
    )
}

/// An HTTP proxy in front of Azurite that counts the requests it forwards.
struct CountingProxy {
    connection_string: String,
    requests: Arc<AtomicUsize>,
}

impl CountingProxy {
    async fn start(azurite_connection_string: &str) -> anyhow::Result<Self> {
        let target = azurite_connection_string
            .split(';')
            .find_map(|part| part.strip_prefix("BlobEndpoint="))
            .context("the Azurite connection string has no BlobEndpoint")?
            .to_owned();
        let origin = {
            let url = url::Url::parse(&target)?;
            format!(
                "http://{}:{}",
                url.host_str().context("no host")?,
                url.port().context("no port")?
            )
        };
        let requests = Arc::new(AtomicUsize::new(0));
        let client = reqwest::Client::new();
        let counter = requests.clone();
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |method: http::Method,
                      path: warp::path::FullPath,
                      query: String,
                      headers: HeaderMap,
                      body: Bytes| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let url = match query.as_str() {
                        "" => format!("{origin}{}", path.as_str()),
                        query => format!("{origin}{}?{query}", path.as_str()),
                    };
                    forward(client.clone(), method, url, headers, body)
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        let proxied = {
            let mut url = url::Url::parse(&target)?;
            url.set_port(Some(port))
                .map_err(|()| anyhow::anyhow!("{target} takes no port"))?;
            url.as_str().trim_end_matches('/').to_owned()
        };
        let connection_string = azurite_connection_string.replace(&target, &proxied);
        Ok(Self {
            connection_string,
            requests,
        })
    }
}

async fn forward(
    client: reqwest::Client,
    method: http::Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
) -> http::Response<Bytes> {
    let mut request = client.request(method, url).body(body);
    for (name, value) in &headers {
        // Content-Length stays: a Put Blob of an empty body must say `0`, and it is signed.
        if !matches!(name.as_str(), "host" | "connection" | "transfer-encoding") {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let mut response = http::Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if !matches!(
                    name.as_str(),
                    "content-length" | "transfer-encoding" | "connection"
                ) {
                    response = response.header(name, value);
                }
            }
            let body = answer.bytes().await.unwrap_or_default();
            response.body(body).expect("a response from a response")
        }
        Err(_) => http::Response::builder()
            .status(502)
            .body(Bytes::new())
            .expect("a plain 502"),
    }
}
