use super::*;

fn resolving_to(addresses: &'static [&'static str]) -> Lookup {
    Arc::new(move |_host: String| {
        Box::pin(async move { Ok(addresses.iter().map(|a| a.parse().unwrap()).collect()) })
    })
}

#[test]
fn only_public_addresses_are_public() {
    let refused = [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.8.9.10",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.168.1.10",
        "198.18.0.1",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "::ffff:7f00:1",
        "::ffff:10.1.2.3",
        "::ffff:100.64.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "2002:c0a8:10a::",
        "2001::1",
        "2001:db8::1",
        "100::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
    ];
    for text in refused {
        assert!(!is_public(text.parse().unwrap()), "{text} is not public");
    }
    let public = [
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.0.1",
        "172.32.0.1",
        "192.169.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::",
    ];
    for text in public {
        assert!(is_public(text.parse().unwrap()), "{text} is public");
    }
}

#[test]
fn localhost_names_are_this_machine_with_or_without_the_final_dot() {
    for name in [
        "localhost",
        "localhost.",
        "LocalHost",
        "app.localhost",
        "a.b.localhost.",
    ] {
        assert!(is_localhost_name(name), "{name}");
    }
    for name in ["localhost.example.com", "notlocalhost", "example.com"] {
        assert!(!is_localhost_name(name), "{name}");
    }
}

#[tokio::test]
async fn a_name_is_refused_when_any_of_its_addresses_is_not_public() {
    let cases: [(&'static [&'static str], bool); 6] = [
        (&["93.184.215.14"], true),
        (
            &["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            true,
        ),
        (&["127.0.0.1"], false),
        (&["93.184.215.14", "10.0.0.7"], false),
        (&["::ffff:192.168.0.1"], false),
        (&[], false),
    ];
    for (addresses, allowed) in cases {
        let resolver =
            PublicOnlyResolver::new(CallbackPolicy::PublicHttps, resolving_to(addresses));
        assert_eq!(
            resolver.addresses("hooks.example.com").await.is_ok(),
            allowed,
            "{addresses:?}"
        );
    }
}

#[tokio::test]
async fn only_localhost_itself_is_opened_by_allow_local_and_only_to_127_0_0_1() {
    let lookup = resolving_to(&["192.168.0.1"]);
    let local = PublicOnlyResolver::new(CallbackPolicy::AllowLocal, lookup.clone());
    assert_eq!(
        local.addresses("localhost").await.unwrap(),
        [IpAddr::V4(Ipv4Addr::LOCALHOST)]
    );
    // A private answer stays refused, whatever the policy.
    assert!(local.addresses("hooks.example.com").await.is_err());
    assert!(local.addresses("app.localhost").await.is_err());
    let strict = PublicOnlyResolver::new(CallbackPolicy::PublicHttps, lookup);
    assert!(strict.addresses("localhost").await.is_err());
    assert!(strict.addresses("localhost.").await.is_err());
}
