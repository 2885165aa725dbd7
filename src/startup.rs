//! The composition root: the one place that turns [`Settings`] into running parts. Both the
//! server (`serve`) and a one-off collection (`handler collect`) build their store, Reddit
//! client and job runner here, so they cannot drift apart; the async runtime and logging are
//! started here too.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::client::ApiClient;
use crate::config::{
    DispatchSettings, Mode, RedditSettings, Settings, StorageAccount, StorageSettings,
};
use crate::functions::FunctionContext;
use crate::jobs::callback::CallbackSender;
use crate::jobs::handoff::HandoffQueue;
use crate::jobs::runner::{
    Dispatch, InlineDispatch, ListenerSettings, QueueDispatch, RunnerOptions,
};
use crate::jobs::{JobRunner, StatusRepository};
use crate::reddit::client::{default_user_agent, Endpoints, RetryPolicy};
use crate::reddit::{RedditClient, TopicSource};
use crate::retry::{retry, Backoff};
use crate::store::azure::AzureBlobStore;
use crate::store::local::LocalDirStore;
use crate::store::queue::azure::AzureQueue;
use crate::store::queue::{poison_queue_name, MessageQueue};
use crate::store::{BlobStore, StoreError};
use crate::telemetry::{self, Audience};

pub use crate::jobs::runner::Process;

/// Subreddits of one job fetched at once: a whole default job (7) in one round trip.
const FETCH_CONCURRENCY: usize = 8;

/// The async runtime of the executable.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("the async runtime cannot start")
}

/// Starts logging for `audience`.
pub fn logging(audience: Audience) {
    telemetry::init(audience);
}

/// What a server is: under the Functions host, or on its own.
fn server_process(mode: &Mode) -> Process {
    if mode.is_host() {
        Process::HostedServer
    } else {
        Process::StandaloneServer
    }
}

/// The parts a job runner works with.
pub struct Services {
    pub store: Arc<dyn BlobStore>,
    pub topics: Arc<dyn TopicSource>,
    /// The job queue and its poison queue, under queue dispatch.
    pub queues: Option<JobQueues>,
    /// The completion queue (`COMPLETION_QUEUE`), where every job that ends puts its hand-off;
    /// `None` when unset.
    pub completion: Option<Arc<dyn MessageQueue>>,
}

/// The queues of queue dispatch.
#[derive(Clone)]
pub struct JobQueues {
    pub jobs: Arc<dyn MessageQueue>,
    pub poison: Arc<dyn MessageQueue>,
}

impl Services {
    /// The configured store, the Reddit client and the queues the settings name. A queue the
    /// settings do not name is not opened, so it is never created either.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let account = || {
            settings
                .jobs
                .queue_account
                .as_ref()
                .context("the settings name a queue but no storage account for it")
        };
        let queues = match &settings.jobs.dispatch {
            DispatchSettings::Inline => None,
            DispatchSettings::Queue { queue } => Some(JobQueues {
                jobs: open_queue(account()?, queue)?,
                poison: open_queue(account()?, &poison_queue_name(queue))?,
            }),
        };
        let completion = match &settings.jobs.completion_queue {
            None => None,
            Some(queue) => Some(open_queue(account()?, queue)?),
        };
        Ok(Self {
            store: open_store(&settings.storage)?,
            topics: Arc::new(reddit_client(&settings.reddit)?),
            queues,
            completion,
        })
    }

    /// A job runner over these parts, for `process`, behaving as `settings` say.
    pub fn runner(&self, settings: &Settings, process: Process) -> anyhow::Result<JobRunner> {
        let options = RunnerOptions {
            max_concurrent_jobs: settings.jobs.max_concurrent_jobs,
            fetch_concurrency: FETCH_CONCURRENCY,
            stale_after: settings.jobs.stale_after,
            process,
            callbacks: CallbackSender::new(
                settings.jobs.callback_signing_key.clone(),
                settings.jobs.callback_policy,
            )
            .context("the HTTP client cannot be built")?,
            handoff: self.completion.clone().map(|queue| HandoffQueue {
                queue,
                container: settings.storage.container().to_owned(),
            }),
            dispatch: self.dispatch(process)?,
        };
        Ok(JobRunner::start(
            StatusRepository::new(self.store.clone()),
            self.topics.clone(),
            options,
        ))
    }

    /// How accepted jobs reach a worker: the one place a dispatch mode is chosen. A mode of
    /// its own (see `jobs::runner::Dispatch`) is one more arm here.
    fn dispatch(&self, process: Process) -> anyhow::Result<Arc<dyn Dispatch>> {
        Ok(match (&self.queues, process) {
            // A one-off collection runs its own job here, whatever the app's dispatch.
            (None, _) | (_, Process::OneOffCollection) => Arc::new(InlineDispatch::default()),
            (Some(queues), _) => Arc::new(QueueDispatch::new(
                queues.jobs.clone(),
                queues.poison.clone(),
                listener_settings()?,
            )),
        })
    }
}

