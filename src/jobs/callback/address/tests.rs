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

/// The table the tests hold `is_public` to.
fn table() -> SpecialPurpose {
    SpecialPurpose::parse(SPECIAL_PURPOSE).expect("special_purpose.tsv reads")
}

/// The text form of an address of `block`'s family, for messages.
fn shown(block: &Block, address: u128) -> IpAddr {
    if block.bits == 32 {
        IpAddr::V4(Ipv4Addr::from(address as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(address))
    }
}

/// The block's first and last addresses and two inside it, in the order of the row's length.
fn representatives(block: &Block) -> [u128; 4] {
    let host = !block.mask() & (u128::MAX >> (128 - block.bits));
    [
        block.network,
        block.network | host,
        block.network | (host & 0x5555_5555_5555_5555_5555_5555_5555_5555),
        block.network | (host >> 1),
    ]
}

/// The most specific block that holds `address`, found by comparing the address with each
/// block's first and last address (not by the mask the table itself uses).
fn deciding(blocks: &[Block], bits: u32, address: u128) -> &Block {
    blocks
        .iter()
        .filter(|block| block.bits == bits)
        .filter(|block| {
            let [first, last, ..] = representatives(block);
            (first..=last).contains(&address)
        })
        .max_by_key(|block| block.length)
        .expect("every family has a default row")
}

/// The IPv4 address an `embedded` block carries in the 32 bits after its prefix.
fn carried(block: &Block, address: u128) -> Ipv4Addr {
    let after_prefix = address << block.length;
    Ipv4Addr::from((after_prefix >> 96) as u32)
}

#[test]
fn the_special_purpose_table_reads_and_has_a_default_for_each_family() {
    let table = table();
    for (bits, default) in [(32, "0.0.0.0/0"), (128, "::/0")] {
        assert!(
            table
                .blocks
                .iter()
                .any(|block| block.bits == bits && block.length == 0),
            "no default row {default}"
        );
    }
    let rows = table.blocks.len();
    assert!(rows >= 60, "only {rows} rows: a registry was left out");
    for broken in [
        "10.0.0.1/8\trefuse\tFalse\tx\ty\tz",
        "10.0.0.0/33\trefuse\tFalse\tx\ty\tz",
        "10.0.0.0/8\tembedded\tFalse\tx\ty\tz",
        "2002::/16\tsometimes\tN/A\tx\ty\tz",
        "2002::/16\trefuse\tmaybe\tx\ty\tz",
        "2002::/16\trefuse\tN/A\tx\ty",
        "10.0.0.0/8\trefuse\tFalse\tx\ty\tz\n10.0.0.0/8\tallow\tFalse\tx\ty\tz",
    ] {
        assert!(
            SpecialPurpose::parse(broken).is_err(),
            "{broken:?} was read"
        );
    }
}

#[test]
fn no_block_a_registry_calls_not_globally_reachable_is_opened_to_callbacks() {
    for block in &table().blocks {
        let from_a_registry = block.source.ends_with("-special");
        assert_eq!(
            from_a_registry,
            block.reachable != Reachable::Unlisted,
            "{}: only registry rows have a reachability",
            block.name
        );
        if block.rule == Rule::Allow {
            assert!(
                block.source.ends_with("-space") && block.length <= 3,
                "{} is opened, but only the address-space defaults may be",
                block.name
            );
        }
        if !from_a_registry || block.reachable == Reachable::True || block.rule != Rule::Refuse {
            continue;
        }
        // Refused whole: every edge and inner address is refused, whatever rows lie inside.
        for address in representatives(block) {
            let ip = shown(block, address);
            assert!(!is_public(ip), "{ip} ({}) is refused", block.name);
        }
    }
}

#[test]
fn every_block_decides_its_first_last_and_inner_addresses_as_the_table_says() {
    let table = table();
    for block in &table.blocks {
        let mut decided = 0;
        for address in representatives(block) {
            if !std::ptr::eq(deciding(&table.blocks, block.bits, address), block) {
                continue; // a more specific row decides this one, and has its own turn
            }
            decided += 1;
            let ip = shown(block, address);
            let expected = match block.rule {
                Rule::Allow => true,
                Rule::Refuse => false,
                Rule::Embedded => is_public(carried(block, address).into()),
            };
            assert_eq!(is_public(ip), expected, "{ip} ({})", block.name);
        }
        assert!(
            decided > 0,
            "no first, last or inner address of {} is decided by its own row",
            block.name
        );
    }
}

#[test]
fn an_ipv4_address_in_ipv6_clothing_is_judged_as_the_ipv4_address_itself() {
    let table = table();
    let ipv4: Vec<Ipv4Addr> = table
        .blocks
        .iter()
        .filter(|block| block.bits == 32)
        .flat_map(representatives)
        .map(|address| Ipv4Addr::from(address as u32))
        .chain(
            ["8.8.8.8", "20.50.2.1", "168.63.129.15", "168.63.129.17"].map(|a| a.parse().unwrap()),
        )
        .collect();
    for clothing in table
        .blocks
        .iter()
        .filter(|block| block.rule == Rule::Embedded)
    {
        for &v4 in &ipv4 {
            let dressed = clothing.network | (u128::from(u32::from(v4)) << (96 - clothing.length));
            let v6 = Ipv6Addr::from(dressed);
            assert_eq!(
                is_public(v6.into()),
                is_public(v4.into()),
                "{v6} ({}) carries {v4}",
                clothing.name
            );
        }
    }
}

#[tokio::test]
async fn ipv4_translated_local_nat64_and_azure_platform_addresses_are_refused_at_submit_and_at_delivery(
) {
    let refused: &[&'static str] = &[
        "::ffff:0:a00:1",     // IPv4-translated 10.0.0.1
        "::ffff:0:808:808",   // IPv4-translated, even of a public address
        "::ffff:0:a9fe:a9fe", // IPv4-translated IMDS
        "64:ff9b:1::a00:1",   // local-use NAT64
        "64:ff9b:1::808:808", // local-use NAT64, even of a public address
        "64:ff9b::a9fe:a9fe", // well-known NAT64 of IMDS
        "64:ff9b::a83f:8110", // well-known NAT64 of Azure's platform address
        "168.63.129.16",      // Azure's platform address
        "::ffff:168.63.129.16",
        "2002:a83f:8110::1", // 6to4 of Azure's platform address
        "169.254.169.254",   // IMDS
        "3fff::1",           // documentation
        "5f00::1",           // SRv6 SIDs
        "2001:2::1",         // benchmarking
        "100:0:0:1::1",      // dummy prefix
        "192.0.0.9",         // PCP anycast
        "192.31.196.1",      // AS112
    ];
    for &text in refused {
        let ip: IpAddr = text.parse().unwrap();
        let host = match ip {
            IpAddr::V4(_) => text.to_owned(),
            IpAddr::V6(_) => format!("[{text}]"),
        };
        let url = format!("https://{host}/hook");
        for policy in [CallbackPolicy::PublicHttps, CallbackPolicy::AllowLocal] {
            assert!(
                crate::jobs::CallbackUrl::parse(&url, policy).is_err(),
                "{url} is refused at submit"
            );
        }
        let lookup: Lookup = Arc::new(move |_host: String| Box::pin(async move { Ok(vec![ip]) }));
        let resolver = PublicOnlyResolver::new(CallbackPolicy::AllowLocal, lookup);
        assert!(
            matches!(
                resolver.addresses("hooks.example.com").await,
                Err(RefusedHost::NotPublic)
            ),
            "a name resolving to {text} is refused at delivery"
        );
    }
}
