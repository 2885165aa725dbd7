//! Phases 1 and 2, the submit path: tickets and status answers against the one blob call each
//! cannot do without, latency with one client and throughput with many.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use summary_womble::store::BlobStore;
use testkit::process::HandlerProcess;
use testkit::status;

use super::calls::{
    api, raw_put, status_answer, submit, ticket, timed, Failures, RawNames, TICKET_BODY,
};
use super::report::{ms, progress, Figure, Summary};
use super::{CLIENTS, WARMUP_SAMPLES};

/// Samples per side of a latency comparison, and samples of the bare HTTP hop.
const LATENCY_SAMPLES: usize = 1000;
const HOP_SAMPLES: usize = 200;
/// Requests per client per round of the throughput phase, and rounds.
const PER_CLIENT: usize = 25;
const THROUGHPUT_ROUNDS: usize = 3;

/// Phase 1: tickets against raw Put Blob, status answers against raw Get Blob, one call of
/// each side at a time, then the HTTP hop alone.
pub(super) async fn latency_phase(
    handler: &HandlerProcess,
    store: &Arc<dyn BlobStore>,
) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    let names = RawNames::new("put");
    // The raw reference writes exactly what a ticket writes: the ticket's status document.
    let first = ticket(&http, handler, TICKET_BODY).await?;
    let document = status::read(store.as_ref(), &first)
        .await
        .context("the first ticket's status document is missing")?
        .body;
    let failures = Failures::default();
    let mut ids = vec![first];
    let (mut tickets, mut puts) = (Vec::new(), Vec::new());
    let mut scratch = Vec::new();
    let put = || raw_put(store.as_ref(), &names, &document);
    for _ in 0..WARMUP_SAMPLES {
        ids.extend(timed(&mut scratch, &failures, ticket(&http, handler, TICKET_BODY)).await);
        timed(&mut scratch, &failures, put()).await;
    }
    // One of each at a time, the order alternating, so both sides see the same machine.
    for n in 0..LATENCY_SAMPLES {
        if n % 2 == 1 {
            timed(&mut puts, &failures, put()).await;
        }
        let id = timed(&mut tickets, &failures, ticket(&http, handler, TICKET_BODY));
        ids.extend(id.await);
        if n % 2 == 0 {
            timed(&mut puts, &failures, put()).await;
        }
    }

    progress("status latency");
    let (mut statuses, mut gets) = (Vec::new(), Vec::new());
    let get = |id: &str| {
        let name = status::blob_name(id);
        async move { store.get(&name).await?.context("a status blob is missing") }
    };
    for id in ids.iter().take(WARMUP_SAMPLES) {
        timed(&mut scratch, &failures, status_answer(&http, handler, id)).await;
        timed(&mut scratch, &failures, get(id)).await;
    }
    for (n, id) in ids.iter().cycle().take(LATENCY_SAMPLES).enumerate() {
        if n % 2 == 1 {
            timed(&mut gets, &failures, get(id)).await;
        }
        timed(&mut statuses, &failures, status_answer(&http, handler, id)).await;
        if n % 2 == 0 {
            timed(&mut gets, &failures, get(id)).await;
        }
    }
    // What the HTTP hop to the handler costs by itself: the readiness route does no work.
    let mut hops = Vec::new();
    let readiness = || async {
        let answer = http.get(handler.url("/")).send().await?;
        answer.bytes().await?;
        anyhow::Ok(())
    };
    for _ in 0..HOP_SAMPLES {
        timed(&mut hops, &failures, readiness()).await;
    }
    failures.check((LATENCY_SAMPLES + WARMUP_SAMPLES) * 4 + HOP_SAMPLES)?;

    let ticket = Summary::of(&mut tickets);
    let put = Summary::of(&mut puts);
    let status = Summary::of(&mut statuses);
    let get = Summary::of(&mut gets);
    let hop = Summary::of(&mut hops);
    let size = format!("{} B document", document.len());
    let mut figures = vec![
        Figure::new("ticket latency p50", ms(ticket.p50), "ms")
            .against(ms(put.p50), "raw Put Blob p50")
            .note(size.clone())
            .ratio_at_most(1.15),
        Figure::new("ticket latency p99", ms(ticket.p99), "ms")
            .against(ms(put.p99), "raw Put Blob p99"),
        Figure::new("status latency p50", ms(status.p50), "ms")
            .against(ms(get.p50), "raw Get Blob p50")
            .note(size)
            .ratio_at_most(1.1),
        Figure::new("status latency p99", ms(status.p99), "ms")
            .against(ms(get.p99), "raw Get Blob p99"),
        Figure::new("GET / round trip p50", ms(hop.p50), "ms")
            .note("the HTTP hop to the handler alone, in the ticket and status figures"),
    ];
    if let Some(note) = failures.note() {
        figures[0] = figures[0].clone().note(note);
    }
    Ok(figures)
}

