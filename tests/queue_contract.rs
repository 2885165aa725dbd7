//! The [`MessageQueue`] contract, written once and run against every queue.
//!
//! Each case in [`cases`] is generic over the queue; [`contract_suite!`] turns the list of
//! cases into one test per case for a queue fixture. The memory queue runs in the test's
//! process. The Azure queue runs against Azurite's queue service, found through
//! `AZURITE_CONNECTION_STRING` (its `QueueEndpoint`): `make test` starts Azurite with
//! `scripts/azurite.sh` and sets it. Without it the Azure tests fail rather than pass unseen.
//!
//! Every test gets a queue of its own (`contract-<uuid>`), so the tests run in parallel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use summary_womble::store::queue::azure::AzureQueue;
use summary_womble::store::queue::memory::MemoryQueue;
use summary_womble::store::queue::{poison_queue_name, MessageQueue, QueueMessage};
use summary_womble::store::StoreError;

/// Long enough that a message stays hidden for the whole test.
const HIDDEN: Duration = Duration::from_secs(60);
/// The shortest visibility timeout Azure accepts on a receive.
const BRIEF: Duration = Duration::from_secs(1);

fn unique_queue() -> String {
    format!("contract-{}", uuid::Uuid::new_v4().simple())
}

fn memory_queue() -> Arc<MemoryQueue> {
    Arc::new(MemoryQueue::new(unique_queue()))
}

fn azurite_connection_string() -> String {
    std::env::var("AZURITE_CONNECTION_STRING").unwrap_or_else(|_| {
        panic!(
            "AZURITE_CONNECTION_STRING is not set. The Azure queue's contract tests run against \
             Azurite's queue service: run them with `make test`, or with \
             `scripts/with-azurite.sh <dir> cargo test --test queue_contract`."
        )
    })
}

fn azure_queue_named(name: &str) -> AzureQueue {
    AzureQueue::from_connection_string(&azurite_connection_string(), name)
        .expect("AZURITE_CONNECTION_STRING should configure a queue")
}

async fn azure_queue() -> Arc<AzureQueue> {
    let queue = azure_queue_named(&unique_queue());
    queue
        .ensure_queue()
        .await
        .unwrap_or_else(|error| panic!("ensure_queue on {}: {error:?}", queue.describe()));
    Arc::new(queue)
}

/// Waits until a message received with [`BRIEF`] visibility is visible again. Azure reports
/// the time in whole seconds (RFC 1123, cut off), so the message may show a second later.
async fn until_visible_again(message: &QueueMessage) {
    let wait = (message.next_visible_at - Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(1200)).await;
}

/// Receives the one visible message, failing the test when there is none or more than one.
async fn receive_one<Q: MessageQueue>(queue: &Q, visibility: Duration) -> QueueMessage {
    let mut messages = queue.receive(32, visibility).await.expect("receive");
    assert_eq!(messages.len(), 1, "{messages:?}");
    messages.remove(0)
}

/// The contract's clauses, one function per test, each generic over the queue.
mod cases {
    use super::*;
    use std::collections::HashSet;

    pub async fn a_sent_text_comes_back_unchanged<Q: MessageQueue>(queue: Arc<Q>) {
        let texts = [
            r#"{"job_id":"6ce324a8-0502-4b0c-b729-12e10f0f22f6"}"#,
            "plain words & <markup> \"quoted\"",
            "ünïcödé ✓ 🐾",
        ];
        for text in texts {
            queue.send(text).await.unwrap();
        }
        let received = queue.receive(32, HIDDEN).await.unwrap();
        let mut got: Vec<&str> = received.iter().map(|m| m.text.as_str()).collect();
        got.sort_unstable();
        let mut want = texts.to_vec();
        want.sort_unstable();
        assert_eq!(got, want);
        for message in &received {
            assert_eq!(message.dequeue_count, 1, "{message:?}");
            let now = Utc::now();
            assert!(message.inserted_at <= now + chrono::Duration::seconds(2));
            assert!(message.expires_at > now + chrono::Duration::days(1));
            assert!(message.next_visible_at > now + chrono::Duration::seconds(30));
        }
    }

    pub async fn ensuring_the_queue_again_is_harmless_and_keeps_its_messages<Q: MessageQueue>(
        queue: Arc<Q>,
    ) {
        queue.send("kept").await.unwrap();
        queue.ensure_queue().await.unwrap();
        queue.ensure_queue().await.unwrap();
        assert_eq!(receive_one(&*queue, HIDDEN).await.text, "kept");
    }

    pub async fn a_receive_returns_at_most_the_number_asked_for<Q: MessageQueue>(queue: Arc<Q>) {
        for index in 0..5 {
            queue.send(&format!("message {index}")).await.unwrap();
        }
        assert_eq!(queue.receive(3, HIDDEN).await.unwrap().len(), 3);
        assert_eq!(queue.receive(32, HIDDEN).await.unwrap().len(), 2);
        assert!(queue.receive(32, HIDDEN).await.unwrap().is_empty());
    }

