use super::*;
use secrecy::ExposeSecret;
use std::path::PathBuf;

/// Settings read from `pairs` alone, as the process environment would hold them.
pub(super) fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::from_vars(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn nothing_configured_means_standalone_on_7071_with_the_local_store() {
    let settings = settings(&[]).unwrap();
    assert!(matches!(
        settings.mode,
        Mode::Standalone {
            port: 7071,
            function_keys: None,
            ..
        }
    ));
    match settings.storage {
        StorageSettings::LocalDir { dir, container } => {
            assert_eq!(dir, PathBuf::from("./.data"));
            assert_eq!(container, "hot-topics");
        }
        other => panic!("expected the local store, got {other:?}"),
    }
    assert_eq!(settings.timer.subreddits.len(), 7);
    assert_eq!(settings.timer.limit, Limit::DEFAULT);
    assert_eq!(settings.jobs.max_concurrent_jobs, 4);
}

#[test]
fn the_host_port_selects_host_mode_on_loopback() {
    let settings = settings(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "4567"), ("PORT", "1")]).unwrap();
    assert!(settings.mode.is_host());
    assert_eq!(settings.mode.listen_addr().to_string(), "127.0.0.1:4567");
}

#[test]
fn the_output_connection_string_wins_over_azure_web_jobs_storage() {
    let settings = settings(&[
        ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
        ("OUTPUT_STORAGE_CONNECTION_STRING", "AccountName=b"),
    ])
    .unwrap();
    match settings.storage {
        StorageSettings::ConnectionString {
            connection_string, ..
        } => assert_eq!(connection_string.expose_secret(), "AccountName=b"),
        other => panic!("expected a connection string, got {other:?}"),
    }
}

#[test]
fn function_keys_are_split_on_commas() {
    let settings = settings(&[("FUNCTION_KEYS", "one, two,,")]).unwrap();
    match settings.mode {
        Mode::Standalone {
            function_keys: Some(keys),
            ..
        } => {
            let keys: Vec<_> = keys.iter().map(|k| k.expose_secret().to_owned()).collect();
            assert_eq!(keys, ["one", "two"]);
        }
        other => panic!("expected standalone keys, got {other:?}"),
    }
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let settings = settings(&[
        ("REDDIT_CLIENT_SECRET", "hunter2-secret"),
        (
            "OUTPUT_STORAGE_CONNECTION_STRING",
            "AccountKey=topsecretkey",
        ),
    ])
    .unwrap();
    let debug = format!("{settings:?}");
    assert!(!debug.contains("hunter2-secret"), "{debug}");
    assert!(!debug.contains("topsecretkey"), "{debug}");
}

#[test]
fn bad_settings_are_refused_naming_the_variable() {
    let cases: &[(&str, &str)] = &[
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "not-a-port"),
        ("PORT", "70000"),
        ("FUNCTION_KEYS", " , "),
        ("OUTPUT_CONTAINER", "Bad_Name"),
        ("REDDIT_API_URL", "not a url"),
        ("REDDIT_AUTH_URL", "ftp://example.com"),
        ("MAX_CONCURRENT_JOBS", "0"),
        ("JOB_STALE_AFTER_SECONDS", "soon"),
        ("JOB_RETENTION_DAYS", "0"),
        ("HOT_TOPICS_SUBREDDITS", "ok,not a name"),
        ("HOT_TOPICS_LIMIT", "101"),
        ("STATUS_CHECK_DELAY_SECONDS", "-1"),
        ("ALLOW_INSECURE_CALLBACKS", "maybe"),
        ("LOG_FORMAT", "xml"),
        ("SUMMARY_WOMBLE_URL", "womble"),
        ("TIMER_SCHEDULE", "0 */6 * * *"),
        ("JOB_DISPATCH", "kafka"),
        ("JOB_QUEUE", "Jobs_Queue"),
        // Room for "-poison" within Azure's 63 characters.
        (
            "JOB_QUEUE",
            "a-queue-name-that-is-fifty-seven-characters-long-so-no-xy",
        ),
        ("COMPLETION_QUEUE", "Done_Queue"),
        (
            "COMPLETION_QUEUE",
            "a-queue-name-that-is-fifty-seven-characters-long-so-no-xy",
        ),
        // The job queue's own name, and its poison queue's: RunJob would take hand-offs.
        ("COMPLETION_QUEUE", DEFAULT_JOB_QUEUE),
        ("COMPLETION_QUEUE", "hot-topics-jobs-poison"),
    ];
    for (variable, value) in cases {
        let error = settings(&[(variable, value)]).expect_err(variable);
        assert_eq!(error.variable, *variable);
        assert!(error.to_string().contains(variable), "{error}");
    }
}

