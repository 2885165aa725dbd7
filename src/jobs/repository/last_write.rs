//! The status documents this process wrote last, with their ETags, so an update can write over
//! its own last write without reading it first.
//!
//! This only saves reads; it changes no rule. An update tries the remembered version with
//! `If-Match` on its ETag: the write lands only if nobody wrote since, and then the remembered
//! document *is* the stored one, so the change was applied to exactly what a read would have
//! returned. Otherwise (412, or the change refused on the remembered version) the update reads
//! and goes on as it always did (`StatusRepository::update`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::Versioned;
use crate::jobs::id::JobId;
use crate::jobs::status::StatusDocument;
use crate::store::ETag;

/// Documents remembered at most: enough for the jobs this process runs and a queue of tickets;
/// the oldest are forgotten first, which costs them one read at their next update.
const REMEMBERED: usize = 256;

#[derive(Default)]
pub(crate) struct LastWrites {
    inner: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    documents: HashMap<JobId, Versioned>,
    /// Jobs in the order they were remembered, oldest first (may name forgotten ones).
    order: VecDeque<JobId>,
}

impl LastWrites {
    /// Remembers `document` as written at `etag`. A terminal job is forgotten instead: it is
    /// rarely written again (only its callback record moves).
    pub(crate) fn keep(&self, document: &StatusDocument, etag: ETag) {
        let mut remembered = self.inner.lock().expect("last writes lock");
        let id = document.job_id;
        if document.status.is_terminal() {
            remembered.documents.remove(&id);
            return;
        }
        let versioned = Versioned {
            document: document.clone(),
            etag,
        };
        if remembered.documents.insert(id, versioned).is_none() {
            remembered.order.push_back(id);
        }
        while remembered.documents.len() > REMEMBERED {
            let Some(oldest) = remembered.order.pop_front() else {
                break;
            };
            remembered.documents.remove(&oldest);
        }
        // Ids of forgotten jobs pile up in `order` only until it is twice the bound.
        if remembered.order.len() > 2 * REMEMBERED {
            let Remembered { documents, order } = &mut *remembered;
            order.retain(|id| documents.contains_key(id));
        }
    }

    /// Takes the remembered version of `id`, if any: a failed attempt must not be tried again.
    pub(crate) fn take(&self, id: JobId) -> Option<Versioned> {
        self.inner
            .lock()
            .expect("last writes lock")
            .documents
            .remove(&id)
    }
}