/// Phase 2: tickets per second from [`CLIENTS`] clients against raw puts per second, in
/// alternating rounds.
pub(super) async fn throughput_phase(
    handler: &HandlerProcess,
    store: &Arc<dyn BlobStore>,
) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    let first = ticket(&http, handler, TICKET_BODY).await?;
    let document = status::read(store.as_ref(), &first)
        .await
        .context("the first ticket's status document is missing")?
        .body;
    let names = Arc::new(RawNames::new("put32"));
    let failures = Arc::new(Failures::default());
    let clients: Vec<reqwest::Client> = (0..CLIENTS).map(|_| reqwest::Client::new()).collect();
    let api = Arc::new(api(handler));

    // One side of a round: `calls` per client, all clients at once. Returns how many calls
    // succeeded and how long the round took.
    #[derive(Clone, Copy)]
    enum Side {
        Tickets,
        Puts,
    }
    let run = |side: Side, calls: usize| {
        let tasks: Vec<_> = clients
            .iter()
            .map(|client| {
                let client = client.clone();
                let api = api.clone();
                let store = store.clone();
                let names = names.clone();
                let document = document.clone();
                let failures = failures.clone();
                tokio::spawn(async move {
                    let mut done = 0;
                    for _ in 0..calls {
                        let outcome = match side {
                            Side::Tickets => submit(&client, &api, TICKET_BODY).await,
                            Side::Puts => raw_put(store.as_ref(), &names, &document).await,
                        };
                        match outcome {
                            Ok(()) => done += 1,
                            Err(error) => failures.record(error),
                        }
                    }
                    done
                })
            })
            .collect();
        async move {
            let started = Instant::now();
            let mut done = 0;
            for task in tasks {
                done += task.await?;
            }
            anyhow::Ok((done, started.elapsed()))
        }
    };

    // Warm every connection on every side.
    for side in [Side::Tickets, Side::Puts] {
        run(side, 2).await?;
    }
    let mut totals = [(0usize, Duration::ZERO); 2];
    for round in 0..THROUGHPUT_ROUNDS {
        for index in [round % 2, 1 - round % 2] {
            let side = [Side::Tickets, Side::Puts][index];
            let (done, took) = run(side, PER_CLIENT).await?;
            totals[index].0 += done;
            totals[index].1 += took;
        }
    }
    failures.check(CLIENTS * (PER_CLIENT * THROUGHPUT_ROUNDS + 2) * 2)?;
    let [tickets, puts] = totals.map(|(done, took)| done as f64 / took.as_secs_f64());
    let mut figures = vec![Figure::new("tickets/s, 32 clients", tickets, "/s")
        .against(puts, "raw puts/s, 32 concurrent")
        .ratio_at_least(0.9)];
    if let Some(note) = failures.note() {
        figures[0] = figures[0].clone().note(note);
    }
    Ok(figures)
}