#[test]
fn queue_dispatch_is_read_with_its_queue() {
    let azurite = ("AzureWebJobsStorage", "UseDevelopmentStorage=true");
    let inline = settings(&[azurite]).unwrap();
    assert_eq!(inline.jobs.dispatch, DispatchSettings::Inline);
    let queued = settings(&[azurite, ("JOB_DISPATCH", "Queue")]).unwrap();
    assert_eq!(
        queued.jobs.dispatch,
        DispatchSettings::Queue {
            queue: DEFAULT_JOB_QUEUE.to_owned()
        }
    );
    let named = settings(&[azurite, ("JOB_DISPATCH", "queue"), ("JOB_QUEUE", "jobs-2")]).unwrap();
    assert_eq!(
        named.jobs.dispatch,
        DispatchSettings::Queue {
            queue: "jobs-2".to_owned()
        }
    );
}

#[test]
fn the_completion_queue_is_read_and_needs_the_queue_account_whatever_the_dispatch() {
    let azurite = ("AzureWebJobsStorage", "UseDevelopmentStorage=true");
    let unset = settings(&[azurite]).unwrap();
    assert_eq!(unset.jobs.completion_queue, None);
    assert!(unset.jobs.queue_account.is_none(), "no queue, no account");
    let inline = settings(&[azurite, ("COMPLETION_QUEUE", "collected")]).unwrap();
    assert_eq!(inline.jobs.completion_queue.as_deref(), Some("collected"));
    assert_eq!(inline.jobs.dispatch, DispatchSettings::Inline);
    assert!(inline.jobs.queue_account.is_some());
    let queued = settings(&[
        azurite,
        ("JOB_DISPATCH", "queue"),
        ("JOB_QUEUE", "collected-poison"),
        ("COMPLETION_QUEUE", "collected-2"),
    ])
    .unwrap();
    assert_eq!(queued.jobs.completion_queue.as_deref(), Some("collected-2"));
    // A name the job queue would have as its poison queue is refused too.
    let error = settings(&[
        azurite,
        ("JOB_QUEUE", "collected-poison"),
        ("COMPLETION_QUEUE", "collected"),
    ])
    .unwrap_err();
    assert_eq!(error.variable, "COMPLETION_QUEUE");
    // The local directory store has no queues.
    let error = settings(&[("COMPLETION_QUEUE", "collected")]).unwrap_err();
    assert_eq!(error.variable, "COMPLETION_QUEUE");
    assert!(error.to_string().contains("AzureWebJobsStorage"), "{error}");
}

#[test]
fn queue_dispatch_without_a_storage_account_is_refused() {
    let error = settings(&[("JOB_DISPATCH", "queue")]).unwrap_err();
    assert_eq!(error.variable, "JOB_DISPATCH");
    assert!(error.to_string().contains("AzureWebJobsStorage"), "{error}");
}

#[test]
fn standalone_mode_without_keys_listens_on_this_machine_only_and_with_keys_on_every_interface() {
    let open = settings(&[("PORT", "8080")]).unwrap();
    assert_eq!(open.mode.listen_addr().to_string(), "127.0.0.1:8080");
    assert!(open
        .mode
        .listen_reason()
        .contains("FUNCTION_KEYS is not set"));
    let guarded = settings(&[("PORT", "8080"), ("FUNCTION_KEYS", "k1")]).unwrap();
    assert_eq!(guarded.mode.listen_addr().to_string(), "0.0.0.0:8080");
    assert!(guarded
        .mode
        .listen_reason()
        .contains("FUNCTION_KEYS is set"));
}

#[test]
fn bind_address_says_where_standalone_mode_listens_whatever_the_keys() {
    for (keys, bind, expected) in [
        (None, "0.0.0.0", "0.0.0.0:7071"),
        (Some("k1"), "127.0.0.1", "127.0.0.1:7071"),
        (None, " ::1 ", "[::1]:7071"),
    ] {
        let mut pairs = vec![("BIND_ADDRESS", bind)];
        pairs.extend(keys.map(|keys| ("FUNCTION_KEYS", keys)));
        let settings = settings(&pairs).unwrap();
        assert_eq!(
            settings.mode.listen_addr().to_string(),
            expected,
            "{pairs:?}"
        );
        assert_eq!(settings.mode.listen_reason(), "BIND_ADDRESS says so");
    }
    for bad in ["localhost", "0.0.0.0:80", "every"] {
        let error = settings(&[("BIND_ADDRESS", bad)]).unwrap_err();
        assert_eq!(error.variable, "BIND_ADDRESS", "{bad:?}");
    }
}