    pub async fn a_message_comes_back_after_its_visibility_runs_out_with_dequeue_counts_1_2_3<
        Q: MessageQueue,
    >(
        queue: Arc<Q>,
    ) {
        queue.send("again and again").await.unwrap();
        let mut receipts = HashSet::new();
        let mut id = None;
        for expected in 1..=3 {
            let message = receive_one(&*queue, BRIEF).await;
            assert_eq!(message.dequeue_count, expected, "{message:?}");
            assert_eq!(message.text, "again and again");
            assert_eq!(id.get_or_insert_with(|| message.id.clone()), &message.id);
            assert!(
                receipts.insert(message.pop_receipt.clone()),
                "a new pop receipt each time"
            );
            // Invisible while its timeout runs.
            assert!(queue.receive(32, HIDDEN).await.unwrap().is_empty());
            until_visible_again(&message).await;
        }
    }

    pub async fn a_renewal_keeps_the_message_hidden_and_makes_the_old_receipt_stale<
        Q: MessageQueue,
    >(
        queue: Arc<Q>,
    ) {
        queue.send("renewed").await.unwrap();
        let message = receive_one(&*queue, BRIEF).await;
        let renewal = queue.renew(&message, HIDDEN).await.unwrap();
        assert_ne!(renewal.pop_receipt, message.pop_receipt);
        assert!(renewal.next_visible_at > Utc::now() + chrono::Duration::seconds(30));
        until_visible_again(&message).await;
        assert!(
            queue.receive(32, HIDDEN).await.unwrap().is_empty(),
            "the renewal outlasts the first timeout"
        );

        let stale = message.clone();
        assert!(matches!(
            queue.renew(&stale, HIDDEN).await,
            Err(StoreError::ConditionFailed)
        ));
        assert!(matches!(
            queue.delete(&stale).await,
            Err(StoreError::ConditionFailed)
        ));

        let current = QueueMessage {
            pop_receipt: renewal.pop_receipt,
            next_visible_at: renewal.next_visible_at,
            ..message
        };
        queue.delete(&current).await.unwrap();
        assert!(queue.receive(32, BRIEF).await.unwrap().is_empty());
    }

    pub async fn a_renewal_with_zero_makes_the_message_visible_at_once<Q: MessageQueue>(
        queue: Arc<Q>,
    ) {
        queue.send("back at once").await.unwrap();
        let message = receive_one(&*queue, HIDDEN).await;
        queue.renew(&message, Duration::ZERO).await.unwrap();
        let again = receive_one(&*queue, HIDDEN).await;
        assert_eq!(again.id, message.id);
        assert_eq!(again.dequeue_count, 2);
    }

    pub async fn a_receipt_from_before_another_receive_is_stale<Q: MessageQueue>(queue: Arc<Q>) {
        queue.send("taken twice").await.unwrap();
        let first = receive_one(&*queue, BRIEF).await;
        until_visible_again(&first).await;
        let second = receive_one(&*queue, HIDDEN).await;
        assert_eq!(second.id, first.id);
        assert!(matches!(
            queue.renew(&first, HIDDEN).await,
            Err(StoreError::ConditionFailed)
        ));
        assert!(matches!(
            queue.delete(&first).await,
            Err(StoreError::ConditionFailed)
        ));
        // The current holder is unaffected.
        queue.renew(&second, Duration::ZERO).await.unwrap();
        assert_eq!(receive_one(&*queue, HIDDEN).await.dequeue_count, 3);
    }

    pub async fn a_deleted_message_is_gone_and_deleting_it_again_is_ok<Q: MessageQueue>(
        queue: Arc<Q>,
    ) {
        queue.send("short-lived").await.unwrap();
        let message = receive_one(&*queue, BRIEF).await;
        queue.delete(&message).await.unwrap();
        queue.delete(&message).await.unwrap();
        assert!(matches!(
            queue.renew(&message, HIDDEN).await,
            Err(StoreError::ConditionFailed)
        ));
        until_visible_again(&message).await;
        assert!(queue.receive(32, HIDDEN).await.unwrap().is_empty());
    }

    pub async fn the_message_count_follows_sends_receives_and_deletes<Q: MessageQueue>(
        queue: Arc<Q>,
    ) {
        let count = async || queue.approximate_message_count().await.unwrap();
        assert_eq!(count().await, 0, "an empty queue");
        for index in 0..3 {
            queue.send(&format!("counted {index}")).await.unwrap();
        }
        assert_eq!(count().await, 3);
        let received = queue.receive(2, HIDDEN).await.unwrap();
        assert_eq!(received.len(), 2);
        assert_eq!(
            count().await,
            3,
            "a received message counts while it is hidden"
        );
        queue.renew(&received[0], HIDDEN).await.unwrap();
        assert_eq!(count().await, 3, "and after its renewal");
        queue.delete(&received[1]).await.unwrap();
        assert_eq!(count().await, 2);
        let rest = queue.receive(32, HIDDEN).await.unwrap();
        assert_eq!(rest.len(), 1, "{rest:?}");
        queue.delete(&rest[0]).await.unwrap();
        assert_eq!(count().await, 1, "the renewed message is still there");
    }

