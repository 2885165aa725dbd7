//! The Azurite container a test runs against: a fresh one per test, so tests run in parallel
//! without seeing each other's blobs.

use std::sync::Arc;

use summary_womble::store::azure::AzureBlobStore;
use summary_womble::store::{BlobName, BlobStore};

/// The connection string `make test` exports for the Azurite it started.
pub fn connection_string() -> String {
    std::env::var("AZURITE_CONNECTION_STRING").unwrap_or_else(|_| {
        panic!(
            "AZURITE_CONNECTION_STRING is not set: these tests need Azurite. Run them with \
             `make test`, which installs and starts it."
        )
    })
}

/// A container of its own for one test, already created.
pub struct Container {
    pub name: String,
    pub store: Arc<dyn BlobStore>,
    connection_string: String,
}

impl Container {
    pub async fn fresh() -> Self {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let store = AzureBlobStore::from_connection_string(&connection_string(), &name)
            .expect("the Azurite connection string works");
        store.ensure_container().await.expect("Azurite answers");
        Self {
            name,
            store: Arc::new(store),
            connection_string: connection_string(),
        }
    }

    /// The environment that points the handler at this container.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AzureWebJobsStorage".into(), self.connection_string.clone()),
            ("OUTPUT_CONTAINER".into(), self.name.clone()),
        ]
    }

    /// Every blob name, in order.
    pub async fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .store
                .list("", marker, 1000)
                .await
                .expect("Azurite lists");
            names.extend(
                page.items
                    .into_iter()
                    .map(|item| item.name.as_str().to_owned()),
            );
            match page.next_marker {
                Some(next) => marker = Some(next),
                None => return names,
            }
        }
    }

    pub async fn read(&self, name: &str) -> Option<Vec<u8>> {
        self.store
            .get(&BlobName::parse(name).unwrap())
            .await
            .expect("Azurite reads")
            .map(|blob| blob.body.to_vec())
    }

    pub async fn read_json(&self, name: &str) -> Option<serde_json::Value> {
        self.read(name)
            .await
            .map(|body| serde_json::from_slice(&body).expect("the blob is JSON"))
    }
}

/// An Azurite of the test's own, which the test may stop and start again (on the same port,
/// with the same data), to show what the handler does while storage is away.
pub struct OwnAzurite {
    state: tempfile::TempDir,
    port: u16,
}

impl OwnAzurite {
    /// Starts it on a port of its own (another, when a process takes the first meanwhile).
    pub async fn start() -> Self {
        let started = crate::port::start_on_a_free_port(
            |port| async move {
                let azurite = Self {
                    state: tempfile::tempdir().unwrap(),
                    port,
                };
                azurite.script("start").map(|()| azurite)
            },
            |failure: &String| crate::port::is_bind_conflict(failure),
        )
        .await;
        started.unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Runs `scripts/azurite.sh <action>`; `Err` holds what it printed.
    fn script(&self, action: &str) -> Result<(), String> {
        let output = std::process::Command::new(crate::app_root().join("scripts/azurite.sh"))
            .arg(action)
            .arg(self.state.path())
            .env("AZURITE_BLOB_PORT", self.port.to_string())
            .output()
            .expect("scripts/azurite.sh runs");
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "azurite.sh {action} failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Starts it again, on the same port with the same data.
    pub fn up(&self) {
        self.script("start")
            .unwrap_or_else(|failure| panic!("{failure}"));
    }

    pub fn down(&self) {
        self.script("stop")
            .unwrap_or_else(|failure| panic!("{failure}"));
    }

    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1;",
            self.port
        )
    }

    /// A container on this Azurite, created.
    pub async fn container(&self) -> Container {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let store =
            AzureBlobStore::from_connection_string(&self.connection_string(), &name).unwrap();
        store.ensure_container().await.expect("own Azurite answers");
        Container {
            name,
            store: Arc::new(store),
            connection_string: self.connection_string(),
        }
    }
}

impl Drop for OwnAzurite {
    fn drop(&mut self) {
        // Stopping is best effort here: a panic while unwinding would abort the test run.
        let _ = self.script("stop");
    }
}
