//! The callback settings (api.md section 7): `CALLBACK_SIGNING_KEY`, `ALLOW_UNSIGNED_CALLBACKS`
//! and `ALLOW_INSECURE_CALLBACKS`, and what they may not do under the Functions host in Azure.
//!
//! There, a callback goes to someone else's server, which has only the signature to tell our
//! callbacks from anyone's: without a signing key a `callback_url` is refused at submit (unless
//! `ALLOW_UNSIGNED_CALLBACKS=true` says unsigned ones are wanted), and local callback addresses
//! (`ALLOW_INSECURE_CALLBACKS`, for development) would be the instance itself, so that setting
//! stops the handler at start. "In Azure" is what the storage rule means by it: host mode with
//! one of App Service's markers set, which Core Tools never sets.

use super::{storage, ConfigError, Env, JobSettings, Mode};
use crate::jobs::callback::{SigningKey, UnsignedCallbackRefused, UnsignedCallbacks};
use crate::jobs::{CallbackPolicy, JobRequest};

/// The three settings, read together because Azure constrains them together.
pub(super) struct CallbackSettings {
    pub signing_key: Option<SigningKey>,
    pub unsigned: UnsignedCallbacks,
    pub policy: CallbackPolicy,
}

impl CallbackSettings {
    pub(super) fn from_env(env: &Env, mode: &Mode) -> Result<Self, ConfigError> {
        let in_azure = storage::azure_marker(env).filter(|_| mode.is_host());
        let signing_key = env
            .get("CALLBACK_SIGNING_KEY")
            .map(SigningKey::parse)
            .transpose()
            .map_err(|error| ConfigError {
                variable: "CALLBACK_SIGNING_KEY",
                reason: error.to_string(),
            })?;
        let unsigned = match (in_azure, env.parse("ALLOW_UNSIGNED_CALLBACKS", false)?) {
            (Some(_), false) => UnsignedCallbacks::Refused,
            _ => UnsignedCallbacks::Sent,
        };
        let policy = match (env.parse("ALLOW_INSECURE_CALLBACKS", false)?, in_azure) {
            (false, _) => CallbackPolicy::PublicHttps,
            (true, None) => CallbackPolicy::AllowLocal,
            (true, Some(marker)) => {
                return Err(ConfigError {
                    variable: "ALLOW_INSECURE_CALLBACKS",
                    reason: format!(
                        "is for local development and is refused under the Functions host in \
                         Azure ({marker} is set), where callbacks go to public https addresses \
                         only; remove the setting"
                    ),
                })
            }
        };
        Ok(Self {
            signing_key,
            unsigned,
            policy,
        })
    }
}

impl JobSettings {
    /// Refuses a job whose callback would go out unsigned where that is refused.
    pub fn admit_callback(&self, request: &JobRequest) -> Result<(), UnsignedCallbackRefused> {
        self.unsigned_callbacks
            .admit(self.callback_signing_key.as_ref(), request)
    }
}

#[cfg(test)]
mod tests;
