//! Azurite, the storage emulator the tests and the benchmark run against: the one `make test`
//! started, with a container and queues of a test's own on it ([`Container::fresh`],
//! [`Queue::fresh`]), so tests run in parallel without seeing each other's blobs or messages;
//! or an Azurite of a test's own ([`OwnAzurite`], in `azurite/own.rs`).

use std::sync::Arc;

use summary_womble::store::azure::AzureBlobStore;
use summary_womble::store::queue::azure::AzureQueue;
use summary_womble::store::queue::{poison_queue_name, MessageQueue};
use summary_womble::store::{BlobName, BlobStore};

mod own;

pub use own::OwnAzurite;

/// The well-known development account of Azurite and the storage emulator.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its key, which Microsoft publishes: no secret. (`scripts/azurite.sh` has its own copy, and
/// so does the app, for `UseDevelopmentStorage=true`.)
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A connection string for the development account on Azurite's services on loopback: the
/// blob service on `blob_port` and the queue service on `queue_port`; a service without a port
/// is left out.
pub fn account_connection_string(blob_port: Option<u16>, queue_port: Option<u16>) -> String {
    let mut text =
        format!("DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};");
    if let Some(port) = blob_port {
        text.push_str(&format!("BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"));
    }
    if let Some(port) = queue_port {
        text.push_str(&format!("QueueEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"));
    }
    text
}

/// The connection string `make test` exports for the Azurite it started. It names both the
/// blob and the queue service (`BlobEndpoint`, `QueueEndpoint`), as `AzureWebJobsStorage` does,
/// so it serves [`AzureBlobStore`] and [`AzureQueue`] alike.
pub fn connection_string() -> String {
    std::env::var("AZURITE_CONNECTION_STRING").unwrap_or_else(|_| {
        panic!(
            "AZURITE_CONNECTION_STRING is not set: these tests need Azurite. Run them with \
             `make test`, which installs and starts it."
        )
    })
}

/// The second account of the Azurite `make test` started (`AZURITE_SECOND_CONNECTION_STRING`):
/// for an app whose host storage (`AzureWebJobsStorage`) is not its output account.
pub fn second_account_connection_string() -> String {
    std::env::var("AZURITE_SECOND_CONNECTION_STRING").unwrap_or_else(|_| {
        panic!(
            "AZURITE_SECOND_CONNECTION_STRING is not set: run the tests with `make test` (or \
             scripts/with-azurite.sh), which starts Azurite with its second account."
        )
    })
}

/// The queue service of the Azurite `make test` started
/// (`http://127.0.0.1:<AZURITE_QUEUE_PORT>/devstoreaccount1`).
pub fn queue_endpoint() -> String {
    let port = std::env::var("AZURITE_QUEUE_PORT").unwrap_or_else(|_| {
        panic!(
            "AZURITE_QUEUE_PORT is not set: these tests need Azurite's queue service. Run them \
             with `make test` (or scripts/with-azurite.sh), which starts it."
        )
    });
    format!("http://127.0.0.1:{port}/{ACCOUNT}")
}

/// The names of every queue in the account `connection_string` reaches, in name order: which
/// queues exist (on an Azurite of a test's own, every queue there is the test's).
pub async fn queue_names(connection_string: &str) -> Vec<String> {
    AzureQueue::names_in_account(connection_string)
        .await
        .expect("Azurite lists its queues")
}

/// A queue of its own for one test (a fresh name; created by [`Queue::fresh`]).
#[derive(Clone)]
pub struct Queue {
    pub name: String,
    pub queue: AzureQueue,
    connection_string: String,
}

impl Queue {
    /// A queue with a fresh name on the Azurite `make test` started, created.
    pub async fn fresh() -> Self {
        Self::fresh_at(&connection_string()).await
    }

    /// A queue with a fresh name at `connection_string`, created.
    pub async fn fresh_at(connection_string: &str) -> Self {
        let queue = Self::named(
            connection_string,
            &format!("t-{}", uuid::Uuid::new_v4().simple()),
        );
        queue.queue.ensure_queue().await.expect("Azurite answers");
        queue
    }

    /// The queue `name` at `connection_string`, not created.
    pub fn named(connection_string: &str, name: &str) -> Self {
        let queue = AzureQueue::from_connection_string(connection_string, name)
            .expect("the Azurite connection string works");
        Self {
            name: name.to_owned(),
            queue,
            connection_string: connection_string.to_owned(),
        }
    }

    /// The connection string that reaches this queue's service (an `AzureWebJobsStorage`).
    pub fn connection_string(&self) -> &str {
        &self.connection_string
    }

    /// Its poison queue (`<name>-poison`), not created.
    pub fn poison(&self) -> Self {
        Self::named(&self.connection_string, &poison_queue_name(&self.name))
    }

    pub async fn send(&self, text: &str) {
        self.queue
            .send(text)
            .await
            .expect("Azurite takes the message");
    }

    /// The decoded texts of the visible messages, without receiving them.
    pub async fn visible_texts(&self) -> Vec<String> {
        use base64::Engine as _;
        let stored = self.queue.peek_stored().await.expect("Azurite peeks");
        stored
            .into_iter()
            .map(|text| {
                base64::engine::general_purpose::STANDARD
                    .decode(&text)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .unwrap_or(text)
            })
            .collect()
    }
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

    /// The connection string that reaches this container's service (an `AzureWebJobsStorage`).
    pub fn connection_string(&self) -> &str {
        &self.connection_string
    }

    /// The settings that point the handler at this container: `AzureWebJobsStorage` and
    /// `OUTPUT_CONTAINER`, whatever the dispatch.
    pub fn storage_env(&self) -> Vec<(String, String)> {
        vec![
            ("AzureWebJobsStorage".into(), self.connection_string.clone()),
            ("OUTPUT_CONTAINER".into(), self.name.clone()),
        ]
    }

    /// The environment that points the handler at this container, and, when the suite runs
    /// with queue dispatch ([`crate::Dispatch::under_test`]), at a job queue of the same name.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.storage_env();
        if crate::Dispatch::under_test() == crate::Dispatch::Queue {
            env.push(("JOB_DISPATCH".into(), "queue".into()));
            env.push(("JOB_QUEUE".into(), self.name.clone()));
        }
        env
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

    /// The names of the jobs' status documents (`jobs/<id>/status.json`), in order: one per
    /// job the app stored.
    pub async fn status_documents(&self) -> Vec<String> {
        self.names()
            .await
            .into_iter()
            .filter(|name| crate::status::is_blob_name(name))
            .collect()
    }

    /// The job's status document as stored (see [`crate::status`]).
    pub async fn stored_status(&self, job_id: &str) -> Option<serde_json::Value> {
        crate::status::read(self.store.as_ref(), job_id)
            .await
            .map(|stored| stored.document)
    }
}
