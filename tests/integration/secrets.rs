//! Reddit credentials from Key Vault with the app's managed identity, and secrets kept out of
//! logs and stored documents.

use std::time::Duration;

use testkit::app::{job, JobApi, TestApp};
use testkit::fake_reddit::{CLIENT_ID, CLIENT_SECRET};
use testkit::key_vault::FakeKeyVault;

const WAIT: Duration = Duration::from_secs(30);

/// An app that reads its Reddit credentials from a vault holding `secrets`: none are in its
/// environment (empty means unset).
async fn app_reading(secrets: &[(&str, &str)]) -> (FakeKeyVault, TestApp) {
    let vault = FakeKeyVault::start(secrets).await;
    let mut env = vec![
        ("REDDIT_CLIENT_ID".to_owned(), String::new()),
        ("REDDIT_CLIENT_SECRET".to_owned(), String::new()),
    ];
    env.extend(vault.env());
    let app =
        TestApp::start_with(env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()).await;
    (vault, app)
}

async fn everything_stored(app: &TestApp) -> String {
    let mut all = String::new();
    for name in app.container.names().await {
        all.push_str(&String::from_utf8_lossy(
            &app.container.read(&name).await.unwrap_or_default(),
        ));
    }
    all
}

#[tokio::test]
async fn credentials_come_from_key_vault_and_never_appear_in_logs_or_blobs() {
    let (vault, app) = app_reading(&[
        ("reddit-client-id", CLIENT_ID),
        ("reddit-client-secret", CLIENT_SECRET),
    ])
    .await;
    let id = app.submit(job(&["technology", "gadgets"], 2)).await;
    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    // The fake Reddit only hands out a token for the right id and secret, so the job's
    // success shows the vault's values were used; one token served the whole job.
    assert_eq!(app.reddit.tokens_issued(), 1);
    let seen: Vec<String> = vault
        .seen()
        .iter()
        .map(|path| path.trim_end_matches('/').to_owned())
        .collect();
    assert!(seen.contains(&"/msi/token".to_owned()), "{seen:?}");
    assert!(
        seen.contains(&"/secrets/reddit-client-id".to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"/secrets/reddit-client-secret".to_owned()),
        "{seen:?}"
    );

    let logs = app.host.logs();
    let stored = everything_stored(&app).await;
    for secret in [
        CLIENT_SECRET,
        "vault-access-token",
        "token-1",
        testkit::key_vault::IDENTITY_HEADER,
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} appears in the handler log"
        );
        assert!(!stored.contains(secret), "{secret} appears in storage");
    }
}

#[tokio::test]
async fn a_job_whose_credentials_cannot_be_loaded_fails_with_a_clear_error() {
    // The vault lacks the secret.
    let (_vault, app) = app_reading(&[("reddit-client-id", CLIENT_ID)]).await;
    let id = app.submit(job(&["technology"], 2)).await;
    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "failed");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("Reddit credentials could not be loaded"),
        "{error}"
    );
    assert!(error.contains("reddit-client-secret"), "{error}");
    assert!(
        app.reddit.requests().is_empty(),
        "nothing may reach Reddit without credentials"
    );
}

#[tokio::test]
async fn environment_credentials_never_appear_in_logs_or_blobs() {
    let app = TestApp::start_with(vec![("RUST_LOG", "debug")]).await;
    let id = app.submit(job(&["technology"], 2)).await;
    app.wait_terminal(&id, WAIT).await;
    // The log is read from the handler's pipes by other threads: it may lag the answers.
    assert!(
        app.host.wait_for_log(&id, WAIT).await,
        "the debug log should at least name the job"
    );
    let logs = app.host.logs();
    let stored = everything_stored(&app).await;
    for secret in [
        CLIENT_SECRET,
        "token-1",
        "AccountKey=",
        &testkit::azurite::ACCOUNT_KEY[..62],
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} appears in the handler log"
        );
        assert!(!stored.contains(secret), "{secret} appears in storage");
    }
}

/// The Reddit secret is rotated mid-run: Reddit takes only the new one, every token it handed
/// out is void, and the vault holds the new value. The next job succeeds without a restart:
/// Reddit's refusal has the handler read the vault again at once.
#[tokio::test]
async fn a_secret_rotated_in_key_vault_mid_run_is_taken_up_without_a_restart() {
    const ROTATED: &str = "rotated-reddit-secret";
    let (vault, app) = app_reading(&[
        ("reddit-client-id", CLIENT_ID),
        ("reddit-client-secret", CLIENT_SECRET),
    ])
    .await;
    let before = app.submit(job(&["technology"], 2)).await;
    assert_eq!(
        app.wait_terminal(&before, WAIT).await["status"],
        "completed"
    );

    app.reddit.add_client(CLIENT_ID, ROTATED);
    app.reddit.expire_tokens();
    vault.set_secret("reddit-client-secret", ROTATED);

    for topics in [["gadgets"], ["programming"]] {
        let after = app.submit(job(&topics, 2)).await;
        let done = app.wait_terminal(&after, WAIT).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    assert_eq!(app.host.restarts(), 0);
    let secret_reads = vault
        .seen()
        .iter()
        .filter(|path| path.trim_end_matches('/') == "/secrets/reddit-client-secret")
        .count();
    assert_eq!(
        secret_reads, 2,
        "read at the first job and once after the refusal"
    );
}
