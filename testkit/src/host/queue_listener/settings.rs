//! What the simulated queue listener is told: `extensions.queues` of host.json, with the
//! host's defaults, and how a test's listener differs from the host's.

use std::time::Duration;

use serde_json::Value;
use summary_womble::config::parse_time_span;

/// How long the host hides a message it is working on (renewed while the invocation runs).
pub const HOST_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// `extensions.queues` of host.json, with the host's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// `maxPollingInterval` (1 minute).
    pub max_polling_interval: Duration,
    /// `visibilityTimeout`: how long a failed message stays hidden before its next delivery
    /// (0).
    pub visibility_timeout: Duration,
    /// `batchSize` (16, at most 32).
    pub batch_size: u8,
    /// `newBatchThreshold` (`batchSize / 2 × cores`).
    pub new_batch_threshold: usize,
    /// `maxDequeueCount` (5).
    pub max_dequeue_count: u32,
    /// `messageEncoding` (`base64`).
    pub message_encoding: String,
}

impl QueueSettings {
    /// Reads `extensions.queues` of a parsed host.json. The error names the setting.
    pub fn from_host_json(host: &Value) -> Result<Self, String> {
        let queues = &host["extensions"]["queues"];
        let duration = |key: &str, default: Duration| match &queues[key] {
            Value::Null => Ok(default),
            Value::String(text) => parse_time_span(text).ok_or_else(|| {
                format!("extensions.queues.{key} is not a time span (hh:mm:ss): {text:?}")
            }),
            other => Err(format!(
                "extensions.queues.{key} is not a time span: {other}"
            )),
        };
        let number = |key: &str| match &queues[key] {
            Value::Null => Ok(None),
            Value::Number(number) => number
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("extensions.queues.{key} is not a count: {number}")),
            other => Err(format!("extensions.queues.{key} is not a count: {other}")),
        };
        let batch_size = match number("batchSize")? {
            None => 16,
            Some(size @ 1..=32) => size as u8,
            Some(size) => return Err(format!("extensions.queues.batchSize {size} is not 1 to 32")),
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let new_batch_threshold = match number("newBatchThreshold")? {
            Some(threshold) => threshold as usize,
            None => usize::from(batch_size / 2) * cores,
        };
        let max_dequeue_count = match number("maxDequeueCount")? {
            None => 5,
            Some(count) => u32::try_from(count)
                .ok()
                .filter(|count| *count > 0)
                .ok_or_else(|| {
                    format!("extensions.queues.maxDequeueCount {count} is not a positive count")
                })?,
        };
        let message_encoding = match &queues["messageEncoding"] {
            Value::Null => "base64".to_owned(),
            Value::String(encoding) => encoding.to_ascii_lowercase(),
            other => return Err(format!("extensions.queues.messageEncoding is {other}")),
        };
        Ok(Self {
            max_polling_interval: duration("maxPollingInterval", Duration::from_secs(60))?,
            visibility_timeout: duration("visibilityTimeout", Duration::ZERO)?,
            batch_size,
            new_batch_threshold,
            max_dequeue_count,
            message_encoding,
        })
    }
}

/// How the simulated listener differs from the host's, for tests.
#[derive(Debug, Clone)]
pub struct QueueListenerOptions {
    /// How long a message being worked on stays hidden; renewed at half of it while the
    /// invocation runs. The host's is [`HOST_VISIBILITY_TIMEOUT`]; tests of a killed instance
    /// use a few seconds.
    pub visibility_timeout: Duration,
    /// `(function, queue)`: listen to `queue` instead of the function's `queueName`, so
    /// parallel tests each have a queue of their own (what `%SETTING%` in `queueName` does
    /// for an app that names its queue by a setting).
    pub queue_names: Vec<(String, String)>,
    /// How long a message whose invocation failed stays hidden, instead of `host.json`'s
    /// `visibilityTimeout` (tests of repeated failures need not wait out the app's real one).
    pub retry_after_failure: Option<Duration>,
}

impl Default for QueueListenerOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: HOST_VISIBILITY_TIMEOUT,
            queue_names: Vec::new(),
            retry_after_failure: None,
        }
    }
}

impl QueueListenerOptions {
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// A failed message comes back after `wait` instead of `host.json`'s `visibilityTimeout`.
    pub fn retry_after_failure(mut self, wait: Duration) -> Self {
        self.retry_after_failure = Some(wait);
        self
    }

    /// Listens to `queue` for `function` instead of its `queueName`.
    pub fn queue_for(mut self, function: &str, queue: &str) -> Self {
        self.queue_names
            .push((function.to_owned(), queue.to_owned()));
        self
    }
}
