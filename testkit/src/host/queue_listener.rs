//! The host's queue listener, simulated: what drives a function whose trigger is
//! `queueTrigger` (functions-host.md, "Queue trigger"), against the real queue service
//! (Azurite's).
//!
//! For each queue function, one poll loop:
//! - polls its queue (`queueName`, `%SETTING%` resolved from the app settings; the storage
//!   connection is the app setting the binding's `connection` names), from 100 ms backing off
//!   to `maxPollingInterval` while the queue is empty;
//! - takes up to `batchSize` messages at once, each hidden for the listener's visibility
//!   timeout (the host's 10 minutes, shorter in tests), and takes the next batch once no more
//!   than `newBatchThreshold` invocations are running (the host's own rule: it waits until the
//!   number running "gets down to" the threshold);
//! - invokes `POST /<Function>` with the envelope for each message, renewing the message's
//!   visibility at half its timeout while the invocation runs;
//! - deletes a message whose invocation succeeded (2xx, `application/json`, a JSON object);
//!   after a failure, moves it to `<queue>-poison` when its dequeue count has reached
//!   `maxDequeueCount`, else makes it visible again after `visibilityTimeout` (host.json).
//!
//! [`QueueListener::stop`] ends all of that at once, as the death of the host process does:
//! no invocation, renewal or delete follows, so the messages it held reappear when their
//! visibility runs out, with their dequeue count raised on the next delivery.
//!
//! Everything the listener did is kept in a [`QueueRecord`] for tests to assert on.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use summary_womble::store::queue::azure::AzureQueue;
use summary_womble::store::queue::{poison_queue_name, MessageQueue, QueueMessage};
use tokio::task::{JoinHandle, JoinSet};

use super::app_model::read_json;
use super::envelope::{accept_envelope_answer, log_lines, post_envelope, sys_metadata};
use super::logs::HostLog;
use super::{FunctionApp, FunctionDefinition};

mod record;
mod settings;

pub use record::{InvocationOutcome, PoisonedMessage, QueueInvocation, QueueRecord};
pub use settings::{QueueListenerOptions, QueueSettings, HOST_VISIBILITY_TIMEOUT};

/// The host's shortest polling interval, where the backoff starts again after a message.
pub const MIN_POLLING_INTERVAL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// The listener
// ---------------------------------------------------------------------------------------------

/// Where the listener sends invocations: the current handler's port (it changes when the
/// handler restarts) and the host log.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) client: reqwest::Client,
    pub(super) port: Arc<AtomicU16>,
    pub(super) log: HostLog,
}

/// The running poll loops of one host instance, one per queue function. Dropping it stops
/// them as [`stop`](Self::stop) does.
pub struct QueueListener {
    loops: Vec<JoinHandle<()>>,
    stopped: Arc<AtomicBool>,
    record: QueueRecord,
    log: HostLog,
}

impl QueueListener {
    /// Starts listening for every queue function of `app`, invoking the handler on
    /// `127.0.0.1:<handler_port>` (a handler started by the test itself; a
    /// [`super::HostSimulator`] starts its own listener when its options ask for one).
    /// `app_settings` resolve the binding's `connection` and `%SETTING%` in `queueName`.
    /// Must be called inside a Tokio runtime, which runs the poll loops.
    pub fn start(
        app: &FunctionApp,
        app_settings: &[(String, String)],
        options: &QueueListenerOptions,
        handler_port: u16,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            .timeout(super::CALL_TIMEOUT)
            .build()
            .expect("the HTTP client builds");
        let target = Target {
            client,
            port: Arc::new(AtomicU16::new(handler_port)),
            log: HostLog::default(),
        };
        Self::start_for(app, app_settings, options, target, QueueRecord::default())
    }

    pub(super) fn start_for(
        app: &FunctionApp,
        app_settings: &[(String, String)],
        options: &QueueListenerOptions,
        target: Target,
        record: QueueRecord,
    ) -> Result<Self, String> {
        let settings = QueueSettings::from_host_json(&read_json(&app.root.join("host.json"))?)?;
        if settings.message_encoding != "base64" {
            return Err(format!(
                "extensions.queues.messageEncoding {:?}: the simulator reads base64 messages \
                 only",
                settings.message_encoding
            ));
        }
        let stopped = Arc::new(AtomicBool::new(false));
        let mut loops = Vec::new();
        for function in app.functions.iter().filter(|f| f.is_queue()) {
            let poll = FunctionPoll::new(
                function,
                app_settings,
                options,
                &settings,
                target.clone(),
                record.clone(),
                stopped.clone(),
            )?;
            target.log.host(format!(
                "queue listener: {} listens to queue {}",
                function.name,
                poll.queue.name()
            ));
            loops.push(tokio::spawn(Arc::new(poll).run()));
        }
        Ok(Self {
            loops,
            stopped,
            record,
            log: target.log,
        })
    }

    /// What this listener did.
    pub fn record(&self) -> QueueRecord {
        self.record.clone()
    }

    /// The listener's lines of the host log (for a listener started with [`start`](Self::start);
    /// a host simulator's listener writes to the simulator's log).
    pub fn logs(&self) -> String {
        self.log.render()
    }

