use super::*;

fn requested(json: serde_json::Value) -> RequestedJob {
    serde_json::from_value(json).unwrap()
}

#[test]
fn an_empty_request_takes_every_default() {
    let job =
        JobRequest::from_requested(RequestedJob::default(), CallbackPolicy::PublicHttps).unwrap();
    assert_eq!(job.topics, default_subreddits());
    assert_eq!(job.limit, Limit::DEFAULT);
    assert_eq!(job.priority, Priority::Normal);
    assert_eq!(job.source, Source::Reddit);
    assert_eq!(job.callback_url, None);
}

#[test]
fn a_rule_broken_names_its_part() {
    let cases = [
        (
            serde_json::json!({"source": "twitter"}),
            "source",
            "Unsupported source: twitter",
        ),
        (serde_json::json!({"topics": []}), "topics", "1 to 50"),
        (
            serde_json::json!({"topics": ["ok", "bad name"]}),
            "topics",
            "topics[1]",
        ),
        (serde_json::json!({"limit": 0}), "limit", "1 to 100"),
        (serde_json::json!({"limit": 101}), "limit", "1 to 100"),
        (
            serde_json::json!({"priority": "urgent"}),
            "priority",
            "priority",
        ),
        (
            serde_json::json!({"callback_url": "http://example.com/h"}),
            "callback_url",
            "https",
        ),
        (
            serde_json::json!({"callback_url": "https://10.0.0.1/h"}),
            "callback_url",
            "private",
        ),
        (
            serde_json::json!({"callback_url": "https://u:p@example.com/h"}),
            "callback_url",
            "credentials",
        ),
    ];
    for (input, field, needle) in cases {
        let error =
            JobRequest::from_requested(requested(input.clone()), CallbackPolicy::PublicHttps)
                .expect_err(&input.to_string());
        assert_eq!(error.field, field, "{input}");
        assert!(error.message.contains(needle), "{input}: {error}");
    }
}

#[test]
fn sources_round_trip_through_their_name() {
    for source in Source::ALL {
        assert_eq!(source.name().parse::<Source>(), Ok(source));
        let json = serde_json::to_value(source).unwrap();
        assert_eq!(serde_json::from_value::<Source>(json).unwrap(), source);
    }
}

#[test]
fn idempotency_keys_are_printable_ascii_of_1_to_200() {
    assert!(IdempotencyKey::parse(b"slot-2026").is_ok());
    assert!(IdempotencyKey::parse(&[b'k'; 200]).is_ok());
    assert!(IdempotencyKey::parse(&[b'k'; 201]).is_err());
    assert!(IdempotencyKey::parse(b"").is_err());
    assert!(IdempotencyKey::parse("cl\u{e9}".as_bytes()).is_err());
    assert!(IdempotencyKey::parse(b"tab\there").is_err());
}

#[test]
fn duplicate_subreddits_keep_the_first_spelling() {
    let names = [
        "Technology",
        "programming",
        "technology",
        "PROGRAMMING",
        "gadgets",
    ]
    .iter()
    .map(|n| Subreddit::parse(n).unwrap())
    .collect();
    let kept: Vec<String> = dedup_subreddits(names)
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(kept, ["Technology", "programming", "gadgets"]);
}

#[test]
fn limits_outside_1_to_100_do_not_exist() {
    assert!(Limit::new(0).is_none());
    assert!(Limit::new(101).is_none());
    assert_eq!(Limit::new(100).unwrap().get(), 100);
}
