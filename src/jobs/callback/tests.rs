use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

#[test]
fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
    // RFC 4231 test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
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
        let failure = sender.attempt(&url, b"{}").await.unwrap_err();
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
    assert!(sender.attempt(&url, b"{}").await.is_err());
    assert!(connections.load(Ordering::SeqCst) >= 1);
}
