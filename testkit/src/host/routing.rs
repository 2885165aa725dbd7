//! The host's front half, before the handler sees a call: which function a call is for (its
//! route, matched case-insensitively as ASP.NET routing does), whether that function takes the
//! method, whether the caller's key opens it, and the form the call reaches the handler in.
//! A refusal is the host's own empty answer; the handler is not called.

use super::transport::HostRequest;
use super::{FunctionApp, FunctionDefinition};

/// The form a call reaches the handler in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// The request as the caller sent it, to `/api/<Function>`.
    Forwarded,
    /// `POST /<Function>` with the request in the envelope.
    Envelope,
}

/// The app's routes and the keys that open its functions.
pub(super) struct Router {
    pub(super) app: FunctionApp,
    /// `Some`: keys are enforced, and any of these host keys opens every function.
    host_keys: Option<Vec<String>>,
    /// `(function, key)`: keys that open one function only.
    function_keys: Vec<(String, String)>,
}

impl Router {
    pub(super) fn new(
        app: FunctionApp,
        host_keys: Option<Vec<String>>,
        function_keys: Vec<(String, String)>,
    ) -> Self {
        Self {
            app,
            host_keys,
            function_keys,
        }
    }

    /// How this app's host.json makes the host send `request`: forwarded when
    /// `enableForwardingHttpRequest` is on and the function is HTTP-in/HTTP-out, else as the
    /// envelope.
    pub(super) fn delivery(&self, request: &HostRequest) -> Delivery {
        let forwarded = self.app.forwards_http
            && self
                .app
                .http_function_at(request.path_and_query().0)
                .is_some_and(FunctionDefinition::is_http_in_and_out);
        if forwarded {
            Delivery::Forwarded
        } else {
            Delivery::Envelope
        }
    }

    /// Route, method, key. `Err` is the status of the host's own, empty, answer.
    pub(super) fn admit(&self, request: &HostRequest) -> Result<&FunctionDefinition, u16> {
        let (path, _) = request.path_and_query();
        let function = self.app.http_function_at(path).ok_or(404_u16)?;
        // A method missing from `methods` fails the route match, so the host answers as it
        // does for an unknown route: 404, not 405.
        if !function.allows_method(&request.method) {
            return Err(404);
        }
        if let Some(keys) = &self.host_keys {
            if function.auth_level() != "anonymous" {
                let presented = request
                    .header_value("x-functions-key")
                    .filter(|key| !key.is_empty())
                    .map(str::to_owned)
                    .or_else(|| {
                        request
                            .query_dictionary()
                            .into_iter()
                            .find(|(name, _)| name == "code")
                            .map(|(_, value)| value)
                    });
                let opens = |key: &String| {
                    keys.contains(key)
                        || self
                            .function_keys
                            .iter()
                            .any(|(name, own)| *name == function.name && own == key)
                };
                if !presented.is_some_and(|key| opens(&key)) {
                    return Err(401);
                }
            }
        }
        Ok(function)
    }
}