/// Opens the configured blob store.
fn open_store(settings: &StorageSettings) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match settings {
        StorageSettings::ConnectionString {
            connection_string,
            container,
        } => Arc::new(
            AzureBlobStore::from_connection_string(connection_string.expose_secret(), container)
                .context("the storage connection string cannot be used")?,
        ),
        StorageSettings::Identity {
            connection,
            container,
        } => Arc::new(
            AzureBlobStore::with_identity(
                &connection.account,
                &connection.blob_endpoint,
                &connection.identity,
                container,
            )
            .with_context(|| {
                format!(
                    "the storage connection {} cannot be used with the {}",
                    connection.source, connection.identity
                )
            })?,
        ),
        StorageSettings::LocalDir { dir, container } => {
            Arc::new(LocalDirStore::new(dir.clone(), container))
        }
    })
}

/// How queue messages are treated: `host.json` in the working directory (the app root, under
/// the host and for `make run`), else the host's defaults.
fn listener_settings() -> anyhow::Result<ListenerSettings> {
    Ok(ListenerSettings::from_host_json(std::path::Path::new(
        "host.json",
    ))?)
}

/// Opens the queue `name` in `account`.
fn open_queue(account: &StorageAccount, name: &str) -> anyhow::Result<Arc<dyn MessageQueue>> {
    Ok(match account {
        StorageAccount::ConnectionString(connection_string) => Arc::new(
            AzureQueue::from_connection_string(connection_string.expose_secret(), name)
                .with_context(|| {
                    format!("the storage connection string cannot be used for the queue {name}")
                })?,
        ),
        StorageAccount::Identity(connection) => {
            let endpoint = match &connection.queue_endpoint {
                Some(endpoint) => endpoint.clone(),
                None => queue_endpoint_of(&connection.blob_endpoint)?,
            };
            Arc::new(
                AzureQueue::with_identity(
                    &connection.account,
                    &endpoint,
                    &connection.identity,
                    name,
                )
                .with_context(|| {
                    format!(
                        "the storage connection {} cannot be used for the queue {name}",
                        connection.source
                    )
                })?,
            )
        }
    })
}

/// The queue service beside a blob service: `https://<account>.queue.<suffix>` for
/// `https://<account>.blob.<suffix>`.
fn queue_endpoint_of(blob_endpoint: &url::Url) -> anyhow::Result<url::Url> {
    let host = blob_endpoint.host_str().unwrap_or_default();
    let Some((account, suffix)) = host.split_once(".blob.") else {
        anyhow::bail!(
            "the queue service of {blob_endpoint} cannot be told from its blob service: set __queueServiceUri"
        );
    };
    let mut endpoint = blob_endpoint.clone();
    endpoint
        .set_host(Some(&format!("{account}.queue.{suffix}")))
        .context("the queue service address is not valid")?;
    Ok(endpoint)
}

/// The Reddit client of the process.
fn reddit_client(settings: &RedditSettings) -> anyhow::Result<RedditClient> {
    let endpoints = Endpoints {
        auth: settings.auth_url.clone(),
        api: settings.api_url.clone(),
        public: settings.public_url.clone(),
    };
    let user_agent = settings
        .user_agent
        .clone()
        .unwrap_or_else(default_user_agent);
    RedditClient::new(
        endpoints,
        &user_agent,
        crate::secrets::credential_source(settings),
        RetryPolicy::default(),
    )
    .context("the HTTP client cannot be built")
}

/// The server's shared state over `services`, with its job workers started. Does not wait
/// for storage: the container is created in the background so the readiness probe is
/// answered at once.
pub fn server(settings: Settings, services: Services) -> anyhow::Result<FunctionContext> {
    let jobs = services.runner(&settings, server_process(&settings.mode))?;
    tracing::info!(
        store = %services.store.describe(),
        mode = if settings.mode.is_host() { "host" } else { "standalone" },
        dispatch = jobs.dispatch_name(),
        "starting"
    );
    if let Mode::Standalone {
        function_keys: None,
        ..
    } = settings.mode
    {
        tracing::warn!(
            "FUNCTION_KEYS is not set: standalone mode accepts every call without a function key"
        );
    }
    let store = services.store.clone();
    tokio::spawn(ensure_exists("container".into(), move || {
        let store = store.clone();
        async move { store.ensure_container().await }
    }));
    for queue in services
        .queues
        .iter()
        .flat_map(|q| [q.jobs.clone(), q.poison.clone()])
        .chain(services.completion.clone())
    {
        let what = format!("queue {}", queue.name());
        tokio::spawn(ensure_exists(what, move || {
            let queue = queue.clone();
            async move { queue.ensure_queue().await }
        }));
    }
    let summary_womble = ApiClient::new(
        &summary_womble_url(&settings),
        settings
            .timer
            .summary_womble_key
            .as_ref()
            .map(|key| key.expose_secret()),
    )
    .context("SUMMARY_WOMBLE_URL cannot be used")?;
    Ok(FunctionContext {
        settings: Arc::new(settings),
        jobs,
        summary_womble: Arc::new(summary_womble),
    })
}

