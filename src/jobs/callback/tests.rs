use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::signing::{InvalidSigningKey, KeyForm, LEGACY_SIGNATURE_HEADER};
use super::*;
use crate::jobs::{JobId, RequestedJob};

/// The example of the Standard Webhooks libraries' own tests.
const EXAMPLE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
    // RFC 4231 test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn a_whsec_key_signs_id_timestamp_and_body_as_standard_webhooks_does() {
    let key = SigningKey::parse(EXAMPLE_SECRET).unwrap();
    assert_eq!(key.form(), KeyForm::Standard);
    assert_eq!(
        key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    // Only the new header: nobody checked the old one with a whsec_ key.
    let headers = key.headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b"{}");
    let names: Vec<_> = headers.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["webhook-signature"]);
}

#[test]
fn a_legacy_key_signs_with_the_raw_bytes_of_its_text_and_keeps_the_old_header() {
    let key = SigningKey::parse("callback-signing-key").unwrap();
    assert_eq!(key.form(), KeyForm::Legacy);
    let body = br#"{"status":"completed"}"#;
    let id = "6ce324a8-0502-4b0c-b729-12e10f0f22f6";
    // What the Python library computes with Webhook(b"callback-signing-key").
    let expected = "v1,K3dI6ojI0C4qDBRE0Ji89QoFiR0Kr4wN8KoQe74Z3C4=";
    assert_eq!(key.sign(id, 1700000000, body), expected);
    assert_eq!(
        key.headers(id, 1700000000, body),
        [
            ("webhook-signature", expected.to_owned()),
            (
                LEGACY_SIGNATURE_HEADER,
                signature(b"callback-signing-key", body)
            ),
        ]
    );
}

#[test]
fn a_whsec_key_must_be_base64_of_24_to_64_bytes() {
    let base64 = |length: usize| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(vec![7u8; length])
    };
    let refused = [
        ("whsec_".to_owned(), InvalidSigningKey::WrongLength(0)),
        ("whsec_not base64!".to_owned(), InvalidSigningKey::NotBase64),
        (
            format!("whsec_{}", base64(23)),
            InvalidSigningKey::WrongLength(23),
        ),
        (
            format!("whsec_{}", base64(65)),
            InvalidSigningKey::WrongLength(65),
        ),
    ];
    for (text, error) in refused {
        assert_eq!(SigningKey::parse(&text).unwrap_err(), error, "{text}");
    }
    for length in [24, 32, 64] {
        let padded = format!("whsec_{}", base64(length));
        let unpadded = padded.trim_end_matches('=').to_owned();
        for text in [padded, unpadded] {
            let key = SigningKey::parse(&text).unwrap();
            assert_eq!(key.form(), KeyForm::Standard, "{text}");
        }
    }
}

#[test]
fn the_signing_key_does_not_show_in_debug_output() {
    for text in [EXAMPLE_SECRET, "legacy-secret-text"] {
        let key = SigningKey::parse(text).unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains(&text[6..]), "{debug}");
    }
}

#[test]
fn unsigned_callbacks_are_refused_only_where_refused_and_only_without_a_key() {
    let plain =
        JobRequest::from_requested(RequestedJob::default(), CallbackPolicy::PublicHttps).unwrap();
    let with_callback = JobRequest::from_requested(
        RequestedJob {
            callback_url: Some("https://hooks.example.com/done".into()),
            ..RequestedJob::default()
        },
        CallbackPolicy::PublicHttps,
    )
    .unwrap();
    let key = SigningKey::parse(EXAMPLE_SECRET).unwrap();
    use UnsignedCallbacks::{Refused, Sent};
    let cases = [
        (Refused, None, &with_callback, false),
        (Refused, Some(&key), &with_callback, true),
        (Refused, None, &plain, true),
        (Sent, None, &with_callback, true),
        (Sent, Some(&key), &with_callback, true),
    ];
    for (unsigned, key, request, admitted) in cases {
        let outcome = unsigned.admit(key, request);
        assert_eq!(
            outcome.is_ok(),
            admitted,
            "{unsigned:?}, key {}",
            key.is_some()
        );
    }
    let refusal = Refused.admit(None, &with_callback).unwrap_err().to_string();
    assert!(refusal.starts_with("callback_url"), "{refusal}");
    assert!(refusal.contains("CALLBACK_SIGNING_KEY"), "{refusal}");
}

