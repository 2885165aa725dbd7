use super::*;

#[test]
fn local_callbacks_are_accepted_only_when_allowed() {
    let local = "http://127.0.0.1:9000/done";
    assert!(CallbackUrl::parse(local, CallbackPolicy::PublicHttps).is_err());
    assert_eq!(
        CallbackUrl::parse(local, CallbackPolicy::AllowLocal)
            .unwrap()
            .as_str(),
        local
    );
    assert!(CallbackUrl::parse(
        "https://hooks.example.com/done",
        CallbackPolicy::PublicHttps
    )
    .is_ok());
}

#[test]
fn callbacks_to_local_and_private_addresses_are_refused_by_their_text() {
    let refused = [
        "https://localhost/x",
        "https://localhost./x",
        "https://LOCALHOST:8443/x",
        "https://app.localhost/x",
        "https://127.0.0.1/x",
        "https://127.1/x",
        "https://0x7f000001/x",
        "https://2130706433/x",
        "https://127.0.0.1./x",
        "https://0.0.0.0/x",
        "https://10.0.0.1/x",
        "https://100.64.0.1/x",
        "https://169.254.169.254/latest/meta-data",
        "https://172.16.5.4/x",
        "https://192.168.1.10/x",
        "https://[::1]/x",
        "https://[::]/x",
        "https://[::ffff:7f00:1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:a00:1]/x",
        "https://[64:ff9b::7f00:1]/x",
        "https://[fc00::1]/x",
        "https://[fd00::1]/x",
        "https://[fe80::1]/x",
    ];
    for policy in [CallbackPolicy::PublicHttps, CallbackPolicy::AllowLocal] {
        for url in refused {
            // Under AllowLocal, exactly 127.0.0.1 and localhost are open.
            let opened = policy == CallbackPolicy::AllowLocal
                && matches!(
                    url,
                    "https://localhost/x"
                        | "https://LOCALHOST:8443/x"
                        | "https://127.0.0.1/x"
                        | "https://127.1/x"
                        | "https://0x7f000001/x"
                        | "https://2130706433/x"
                        | "https://127.0.0.1./x"
                );
            if opened {
                continue;
            }
            let error = CallbackUrl::parse(url, policy).expect_err(url);
            assert!(
                error.contains("local or private"),
                "{url} ({policy:?}): {error}"
            );
        }
    }
}

#[test]
fn allow_local_opens_127_0_0_1_and_localhost_over_http_and_nothing_else() {
    for url in [
        "http://127.0.0.1:9000/done",
        "https://127.0.0.1/done",
        "http://localhost:9000/done",
        "https://localhost/done",
    ] {
        assert!(
            CallbackUrl::parse(url, CallbackPolicy::AllowLocal).is_ok(),
            "{url}"
        );
    }
    for url in [
        "http://10.0.0.1/done",
        "http://192.168.1.10/done",
        "https://192.168.1.10/done",
        "http://127.0.0.2/done",
        "http://[::1]/done",
        "http://localhost./done",
        "http://example.com/done",
    ] {
        assert!(
            CallbackUrl::parse(url, CallbackPolicy::AllowLocal).is_err(),
            "{url}"
        );
    }
}

#[test]
fn a_callback_url_is_shown_as_its_origin_only() {
    let url = CallbackUrl::parse(
        "https://hooks.example.com:8443/t/s3cr3t?token=abc#frag",
        CallbackPolicy::PublicHttps,
    )
    .unwrap();
    assert_eq!(url.origin(), "https://hooks.example.com:8443");
    assert_eq!(
        serde_json::to_value(&url).unwrap(),
        "https://hooks.example.com:8443"
    );
    let default_port = CallbackUrl::parse(
        "https://hooks.example.com/t?k=v",
        CallbackPolicy::PublicHttps,
    )
    .unwrap();
    assert_eq!(default_port.origin(), "https://hooks.example.com");
}

#[test]
fn a_callback_url_longer_than_2048_characters_is_refused() {
    let base = "https://hooks.example.com/";
    let fits = format!("{base}{}", "a".repeat(CallbackUrl::MAX_LEN - base.len()));
    assert_eq!(
        CallbackUrl::parse(&fits, CallbackPolicy::PublicHttps)
            .unwrap()
            .as_str(),
        fits
    );
    let over = format!("{fits}a");
    assert_eq!(
        CallbackUrl::parse(&over, CallbackPolicy::PublicHttps),
        Err("callback_url must be at most 2048 characters")
    );
    // Short as typed, but longer than the limit once percent-encoded.
    let grows = format!("{base}{}", "é".repeat(400));
    assert_eq!(
        CallbackUrl::parse(&grows, CallbackPolicy::PublicHttps),
        Err("callback_url must be at most 2048 characters")
    );
}
