//! Black-box tests: the built `handler` driven through the Functions host simulator, against
//! Azurite (blob and queue service) and a fake Reddit. Run by `make test`, which starts Azurite
//! and exports `AZURITE_CONNECTION_STRING`.

mod api;
mod callbacks;
mod cli;
mod dashboard;
mod durability;
mod handoff;
mod hardening;
mod host_simulator;
mod hostile_reddit;
mod in_process;
mod load;
mod openapi;
mod queue_dispatch;
mod queue_listener;
mod reddit;
mod secrets;
mod shared_quota;
mod smoke;
mod standalone;
mod storage_settings;
mod timer;
mod usage;
