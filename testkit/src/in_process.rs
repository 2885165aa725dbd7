//! The app inside the test's own process: the real routes, runner and store code, built by
//! [`summary_womble::startup::server`] and served by [`summary_womble::app::serve`] on a
//! listener bound to `127.0.0.1:0`, over a local-directory store in a temporary directory
//! and [`ScriptedTopics`] in place of Reddit. No process to start, no Azurite, no HTTP Reddit:
//! for tests of the job API's behaviour (cancel, retry, priorities, paging) that need nothing
//! the real process adds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use summary_womble::config::{Settings, StorageSettings};
use summary_womble::reddit::{FetchError, Subreddit, Topic, TopicSource};
use summary_womble::startup::Services;
use summary_womble::store::local::LocalDirStore;
use summary_womble::store::BlobStore;
use tokio::sync::oneshot;

use crate::app::JobApi;
use crate::hold::Hold;
use crate::host::{send_direct, HostRequest, HostResponse};

/// Topics a subreddit has when the script says nothing about it.
const DEFAULT_TOPICS: usize = 25;

/// How one subreddit answers.
#[derive(Clone)]
enum Answer {
    /// This many topics (at most the job's limit).
    Topics(usize),
    /// The error this makes from the subreddit's name.
    Fails(Arc<dyn Fn(&str) -> FetchError + Send + Sync>),
    /// Waits for the hold, then answers with the default topics.
    Held(Hold),
}

/// A [`TopicSource`] answering per subreddit as the test scripted it: topics, a
/// [`FetchError`], or nothing until a hold is released. Every fetch is counted.
#[derive(Default)]
pub struct ScriptedTopics {
    answers: Mutex<HashMap<String, Answer>>,
    fetches: Mutex<Vec<String>>,
}

impl ScriptedTopics {
    /// `subreddit` has `count` topics.
    pub fn answer(&self, subreddit: &str, count: usize) {
        self.set(subreddit, Answer::Topics(count));
    }

    /// `subreddit` fails with the error `error` makes from its name, e.g.
    /// `|name| FetchError::Private(name.into())`.
    pub fn fail(
        &self,
        subreddit: &str,
        error: impl Fn(&str) -> FetchError + Send + Sync + 'static,
    ) {
        self.set(subreddit, Answer::Fails(Arc::new(error)));
    }

    /// `subreddits` answer only once the returned hold is released.
    pub fn hold(&self, subreddits: &[&str]) -> Hold {
        let hold = Hold::new();
        for subreddit in subreddits {
            self.set(subreddit, Answer::Held(hold.clone()));
        }
        hold
    }

    /// How many times `subreddit` was fetched.
    pub fn fetches(&self, subreddit: &str) -> usize {
        let name = subreddit.to_ascii_lowercase();
        self.fetches
            .lock()
            .unwrap()
            .iter()
            .filter(|fetched| **fetched == name)
            .count()
    }

    fn set(&self, subreddit: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(subreddit.to_ascii_lowercase(), answer);
    }
}

#[async_trait]
impl TopicSource for ScriptedTopics {
    async fn hot_topics(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        fetched_at: &str,
    ) -> Result<Vec<Topic>, FetchError> {
        let name = subreddit.as_str().to_ascii_lowercase();
        self.fetches.lock().unwrap().push(name.clone());
        let answer = self.answers.lock().unwrap().get(&name).cloned();
        let count = match answer {
            None => DEFAULT_TOPICS,
            Some(Answer::Topics(count)) => count,
            Some(Answer::Fails(error)) => return Err(error(subreddit.as_str())),
            Some(Answer::Held(hold)) => {
                hold.pass().await;
                DEFAULT_TOPICS
            }
        };
        Ok((0..count.min(limit as usize))
            .map(|i| topic(subreddit.as_str(), i, fetched_at))
            .collect())
    }
}

fn topic(subreddit: &str, i: usize, fetched_at: &str) -> Topic {
    let id = format!("{}_{i}", subreddit.to_ascii_lowercase());
    Topic {
        title: format!("Post {i} of r/{subreddit}"),
        external_url: format!("https://example.com/{subreddit}/{i}"),
        reddit_url: format!("https://www.reddit.com/r/{subreddit}/comments/{id}/"),
        reddit_id: id,
        score: 1000 - i as i64,
        created_utc: 1_754_920_341 + i as i64,
        num_comments: i as i64 * 3,
        author: format!("user{i}"),
        subreddit: subreddit.to_owned(),
        fetched_at: fetched_at.to_owned(),
        selftext: String::new(),
    }
}

/// The app served in this process. Dropping it stops the server.
pub struct InProcessApp {
    pub address: SocketAddr,
    /// What the app's jobs fetch from.
    pub topics: Arc<ScriptedTopics>,
    /// The app's own store, for looking at what it wrote.
    pub store: Arc<dyn BlobStore>,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    /// Removed with the app.
    _dir: tempfile::TempDir,
}

/// Builds and serves the app with `settings` (app settings as the host passes them; the
/// store is always the app's own temporary directory) and a fresh [`ScriptedTopics`].
pub async fn spawn_app(settings: &[(&str, &str)]) -> InProcessApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let listener = crate::port::listener().await;
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    let mut vars: HashMap<String, String> = settings
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    // Host mode: no key check and no timer of its own, as under the Functions host.
    vars.insert(
        "FUNCTIONS_CUSTOMHANDLER_PORT".into(),
        address.port().to_string(),
    );
    vars.insert(
        "OUTPUT_STORAGE_DIR".into(),
        dir.path().to_str().expect("a UTF-8 temporary path").into(),
    );
    let settings = Settings::from_vars(&vars).expect("the test's settings are valid");
    let StorageSettings::LocalDir {
        dir: root,
        container,
    } = &settings.storage
    else {
        panic!("spawn_app stores in its own directory: leave the storage settings out");
    };
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::new(root.clone(), container));
    let topics = Arc::new(ScriptedTopics::default());
    let services = Services {
        store: store.clone(),
        topics: topics.clone(),
        queues: None,
        completion: None,
    };
    let context =
        summary_womble::startup::server(settings, services).expect("the app builds its parts");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(summary_womble::app::serve(listener, context, async {
        let _ = stopped.await;
    }));
    InProcessApp {
        address,
        topics,
        store,
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("the HTTP client builds"),
        stop: Some(stop),
        _dir: dir,
    }
}

impl InProcessApp {
    /// The status document as stored.
    pub async fn stored_status(&self, job_id: &str) -> Option<serde_json::Value> {
        crate::status::read(self.store.as_ref(), job_id)
            .await
            .map(|stored| stored.document)
    }
}

#[async_trait]
impl JobApi for InProcessApp {
    /// Straight to the server, as the host forwards a call.
    async fn call(&self, request: HostRequest) -> HostResponse {
        send_direct(&self.client, &format!("http://{}", self.address), request)
            .await
            .unwrap_or_else(|error| panic!("the app did not answer: {error}"))
    }

    /// The app logs through `tracing` in this process; nothing is captured.
    fn logs(&self) -> String {
        String::new()
    }
}

impl Drop for InProcessApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
