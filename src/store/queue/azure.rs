//! Azure Storage queues through the `azure_storage_queues` 0.21 SDK.
