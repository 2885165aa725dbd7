//! Azure Storage queues through the `azure_storage_queues` 0.21 SDK.

use std::sync::Arc;

use azure_core::Url;

use crate::store::azure::{AzureConfigError, Identity};

/// A queue in an Azure Storage account. (Placeholder until the SDK client lands.)
pub struct AzureQueue;

impl AzureQueue {
    pub fn from_connection_string(
        _connection_string: &str,
        _queue: &str,
    ) -> Result<Arc<dyn super::MessageQueue>, AzureConfigError> {
        Err(AzureConfigError::Unsupported("queue service"))
    }

    pub fn with_identity(
        _account: &str,
        _endpoint: &Url,
        _identity: &Identity,
        _queue: &str,
    ) -> Result<Arc<dyn super::MessageQueue>, AzureConfigError> {
        Err(AzureConfigError::Unsupported("queue service"))
    }
}
