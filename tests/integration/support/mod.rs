//! What the black-box tests stand on: the Functions host simulator, a fake Reddit that answers
//! as the real one does, and access to the Azurite container a test runs against; for the
//! dashboard, the app's public address and a real browser.

pub mod app;
pub mod azurite;
pub mod browser;
pub mod fake_reddit;
pub mod gate;
pub mod host;
pub mod key_vault;
pub mod public;
