use crate::config::tests::settings;
use crate::jobs::callback::signing::KeyForm;
use crate::jobs::callback::UnsignedCallbacks;
use crate::jobs::{CallbackPolicy, JobRequest, RequestedJob};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HOST: (&str, &str) = ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071");
const STORAGE: (&str, &str) = ("AzureWebJobsStorage", "UseDevelopmentStorage=true");

/// A start with a `callback_url`, as the submit path judges it.
fn with_callback() -> JobRequest {
    JobRequest::from_requested(
        RequestedJob {
            callback_url: Some("https://hooks.example.com/done".into()),
            ..RequestedJob::default()
        },
        CallbackPolicy::PublicHttps,
    )
    .unwrap()
}

#[test]
fn under_the_host_in_azure_allow_insecure_callbacks_stops_the_handler_naming_it() {
    for marker in ["WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME"] {
        let error = settings(&[
            HOST,
            STORAGE,
            (marker, "x"),
            ("ALLOW_INSECURE_CALLBACKS", "true"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, "ALLOW_INSECURE_CALLBACKS");
        assert!(error.to_string().contains(marker), "{error}");
        // "false" is harmless there.
        let settings = settings(&[
            HOST,
            STORAGE,
            (marker, "x"),
            ("ALLOW_INSECURE_CALLBACKS", "false"),
        ])
        .unwrap();
        assert_eq!(settings.jobs.callback_policy, CallbackPolicy::PublicHttps);
    }
    // Outside Azure (Core Tools, standalone mode), it opens local addresses as before.
    for pairs in [
        &[HOST, STORAGE, ("ALLOW_INSECURE_CALLBACKS", "true")][..],
        &[
            ("WEBSITE_INSTANCE_ID", "x"),
            ("ALLOW_INSECURE_CALLBACKS", "true"),
        ][..],
    ] {
        let settings = settings(pairs).unwrap();
        assert_eq!(settings.jobs.callback_policy, CallbackPolicy::AllowLocal);
    }
}

#[test]
fn under_the_host_in_azure_a_callback_without_a_signing_key_is_refused_unless_allowed() {
    let azure = [HOST, STORAGE, ("WEBSITE_INSTANCE_ID", "x")];
    // The settings, what they make of an unsigned callback, and whether one is admitted.
    type Case<'a> = (&'a [(&'a str, &'a str)], UnsignedCallbacks, bool);
    let cases: &[Case] = &[
        (&azure, UnsignedCallbacks::Refused, false),
        (
            &[HOST, STORAGE, ("WEBSITE_SITE_NAME", "x")],
            UnsignedCallbacks::Refused,
            false,
        ),
        (
            &[&azure[..], &[("ALLOW_UNSIGNED_CALLBACKS", "true")]].concat(),
            UnsignedCallbacks::Sent,
            true,
        ),
        (
            &[&azure[..], &[("CALLBACK_SIGNING_KEY", WHSEC)]].concat(),
            UnsignedCallbacks::Refused,
            true,
        ),
        // Core Tools and standalone mode send unsigned callbacks, with a warning at start.
        (&[HOST, STORAGE], UnsignedCallbacks::Sent, true),
        (
            &[("WEBSITE_INSTANCE_ID", "x")],
            UnsignedCallbacks::Sent,
            true,
        ),
    ];
    for (pairs, unsigned, admitted) in cases {
        let settings = settings(pairs).unwrap();
        assert_eq!(settings.jobs.unsigned_callbacks, *unsigned, "{pairs:?}");
        let outcome = settings.jobs.admit_callback(&with_callback());
        assert_eq!(outcome.is_ok(), *admitted, "{pairs:?}");
        let no_callback =
            JobRequest::from_requested(RequestedJob::default(), settings.jobs.callback_policy)
                .unwrap();
        assert!(settings.jobs.admit_callback(&no_callback).is_ok());
    }
}

#[test]
fn the_signing_key_is_read_in_either_form_and_a_bad_whsec_value_is_refused_naming_it() {
    let standard = settings(&[("CALLBACK_SIGNING_KEY", WHSEC)]).unwrap();
    let key = standard.jobs.callback_signing_key.as_ref().unwrap();
    assert_eq!(key.form(), KeyForm::Standard);
    let legacy = settings(&[("CALLBACK_SIGNING_KEY", "an old key")]).unwrap();
    let key = legacy.jobs.callback_signing_key.as_ref().unwrap();
    assert_eq!(key.form(), KeyForm::Legacy);
    for (variable, value) in [
        ("CALLBACK_SIGNING_KEY", "whsec_not base64"),
        ("CALLBACK_SIGNING_KEY", "whsec_c2hvcnQ="),
        ("ALLOW_UNSIGNED_CALLBACKS", "maybe"),
    ] {
        let error = settings(&[(variable, value)]).unwrap_err();
        assert_eq!(error.variable, variable);
        if variable == "CALLBACK_SIGNING_KEY" {
            assert!(
                !error.to_string().contains(value),
                "a secret is never echoed: {error}"
            );
        }
    }
    let debug = format!("{standard:?}{legacy:?}");
    assert!(!debug.contains(&WHSEC[6..]), "{debug}");
    assert!(!debug.contains("an old key"), "{debug}");
}