/// One request a [`recording_receiver`] got: its headers and body.
type Received = (http::HeaderMap, bytes::Bytes);

/// A receiver on 127.0.0.1 that answers 503 and records every request, so that each attempt
/// is seen.
async fn recording_receiver() -> (CallbackUrl, Arc<Mutex<Vec<Received>>>) {
    use warp::Filter;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let routes = {
        let received = received.clone();
        warp::post()
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(move |headers, body| {
                received.lock().unwrap().push((headers, body));
                warp::reply::with_status(warp::reply(), http::StatusCode::SERVICE_UNAVAILABLE)
            })
    };
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    let url = CallbackUrl::parse(
        &format!("http://127.0.0.1:{port}/hook"),
        CallbackPolicy::AllowLocal,
    )
    .unwrap();
    (url, received)
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn every_attempt_carries_the_job_id_its_own_time_and_a_signature_over_both() {
    let (url, received) = recording_receiver().await;
    let request =
        JobRequest::from_requested(RequestedJob::default(), CallbackPolicy::PublicHttps).unwrap();
    let job_id = JobId::new();
    let document = StatusDocument::queued(job_id, request, None, crate::jobs::status::now());
    let message = body(&document);
    assert_eq!(message.id, job_id.to_string());

    for (key, legacy_header) in [
        (Some(EXAMPLE_SECRET), false),
        (Some("callback-signing-key"), true),
        (None, false),
    ] {
        let key = key.map(|text| SigningKey::parse(text).unwrap());
        let sender = CallbackSender::new(key.clone(), CallbackPolicy::AllowLocal).unwrap();
        received.lock().unwrap().clear();
        let before = chrono::Utc::now().timestamp();
        for _ in 0..2 {
            assert_eq!(
                sender.attempt(&url, &message).await,
                Err("HTTP 503".to_owned())
            );
        }
        let after = chrono::Utc::now().timestamp();

        let received = received.lock().unwrap().clone();
        assert_eq!(received.len(), 2);
        for (headers, body) in &received {
            assert_eq!(body.as_ref(), message.body.as_slice());
            assert_eq!(header(headers, "webhook-id"), Some(message.id.as_str()));
            let timestamp: i64 = header(headers, "webhook-timestamp")
                .unwrap()
                .parse()
                .unwrap();
            assert!((before..=after).contains(&timestamp), "{timestamp}");
            let expected = key
                .as_ref()
                .map(|key| key.sign(&message.id, timestamp, body));
            assert_eq!(header(headers, "webhook-signature"), expected.as_deref());
            assert_eq!(
                header(headers, LEGACY_SIGNATURE_HEADER).is_some(),
                legacy_header,
                "{headers:?}"
            );
        }
    }
}

fn empty_message() -> Message {
    Message {
        id: JobId::new().to_string(),
        body: b"{}".to_vec(),
    }
}

/// A listener on 127.0.0.1 that counts the connections made to it.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, connections)
}

#[tokio::test]
async fn a_callback_host_that_resolves_to_this_machine_is_never_contacted() {
    let (port, connections) = counting_listener().await;
    let everything_is_here: address::Lookup = Arc::new(|_host: String| {
        Box::pin(async { Ok(vec![std::net::IpAddr::from([127, 0, 0, 1])]) })
    });
    for policy in [CallbackPolicy::PublicHttps, CallbackPolicy::AllowLocal] {
        let sender = CallbackSender::with_lookup(None, policy, everything_is_here.clone()).unwrap();
        let url =
            CallbackUrl::parse(&format!("https://hooks.example.com:{port}/done"), policy).unwrap();
        let failure = sender.attempt(&url, &empty_message()).await.unwrap_err();
        assert_eq!(
            connections.load(Ordering::SeqCst),
            0,
            "{policy:?}: {failure}"
        );
        assert!(failure.contains("local or private"), "{failure}");
    }

    // The listener does count: 127.0.0.1 itself is open under AllowLocal.
    let sender =
        CallbackSender::with_lookup(None, CallbackPolicy::AllowLocal, everything_is_here).unwrap();
    let url = CallbackUrl::parse(
        &format!("http://127.0.0.1:{port}/done"),
        CallbackPolicy::AllowLocal,
    )
    .unwrap();
    assert!(sender.attempt(&url, &empty_message()).await.is_err());
    assert!(connections.load(Ordering::SeqCst) >= 1);
}