/// Where GetHotTopics submits: `SUMMARY_WOMBLE_URL`, else this process's own SummaryWomble.
fn summary_womble_url(settings: &Settings) -> String {
    match &settings.timer.summary_womble_url {
        Some(url) => url.to_string(),
        None => format!(
            "http://127.0.0.1:{}/api/SummaryWomble",
            settings.mode.port()
        ),
    }
}

/// Creates `what` (the container, a queue) with `create`, retrying until storage answers.
async fn ensure_exists<F, Fut>(what: String, mut create: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let backoff = Backoff::new(Duration::from_millis(200)).max_delay(Duration::from_secs(30));
    match retry(
        &backoff,
        None,
        |_| crate::store::retried_by_caller(create()),
        StoreError::verdict,
        |error, _| {
            tracing::warn!(
                error = %telemetry::Chain(error),
                "storage unavailable; will create the {what} when it answers"
            )
        },
    )
    .await
    {
        Ok(()) => tracing::debug!("{what} ready"),
        Err(error) => tracing::error!(
            error = %telemetry::Chain(&error),
            "the {what} cannot be created"
        ),
    }
}

/// The custom handler: listens where the settings say and serves until `shutdown`.
pub fn serve(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let address = settings.mode.listen_addr();
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let why = settings.mode.listen_reason();
        let services = Services::from_settings(&settings)?;
        let context = server(settings, services)?;
        tracing::info!(
            address = %listener.local_addr()?,
            why,
            "listening"
        );
        crate::app::serve(listener, context, shutdown).await;
        tracing::info!("stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use super::*;
    use crate::jobs::request::{default_subreddits, JobRequest, Limit, Priority, Source};
    use crate::jobs::{JobId, JobStatus, StatusDocument};
    use crate::reddit::NoTopics;

    fn request() -> JobRequest {
        JobRequest {
            source: Source::Reddit,
            topics: default_subreddits()[..1].to_vec(),
            limit: Limit::DEFAULT,
            priority: Priority::Normal,
            callback_url: None,
        }
    }

    async fn status_of(services: &Services, id: JobId) -> StatusDocument {
        StatusRepository::new(services.store.clone())
            .load(id)
            .await
            .unwrap()
            .unwrap()
            .document
    }

    #[test]
    fn the_queue_service_is_found_beside_the_blob_service() {
        let blob = url::Url::parse("https://acct.blob.core.windows.net").unwrap();
        assert_eq!(
            queue_endpoint_of(&blob).unwrap().as_str(),
            "https://acct.queue.core.windows.net/"
        );
        let sovereign = url::Url::parse("https://acct.blob.core.chinacloudapi.cn/").unwrap();
        assert_eq!(
            queue_endpoint_of(&sovereign).unwrap().as_str(),
            "https://acct.queue.core.chinacloudapi.cn/"
        );
        // A private endpoint or an emulator says nothing about its queue service.
        let private = url::Url::parse("http://127.0.0.1:10000/devstoreaccount1").unwrap();
        let error = queue_endpoint_of(&private).unwrap_err().to_string();
        assert!(error.contains("__queueServiceUri"), "{error}");
    }

    /// A one-off collection runs its own job to the end and leaves a job whose worker died
    /// alone, however long it runs; a server adopts that job.
    #[tokio::test]
    async fn only_a_server_adopts_stale_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let services = Services {
            store: Arc::new(LocalDirStore::new(dir.path().to_owned(), "hot-topics")),
            topics: Arc::new(NoTopics),
            queues: None,
            completion: None,
        };
        services.store.ensure_container().await.unwrap();
        let settings = Settings::from_vars(&HashMap::from([(
            "JOB_STALE_AFTER_SECONDS".to_owned(),
            "5".to_owned(),
        )]))
        .unwrap();
        let long_ago = crate::jobs::status::now() - chrono::TimeDelta::hours(1);
        let stale = StatusDocument::queued(JobId::new(), request(), None, long_ago);
        StatusRepository::new(services.store.clone())
            .create(&stale)
            .await
            .unwrap();
        // A job counts as stale once its blob has been quiet for `stale_after`; a scanning
        // runner scans every half of that. Past this, any scanner would have taken it.
        let stale_after = settings.jobs.stale_after;
        let window = Instant::now() + stale_after + stale_after / 2 + Duration::from_secs(1);

        let collection = services
            .runner(&settings, Process::OneOffCollection)
            .unwrap();
        let own = collection.submit(request(), None, None).await.unwrap();
        while Instant::now() < window {
            let untouched = status_of(&services, stale.job_id).await;
            assert_eq!(
                untouched.status,
                JobStatus::Queued,
                "the collection adopted it"
            );
            assert_eq!(untouched.attempts, 0, "the collection adopted it");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(status_of(&services, own.job_id).await.status.is_terminal());
        collection.shutdown().await;

        let server = services.runner(&settings, Process::HostedServer).unwrap();
        let deadline = Instant::now() + stale_after;
        while status_of(&services, stale.job_id).await.attempts == 0 {
            assert!(
                Instant::now() < deadline,
                "the server never adopted the stale job"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.shutdown().await;
    }
}