    /// Stops at once, as the death of the host process would: running invocations are
    /// abandoned (their messages reappear when their visibility runs out), and no storage call
    /// or invocation follows.
    pub fn stop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        for poll in self.loops.drain(..) {
            // The loop owns its invocations (a JoinSet), which are aborted with it.
            poll.abort();
        }
    }
}

impl Drop for QueueListener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The poll loop of one queue function.
struct FunctionPoll {
    function: String,
    binding: String,
    queue: AzureQueue,
    poison: AzureQueue,
    settings: QueueSettings,
    visibility_timeout: Duration,
    target: Target,
    record: QueueRecord,
    stopped: Arc<AtomicBool>,
}

impl FunctionPoll {
    fn new(
        function: &FunctionDefinition,
        app_settings: &[(String, String)],
        options: &QueueListenerOptions,
        settings: &QueueSettings,
        target: Target,
        record: QueueRecord,
        stopped: Arc<AtomicBool>,
    ) -> Result<Self, String> {
        let trigger = function.trigger();
        let setting = |name: &str| {
            app_settings
                .iter()
                .rev()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let queue_name = match options
            .queue_names
            .iter()
            .find(|(name, _)| *name == function.name)
        {
            Some((_, queue)) => queue.clone(),
            None => {
                let declared = trigger.settings["queueName"].as_str().ok_or_else(|| {
                    format!("{}: the queueTrigger has no queueName", function.name)
                })?;
                resolve_settings(declared, &setting).map_err(|missing| {
                    format!(
                        "{}: queueName {declared:?} names the app setting {missing}, which is \
                         not set",
                        function.name
                    )
                })?
            }
        };
        let connection_name = trigger.settings["connection"]
            .as_str()
            .filter(|name| !name.is_empty())
            .unwrap_or("AzureWebJobsStorage");
        // The host also tries the name with its `AzureWebJobs` prefix.
        let connection_string = setting(connection_name)
            .or_else(|| setting(&format!("AzureWebJobs{connection_name}")))
            .ok_or_else(|| {
                format!(
                    "{}: the queue connection {connection_name:?} is not an app setting (the \
                     simulator needs a connection string naming Azurite's QueueEndpoint)",
                    function.name
                )
            })?;
        let open = |name: &str| {
            AzureQueue::from_connection_string(&connection_string, name)
                .map_err(|error| format!("{}: queue {name:?}: {error}", function.name))
        };
        Ok(Self {
            function: function.name.clone(),
            binding: trigger.name.clone(),
            queue: open(&queue_name)?,
            poison: open(&poison_queue_name(&queue_name))?,
            settings: QueueSettings {
                visibility_timeout: options
                    .retry_after_failure
                    .unwrap_or(settings.visibility_timeout),
                ..settings.clone()
            },
            visibility_timeout: options.visibility_timeout,
            target,
            record,
            stopped,
        })
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn log(&self, text: String) {
        self.target.log.host(format!("{}: {text}", self.function));
    }

    fn problem(&self, text: String) {
        self.log(text.clone());
        self.record.problem(format!("{}: {text}", self.function));
    }

    async fn run(self: Arc<Self>) {
        let mut running = JoinSet::new();
        let mut interval = MIN_POLLING_INTERVAL;
        // A failing queue service is logged when the failure changes, not on every poll.
        let mut last_failure: Option<String> = None;
        loop {
            while running.try_join_next().is_some() {}
            if running.len() <= self.settings.new_batch_threshold && !self.stopped() {
                match self
                    .queue
                    .receive(self.settings.batch_size, self.visibility_timeout)
                    .await
                {
                    Ok(batch) if !batch.is_empty() => {
                        last_failure = None;
                        interval = MIN_POLLING_INTERVAL;
                        for message in batch {
                            running.spawn(self.clone().process(message));
                        }
                        continue;
                    }
                    Ok(_) => {
                        last_failure = None;
                        interval = (interval * 2).min(self.settings.max_polling_interval);
                    }
                    Err(error) => {
                        let text = summary_womble::telemetry::Chain(&error).to_string();
                        if last_failure.as_ref() != Some(&text) {
                            self.problem(format!("receiving failed: {text}"));
                            last_failure = Some(text);
                        }
                        interval = (interval * 2).min(self.settings.max_polling_interval);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
    }

    /// One delivery: invoke, renewing meanwhile, then delete, release or poison.
    async fn process(self: Arc<Self>, mut message: QueueMessage) {
        if self.stopped() {
            return;
        }
        let entry = self.record.started(QueueInvocation {
            function: self.function.clone(),
            queue: self.queue.name().to_owned(),
            message_id: message.id.clone(),
            text: message.text.clone(),
            dequeue_count: message.dequeue_count,
            outcome: None,
        });
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let envelope = queue_envelope(&self.function, &self.binding, &message);
        let port = self.target.port.load(Ordering::SeqCst);
        let post = post_envelope(
            &self.target.client,
            port,
            &self.function,
            &invocation_id,
            &envelope,
        );
        tokio::pin!(post);
        let renew_every = self.visibility_timeout / 2;
        let mut next_renewal = tokio::time::Instant::now() + renew_every;
        let answer = loop {
            tokio::select! {
                answer = &mut post => break answer,
                () = tokio::time::sleep_until(next_renewal) => {
                    if self.stopped() {
                        return;
                    }
                    match self.queue.renew(&message, self.visibility_timeout).await {
                        Ok(renewal) => {
                            message.pop_receipt = renewal.pop_receipt;
                            message.next_visible_at = renewal.next_visible_at;
                        }
                        Err(error) => self.problem(format!(
                            "renewing message {} failed: {}",
                            message.id,
                            summary_womble::telemetry::Chain(&error)
                        )),
                    }
                    next_renewal = tokio::time::Instant::now() + renew_every;
                }
            }
        };
        if self.stopped() {
            return;
        }
        let verdict = match answer {
            Ok(answer) => accept_envelope_answer(&answer).map(|result| {
                for line in log_lines(&Value::Object(result)) {
                    self.log(line);
                }
            }),
            Err(error) => Err(format!("no answer: {error}")),
        };
        match verdict {
            Ok(()) => {
                self.record.ended(entry, InvocationOutcome::Succeeded);
                if let Err(error) = self.queue.delete(&message).await {
                    self.problem(format!(
                        "deleting message {} failed: {}",
                        message.id,
                        summary_womble::telemetry::Chain(&error)
                    ));
                }
            }
            Err(reason) => {
                self.log(format!(
                    "message {} (dequeue count {}) failed ({invocation_id}): {reason}",
                    message.id, message.dequeue_count
                ));
                self.record.ended(entry, InvocationOutcome::Failed(reason));
                if message.dequeue_count >= self.settings.max_dequeue_count {
                    self.poison(&message).await;
                } else if let Err(error) = self
                    .queue
                    .renew(&message, self.settings.visibility_timeout)
                    .await
                {
                    self.problem(format!(
                        "releasing message {} failed: {}",
                        message.id,
                        summary_womble::telemetry::Chain(&error)
                    ));
                }
            }
        }
    }

    /// Moves a message that failed its last delivery to the poison queue: the same text, then
    /// the original deleted.
    async fn poison(&self, message: &QueueMessage) {
        if let Err(error) = self.poison.send(&message.text).await {
            self.problem(format!(
                "moving message {} to {} failed: {}",
                message.id,
                self.poison.name(),
                summary_womble::telemetry::Chain(&error)
            ));
            return;
        }
        self.log(format!(
            "message {} moved to {} after {} deliveries",
            message.id,
            self.poison.name(),
            message.dequeue_count
        ));
        self.record.poisoned_message(PoisonedMessage {
            function: self.function.clone(),
            poison_queue: self.poison.name().to_owned(),
            message_id: message.id.clone(),
            text: message.text.clone(),
            dequeue_count: message.dequeue_count,
        });
        if let Err(error) = self.queue.delete(message).await {
            self.problem(format!(
                "deleting poisoned message {} failed: {}",
                message.id,
                summary_womble::telemetry::Chain(&error)
            ));
        }
    }
}

/// Replaces each `%NAME%` by the app setting `NAME`; `Err` names a setting that is missing.
fn resolve_settings(
    text: &str,
    setting: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let Some(length) = rest[start + 1..].find('%') else {
            break;
        };
        let name = &rest[start + 1..start + 1 + length];
        out.push_str(&rest[..start]);
        out.push_str(&setting(name).ok_or_else(|| name.to_owned())?);
        rest = &rest[start + length + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The envelope of one queue message, as the host builds it: the text bound as a string (so
/// JSON-encoded inside the JSON string), and the message's metadata, all strings.
pub fn queue_envelope(function: &str, binding: &str, message: &QueueMessage) -> Value {
    let mut metadata = Map::new();
    // The host binds a JSON message's top-level properties as well; the queue's own metadata
    // wins a clash.
    if let Ok(Value::Object(properties)) = serde_json::from_str::<Value>(&message.text) {
        for (name, value) in properties {
            if matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                metadata.insert(name, Value::String(value.to_string()));
            }
        }
    }
    let quoted = |text: &str| Value::String(Value::String(text.to_owned()).to_string());
    let iso = |time: DateTime<Utc>| Value::String(time.to_rfc3339_opts(SecondsFormat::Secs, false));
    metadata.insert(
        "DequeueCount".into(),
        Value::String(message.dequeue_count.to_string()),
    );
    metadata.insert("Id".into(), quoted(&message.id));
    metadata.insert("PopReceipt".into(), quoted(&message.pop_receipt));
    metadata.insert("InsertionTime".into(), iso(message.inserted_at));
    metadata.insert("ExpirationTime".into(), iso(message.expires_at));
    metadata.insert("NextVisibleTime".into(), iso(message.next_visible_at));
    metadata.insert("sys".into(), sys_metadata(function));
    json!({
        "Data": {binding: quoted(&message.text)},
        "Metadata": metadata,
    })
}
