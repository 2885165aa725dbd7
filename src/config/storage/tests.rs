use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::*;

const CLIENT_ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

fn resolve(pairs: &[(&str, &str)]) -> Result<StorageSettings, ConfigError> {
    let vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = Env(&vars);
    let mode = if env.get("FUNCTIONS_CUSTOMHANDLER_PORT").is_some() {
        Mode::Host { port: 1 }
    } else {
        Mode::Standalone {
            port: 1,
            function_keys: None,
            bind: crate::config::Bind {
                address: std::net::Ipv4Addr::LOCALHOST.into(),
                reason: "a test",
            },
        }
    };
    storage_settings(&env, &mode, "hot-topics".to_owned())
}

fn identity(pairs: &[(&str, &str)]) -> IdentityConnection {
    match resolve(pairs) {
        Ok(StorageSettings::Identity { connection, .. }) => *connection,
        other => panic!("expected an identity-based connection for {pairs:?}, got {other:?}"),
    }
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

#[test]
fn an_account_name_with_a_user_assigned_identity_selects_that_account_its_endpoints_and_identity() {
    let connection = identity(&[
        ("AzureWebJobsStorage__accountName", "wombledata"),
        ("AzureWebJobsStorage__credential", "managedidentity"),
        ("AzureWebJobsStorage__clientId", CLIENT_ID),
    ]);
    assert_eq!(
        connection,
        IdentityConnection {
            source: "AzureWebJobsStorage",
            account: "wombledata".into(),
            blob_endpoint: url("https://wombledata.blob.core.windows.net"),
            queue_endpoint: Some(url("https://wombledata.queue.core.windows.net")),
            identity: Identity::ManagedIdentity {
                client_id: Some(CLIENT_ID.into())
            },
        }
    );
}

#[test]
fn service_uris_win_over_the_account_name_and_name_the_account_when_it_is_not_given() {
    let connection = identity(&[
        (
            "AzureWebJobsStorage__blobServiceUri",
            "https://wombledata.blob.core.windows.net/",
        ),
        (
            "AzureWebJobsStorage__queueServiceUri",
            "https://wombledata.queue.core.windows.net",
        ),
        ("AzureWebJobsStorage__credential", "managedidentity"),
    ]);
    assert_eq!(connection.account, "wombledata");
    assert_eq!(
        connection.blob_endpoint,
        url("https://wombledata.blob.core.windows.net")
    );
    assert_eq!(
        connection.queue_endpoint,
        Some(url("https://wombledata.queue.core.windows.net"))
    );
    assert_eq!(
        connection.identity,
        Identity::ManagedIdentity { client_id: None }
    );

    // A private endpoint: the URIs are used as given, the account as named.
    let connection = identity(&[
        ("AzureWebJobsStorage__accountName", "wombledata"),
        (
            "AzureWebJobsStorage__blobServiceUri",
            "https://wombledata.privatelink.blob.core.windows.net",
        ),
    ]);
    assert_eq!(connection.account, "wombledata");
    assert_eq!(
        connection.blob_endpoint,
        url("https://wombledata.privatelink.blob.core.windows.net")
    );
    assert_eq!(
        connection.queue_endpoint,
        Some(url("https://wombledata.queue.core.windows.net"))
    );

    // Azurite's path-style URI names the account in its path.
    let connection = identity(&[(
        "AzureWebJobsStorage__blobServiceUri",
        "http://127.0.0.1:10000/devstoreaccount1",
    )]);
    assert_eq!(connection.account, "devstoreaccount1");
    assert_eq!(connection.queue_endpoint, None);
}

#[test]
fn without_a_credential_setting_the_default_chain_is_used_with_any_client_id() {
    let connection = identity(&[("AzureWebJobsStorage__accountName", "wombledata")]);
    assert_eq!(connection.identity, Identity::Default { client_id: None });
    let connection = identity(&[
        ("AzureWebJobsStorage__accountName", "wombledata"),
        ("AzureWebJobsStorage__clientId", CLIENT_ID),
    ]);
    assert_eq!(
        connection.identity,
        Identity::Default {
            client_id: Some(CLIENT_ID.into())
        }
    );
}

#[test]
fn setting_names_under_the_prefix_are_matched_ignoring_case_as_the_host_does() {
    let connection = identity(&[
        ("AzureWebJobsStorage__AccountName", "wombledata"),
        ("AzureWebJobsStorage__Credential", "ManagedIdentity"),
    ]);
    assert_eq!(connection.account, "wombledata");
    assert_eq!(
        connection.identity,
        Identity::ManagedIdentity { client_id: None }
    );
}

#[test]
fn the_output_connection_wins_over_azure_web_jobs_storage_in_either_form() {
    let connection = identity(&[
        ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
        (
            "OUTPUT_STORAGE_CONNECTION_STRING__accountName",
            "outputdata",
        ),
        (
            "OUTPUT_STORAGE_CONNECTION_STRING__credential",
            "managedidentity",
        ),
    ]);
    assert_eq!(connection.source, "OUTPUT_STORAGE_CONNECTION_STRING");
    assert_eq!(connection.account, "outputdata");

    match resolve(&[
        ("AzureWebJobsStorage__accountName", "hostdata"),
        (
            "OUTPUT_STORAGE_CONNECTION_STRING",
            "UseDevelopmentStorage=true",
        ),
    ])
    .unwrap()
    {
        StorageSettings::ConnectionString {
            connection_string, ..
        } => assert_eq!(
            connection_string.expose_secret(),
            "UseDevelopmentStorage=true"
        ),
        other => panic!("expected the output connection string, got {other:?}"),
    }
}

#[test]
fn a_connection_string_wins_over_the_identity_form_of_the_same_connection() {
    let settings = resolve(&[
        ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
        ("AzureWebJobsStorage__accountName", "hostdata"),
    ])
    .unwrap();
    assert!(
        matches!(settings, StorageSettings::ConnectionString { .. }),
        "{settings:?}"
    );
}

#[test]
fn azure_web_jobs_storage_wins_over_the_output_storage_account() {
    let connection = identity(&[
        ("OUTPUT_STORAGE_ACCOUNT", "outputdata"),
        ("AzureWebJobsStorage__accountName", "hostdata"),
    ]);
    assert_eq!(connection.account, "hostdata");

    let connection = identity(&[("OUTPUT_STORAGE_ACCOUNT", "outputdata")]);
    assert_eq!(connection.source, "OUTPUT_STORAGE_ACCOUNT");
    assert_eq!(
        connection.blob_endpoint,
        url("https://outputdata.blob.core.windows.net")
    );
    assert_eq!(connection.identity, Identity::Default { client_id: None });
}

#[test]
fn unusable_identity_settings_are_refused_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("AzureWebJobsStorage__accountName", "Womble_Data")],
            "AzureWebJobsStorage__accountName",
        ),
        (
            &[("AzureWebJobsStorage__credential", "managedidentity")],
            "AzureWebJobsStorage__accountName",
        ),
        (
            &[("AzureWebJobsStorage__clientId", CLIENT_ID)],
            "AzureWebJobsStorage__accountName",
        ),
        (
            &[
                ("AzureWebJobsStorage__accountName", "wombledata"),
                ("AzureWebJobsStorage__credential", "clientsecret"),
            ],
            "AzureWebJobsStorage__credential",
        ),
        (
            &[
                ("AzureWebJobsStorage__accountName", "wombledata"),
                ("AzureWebJobsStorage__clientId", "not-a-guid"),
            ],
            "AzureWebJobsStorage__clientId",
        ),
        (
            &[(
                "AzureWebJobsStorage__blobServiceUri",
                "http://wombledata.blob.core.windows.net",
            )],
            "AzureWebJobsStorage__blobServiceUri",
        ),
        (
            &[(
                "AzureWebJobsStorage__blobServiceUri",
                "https://wombledata.blob.core.windows.net/?sv=2024&sig=x",
            )],
            "AzureWebJobsStorage__blobServiceUri",
        ),
        (
            &[
                ("AzureWebJobsStorage__accountName", "wombledata"),
                ("AzureWebJobsStorage__queueServiceUri", "queue"),
            ],
            "AzureWebJobsStorage__queueServiceUri",
        ),
        (
            &[(
                "OUTPUT_STORAGE_CONNECTION_STRING__blobServiceUri",
                "ftp://x",
            )],
            "OUTPUT_STORAGE_CONNECTION_STRING__blobServiceUri",
        ),
        (&[("OUTPUT_STORAGE_ACCOUNT", "a")], "OUTPUT_STORAGE_ACCOUNT"),
    ];
    for (pairs, variable) in cases {
        let error = resolve(pairs).expect_err(&format!("{pairs:?}"));
        assert_eq!(error.variable, *variable, "{pairs:?}: {error}");
        assert!(error.to_string().contains(variable), "{error}");
    }
}