    pub async fn concurrent_receivers_never_get_the_same_hidden_message<Q: MessageQueue>(
        queue: Arc<Q>,
    ) {
        const MESSAGES: usize = 24;
        for index in 0..MESSAGES {
            queue.send(&format!("work {index}")).await.unwrap();
        }
        let start = Arc::new(tokio::sync::Barrier::new(4));
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let (queue, start) = (queue.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let mut taken = Vec::new();
                    loop {
                        let batch = queue.receive(3, HIDDEN).await.unwrap();
                        if batch.is_empty() {
                            return taken;
                        }
                        taken.extend(batch.into_iter().map(|message| message.id));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for receiver in receivers {
            all.extend(receiver.await.unwrap());
        }
        let distinct: HashSet<&String> = all.iter().collect();
        assert_eq!(
            distinct.len(),
            all.len(),
            "a message was received twice: {all:?}"
        );
        assert_eq!(all.len(), MESSAGES);
    }
}

/// One test per contract case for the queue that `$fixture` builds.
macro_rules! contract_suite {
    ($suite:ident, $fixture:expr) => {
        mod $suite {
            use super::*;

            contract_suite!(@cases $fixture;
                a_sent_text_comes_back_unchanged,
                ensuring_the_queue_again_is_harmless_and_keeps_its_messages,
                a_receive_returns_at_most_the_number_asked_for,
                a_message_comes_back_after_its_visibility_runs_out_with_dequeue_counts_1_2_3,
                a_renewal_keeps_the_message_hidden_and_makes_the_old_receipt_stale,
                a_renewal_with_zero_makes_the_message_visible_at_once,
                a_receipt_from_before_another_receive_is_stale,
                a_deleted_message_is_gone_and_deleting_it_again_is_ok,
                the_message_count_follows_sends_receives_and_deletes,
                concurrent_receivers_never_get_the_same_hidden_message,
            );
        }
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                cases::$case($fixture).await;
            }
        )*
    };
}

contract_suite!(memory_queue_contract, memory_queue());
contract_suite!(azure_queue_contract, azure_queue().await);

/// What only the Azure queue promises beyond the contract: the wire format the Functions host
/// reads, and how it meets a missing queue or a missing service.
mod azure_queue_extras {
    use super::*;
    use testkit::azurite;

    #[tokio::test]
    async fn text_is_base64_of_the_utf8_text_on_the_wire() {
        let queue = azure_queue().await;
        let text = r#"{"job_id":"6ce324a8-0502-4b0c-b729-12e10f0f22f6","note":"ünïcödé"}"#;
        queue.send(text).await.unwrap();
        let stored = queue.peek_stored().await.unwrap();
        assert_eq!(
            stored,
            vec![base64::engine::general_purpose::STANDARD.encode(text)]
        );
    }

    #[tokio::test]
    async fn text_a_producer_did_not_encode_is_received_as_it_is_stored() {
        let queue = azure_queue().await;
        queue.send_stored(r#"{"job_id":"x"}"#).await.unwrap();
        assert_eq!(receive_one(&*queue, HIDDEN).await.text, r#"{"job_id":"x"}"#);
    }

    #[tokio::test]
    async fn a_send_to_a_missing_queue_creates_it_and_a_receive_from_one_finds_nothing() {
        let missing = azure_queue_named(&unique_queue());
        assert!(missing.receive(32, HIDDEN).await.unwrap().is_empty());
        missing.send("first").await.unwrap();
        assert_eq!(receive_one(&missing, HIDDEN).await.text, "first");
        missing.delete_queue().await.unwrap();
    }

    /// The memory queue has no missing queues: one that was never sent to is empty, which the
    /// contract's count case checks.
    #[tokio::test]
    async fn a_missing_queue_counts_no_messages() {
        let missing = azure_queue_named(&unique_queue());
        assert_eq!(missing.approximate_message_count().await.unwrap(), 0);
        assert_eq!(missing.approximate_message_count().await.unwrap(), 0);
        missing.send("first").await.unwrap();
        assert_eq!(missing.approximate_message_count().await.unwrap(), 1);
        missing.delete_queue().await.unwrap();
        assert_eq!(missing.approximate_message_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_poison_queue_is_another_valid_queue() {
        let queue = azure_queue().await;
        let poison = azure_queue_named(&poison_queue_name(queue.name()));
        assert_eq!(poison.name(), format!("{}-poison", queue.name()));
        poison.send("poisoned").await.unwrap();
        assert!(queue.receive(32, HIDDEN).await.unwrap().is_empty());
        assert_eq!(receive_one(&poison, HIDDEN).await.text, "poisoned");
    }

    #[tokio::test]
    async fn a_queue_service_where_nothing_listens_is_unavailable_within_seconds() {
        let closed = testkit::port::ClosedPort::new();
        let queue = AzureQueue::from_connection_string(
            &azurite::account_connection_string(None, Some(closed.port())),
            "hot-topics-jobs",
        )
        .unwrap();
        let started = Instant::now();
        let error = queue.receive(1, HIDDEN).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        let text = format!("{error:?}");
        assert!(!text.contains(&azurite::ACCOUNT_KEY[..9]), "{text}");
    }
}
