//! A status document as stored: the public document as the blob's content, the internals in
//! its metadata.
//!
//! `status.json` holds exactly what the status call answers (docs/api.md section 3), so a reader
//! of the blob sees what an API caller sees. What only instances use ([`Internals`], and the
//! callback URL in full) goes in the blob's metadata (docs/storage.md, "Public document and
//! internals"). Content and metadata are written by one Put Blob, so the internals change only
//! by the same conditional write as the document, under the same ETag.
//!
//! A job that wants a hand-off to the next stage (`COMPLETION_QUEUE`) always has metadata (its
//! `handoff` state), so such a document is never mistaken for one stored before the split.
//!
//! Documents stored before the split carry their internals in the content: `requeued_at`,
//! `callback.claims`, `callback.claimed_until`, and the full `request.callback_url`. They
//! still read, with those fields honoured; the next write of the job moves them into metadata.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use super::{Internals, StatusDocument};
use crate::jobs::callback::url::CallbackUrl;
use crate::jobs::handoff::record::{HandoffRecord, HandoffState};
use crate::jobs::lease::Lease;
use crate::store::Metadata;

/// The metadata names of the internals.
const CALLBACK_URL: &str = "callback_url";
const CALLBACK_CLAIMS: &str = "callback_claims";
const CALLBACK_CLAIMED_UNTIL: &str = "callback_claimed_until";
const REQUEUED_AT: &str = "requeued_at";
const HANDOFF: &str = "handoff";
const HANDOFF_CLAIMS: &str = "handoff_claims";
const HANDOFF_CLAIMED_UNTIL: &str = "handoff_claimed_until";

/// A stored status document that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("the status document is not valid JSON")]
    Content(#[from] serde_json::Error),
    #[error("the status blob's metadata {name} holds {value:?}")]
    Metadata { name: &'static str, value: String },
}

/// The blob content and metadata that store `document`.
pub fn encode(document: &StatusDocument) -> (Bytes, Metadata) {
    let body = serde_json::to_vec(document).expect("status documents serialise");
    let Internals {
        requeued_at,
        callback_lease,
        handoff,
    } = &document.internals;
    let mut metadata = Metadata::new();
    if let Some(url) = &document.request.callback_url {
        metadata.insert(CALLBACK_URL, url.as_str());
    }
    insert_lease(
        &mut metadata,
        callback_lease,
        CALLBACK_CLAIMS,
        CALLBACK_CLAIMED_UNTIL,
    );
    if let Some(at) = requeued_at {
        metadata.insert(REQUEUED_AT, instant(*at));
    }
    if let Some(handoff) = handoff {
        metadata.insert(HANDOFF, handoff.state.as_str());
        insert_lease(
            &mut metadata,
            &handoff.lease,
            HANDOFF_CLAIMS,
            HANDOFF_CLAIMED_UNTIL,
        );
    }
    (Bytes::from(body), metadata)
}

/// Stores `lease` under the names `claims` and `claimed_until`, leaving out what is unset.
fn insert_lease(
    metadata: &mut Metadata,
    lease: &Lease,
    claims: &'static str,
    claimed_until: &'static str,
) {
    if lease.claims > 0 {
        metadata.insert(claims, lease.claims.to_string());
    }
    if let Some(until) = lease.claimed_until {
        metadata.insert(claimed_until, instant(until));
    }
}

/// The lease stored under the names `claims` and `claimed_until`.
fn read_lease(
    metadata: &Metadata,
    claims: &'static str,
    claimed_until: &'static str,
) -> Result<Lease, Unreadable> {
    Ok(Lease {
        claims: metadata
            .get(claims)
            .map(|text| text.parse().map_err(|_| unreadable(claims, text)))
            .transpose()?
            .unwrap_or(0),
        claimed_until: read_instant(metadata, claimed_until)?,
    })
}

/// The document stored as `body` with `metadata`.
pub fn decode(body: &[u8], metadata: &Metadata) -> Result<StatusDocument, Unreadable> {
    let mut document: StatusDocument = serde_json::from_slice(body)?;
    if metadata.is_empty() && might_hold_internals(body) {
        document.internals = before_the_split(body)?;
        return Ok(document);
    }
    if let Some(url) = metadata.get(CALLBACK_URL) {
        document.request.callback_url = Some(CallbackUrl::stored(url.to_owned()));
    }
    document.internals.callback_lease =
        read_lease(metadata, CALLBACK_CLAIMS, CALLBACK_CLAIMED_UNTIL)?;
    document.internals.requeued_at = read_instant(metadata, REQUEUED_AT)?;
    document.internals.handoff = metadata
        .get(HANDOFF)
        .map(|text| {
            Ok::<_, Unreadable>(HandoffRecord {
                state: HandoffState::parse(text).ok_or_else(|| unreadable(HANDOFF, text))?,
                lease: read_lease(metadata, HANDOFF_CLAIMS, HANDOFF_CLAIMED_UNTIL)?,
            })
        })
        .transpose()?;
    Ok(document)
}

/// The instant as metadata holds it: RFC 3339 to the microsecond, the precision documents keep.
fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn read_instant(
    metadata: &Metadata,
    name: &'static str,
) -> Result<Option<DateTime<Utc>>, Unreadable> {
    metadata
        .get(name)
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| unreadable(name, text))
        })
        .transpose()
}

fn unreadable(name: &'static str, value: &str) -> Unreadable {
    Unreadable::Metadata {
        name,
        value: value.to_owned(),
    }
}

/// Whether a document without metadata may be one stored before the split with internals in
/// its content: only those name `requeued_at` or `claims`. (A quick look that spares most
/// reads a second parse; a false alarm costs only that parse.)
fn might_hold_internals(body: &[u8]) -> bool {
    let holds = |name: &[u8]| body.windows(name.len()).any(|window| window == name);
    holds(b"\"requeued_at\"") || holds(b"\"claims\"")
}

/// The internals of a document stored before the split, read from its content. (Its full
/// callback URL is in its `request` already, where the public parse found it.)
fn before_the_split(body: &[u8]) -> Result<Internals, Unreadable> {
    #[derive(Deserialize)]
    struct Before {
        #[serde(default)]
        requeued_at: Option<DateTime<Utc>>,
        #[serde(default)]
        callback: Option<CallbackBefore>,
    }
    #[derive(Deserialize)]
    struct CallbackBefore {
        #[serde(default)]
        claims: u32,
        #[serde(default)]
        claimed_until: Option<DateTime<Utc>>,
    }
    let before: Before = serde_json::from_slice(body)?;
    let mut internals = Internals {
        requeued_at: before.requeued_at,
        ..Internals::default()
    };
    if let Some(callback) = before.callback {
        internals.callback_lease.claims = callback.claims;
        internals.callback_lease.claimed_until = callback.claimed_until;
    }
    Ok(internals)
}

#[cfg(test)]
mod tests;