#[test]
fn under_the_host_in_azure_without_storage_the_handler_refuses_naming_what_it_looked_for() {
    for marker in AZURE_MARKERS {
        let error =
            resolve(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "1"), (marker, "x")]).expect_err(marker);
        let message = error.to_string();
        for name in [
            marker,
            "AzureWebJobsStorage",
            "AzureWebJobsStorage__accountName",
            "AzureWebJobsStorage__blobServiceUri",
            "OUTPUT_STORAGE_CONNECTION_STRING",
            "OUTPUT_STORAGE_ACCOUNT",
        ] {
            assert!(message.contains(name), "{name} missing from: {message}");
        }
    }
}

#[test]
fn the_local_store_stays_the_default_off_azure_in_standalone_mode_and_when_asked_for() {
    for pairs in [
        &[][..],
        &[("FUNCTIONS_CUSTOMHANDLER_PORT", "1")][..],
        &[("WEBSITE_INSTANCE_ID", "x")][..],
        &[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "1"),
            ("WEBSITE_SITE_NAME", "x"),
            ("OUTPUT_STORAGE_DIR", "/home/data"),
        ][..],
    ] {
        let settings = resolve(pairs).unwrap();
        assert!(
            matches!(settings, StorageSettings::LocalDir { .. }),
            "{pairs:?}: {settings:?}"
        );
    }
}

/// The job queue's account for `pairs`: `Some(connection string)` or `Some(account name)` of
/// an identity-based one.
fn queue_account_of(pairs: &[(&str, &str)]) -> Option<String> {
    let vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let storage = resolve(pairs).unwrap();
    match queue_account(&Env(&vars), &storage).unwrap() {
        None => None,
        Some(StorageAccount::ConnectionString(text)) => Some(text.expose_secret().to_owned()),
        Some(StorageAccount::Identity(connection)) => Some(connection.account),
    }
}

#[test]
fn the_job_queue_is_in_the_account_the_queue_trigger_watches_when_the_output_has_its_own() {
    const HOST: &str = "AccountName=hostacct;AccountKey=a2V5;EndpointSuffix=core.windows.net";
    const OUTPUT: &str = "AccountName=outacct;AccountKey=a2V5;EndpointSuffix=core.windows.net";
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: [Case; 6] = [
        (
            &[
                ("OUTPUT_STORAGE_CONNECTION_STRING", OUTPUT),
                ("AzureWebJobsStorage", HOST),
            ],
            Some(HOST),
        ),
        (
            &[
                ("OUTPUT_STORAGE_CONNECTION_STRING__accountName", "outacct"),
                ("AzureWebJobsStorage__accountName", "hostacct"),
                ("AzureWebJobsStorage__credential", "managedidentity"),
            ],
            Some("hostacct"),
        ),
        (
            &[
                ("OUTPUT_STORAGE_ACCOUNT", "outacct"),
                (
                    "AzureWebJobsStorage__queueServiceUri",
                    "https://hostacct.queue.core.windows.net",
                ),
                (
                    "AzureWebJobsStorage__blobServiceUri",
                    "https://hostacct.blob.core.windows.net",
                ),
            ],
            Some("hostacct"),
        ),
        (
            &[
                ("OUTPUT_STORAGE_CONNECTION_STRING", OUTPUT),
                ("AzureWebJobsStorage__accountName", "hostacct"),
                ("AzureWebJobsStorage__clientId", CLIENT_ID),
            ],
            Some("hostacct"),
        ),
        // Without AzureWebJobsStorage, the output account is the only one there is.
        (
            &[("OUTPUT_STORAGE_CONNECTION_STRING", OUTPUT)],
            Some(OUTPUT),
        ),
        (&[("OUTPUT_STORAGE_DIR", "/tmp/x")], None),
    ];
    for (pairs, expected) in cases {
        assert_eq!(queue_account_of(pairs).as_deref(), expected, "{pairs:?}");
    }
}
