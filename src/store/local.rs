//! Blobs as files in a directory: the zero-setup store for local runs and tests.
//!
//! A blob `a/b.json` of container `c` is the file `<root>/c/a/b.json`. Writes go to a file in
//! the hidden directory [`TEMP_DIR`] inside the container directory and are then moved into
//! place, so a reader sees the old content or the new, never a mix.
//!
//! A blob's metadata is a small JSON file beside it, in the hidden directory [`METADATA_DIR`]:
//! `<root>/c/.metadata/a/b.json/<SHA-256 of the content>`. Naming it by the content it belongs
//! to is what keeps the two together: a write puts the metadata of its new content in place
//! first and only then moves the content in, so the content a reader finds always has its
//! metadata beside it, even after a kill between the two steps. Metadata of older contents is
//! removed after the write.
//!
//! The ETag is the hex SHA-256 of the content (followed by the metadata, when there is any):
//! deterministic, and it changes exactly when the content or the metadata changes. (Writing
//! what a blob already holds keeps its ETag, so two racing writes of unchanged content can both
//! succeed; neither changes anything, so nothing is lost.)
//!
//! The store is meant for one process. Reads and writes of this process are ordered by a lock,
//! and `IfMatch` is checked under it; `IfNotExists` is atomic even across processes, because
//! the new file is hard-linked into place, which fails when the name is taken. Blob content
//! types are not kept.
//!
//! Unlike Azure, a file system cannot hold both a blob `a` and a blob `a/b`; writing the second
//! fails with [`StoreError::Failed`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

use super::{
    Blob, BlobItem, BlobName, BlobStore, ETag, ListPage, Metadata, StoreError, WriteCondition,
};
use crate::meter::{self, Request};

/// The directory, inside the container directory, that holds files being written. Listing skips
/// it, and no blob name may start with it.
pub const TEMP_DIR: &str = ".tmp-writes";

/// The directory, inside the container directory, that holds blobs' metadata. Listing skips
/// it, and no blob name may start with it.
pub const METADATA_DIR: &str = ".metadata";

/// A container as a directory on the local disk.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `<root>/<container>`.
    container_dir: PathBuf,
    /// Writes and deletes of this process hold it alone, so that an `IfMatch` check and the
    /// replacement it guards happen as one step; reads share it, so that a read finds a
    /// content's metadata before a later write removes it. The guard moves into the blocking
    /// task, so a caller that stops waiting cannot release it while the file work still runs.
    lock: Arc<RwLock<()>>,
}

impl LocalDirStore {
    /// A store for `<root>/<container>`. Nothing is touched until
    /// [`BlobStore::ensure_container`] or the first write.
    ///
    /// `container` is used as one directory name; it is expected to be a plain name such as
    /// `hot-topics`, as the settings allow.
    pub fn new(root: impl Into<PathBuf>, container: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                container_dir: root.into().join(container),
                lock: Arc::new(RwLock::new(())),
            }),
        }
    }

    /// Runs blocking file work off the async threads, with this store's state.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|error| StoreError::Failed(Box::new(error)))?
    }
}

impl Inner {
    fn temp_dir(&self) -> PathBuf {
        self.container_dir.join(TEMP_DIR)
    }

    fn path_of(&self, name: &BlobName) -> Result<PathBuf, StoreError> {
        let first_segment = name.as_str().split('/').next();
        if first_segment == Some(TEMP_DIR) || first_segment == Some(METADATA_DIR) {
            return Err(StoreError::Failed(Box::new(ReservedName(name.clone()))));
        }
        // `BlobName` guarantees relative, `/`-separated segments without `.` or `..`.
        Ok(self.container_dir.join(name.as_str()))
    }

    /// The directory of the blob `name`'s metadata files, one per content hash.
    fn metadata_dir_of(&self, name: &BlobName) -> PathBuf {
        self.container_dir.join(METADATA_DIR).join(name.as_str())
    }

    /// The metadata stored with the content whose hash is `content`; empty when none was.
    fn metadata_of(&self, name: &BlobName, content: &str) -> Result<Metadata, StoreError> {
        let path = self.metadata_dir_of(name).join(content);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(error) if is_missing(&error, &path) => return Ok(Metadata::new()),
            Err(error) => return Err(failed(error)),
        };
        let pairs: BTreeMap<String, String> = serde_json::from_slice(&text)
            .map_err(|error| failed(io::Error::new(io::ErrorKind::InvalidData, error)))?;
        Ok(pairs.into_iter().collect())
    }

    /// Puts `metadata` in place for the content whose hash is `content`, or removes what was
    /// there when `metadata` is empty. The caller holds the lock alone.
    fn set_metadata(
        &self,
        name: &BlobName,
        content: &str,
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        let dir = self.metadata_dir_of(name);
        let path = dir.join(content);
        if metadata.is_empty() {
            return match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(error) if is_missing(&error, &path) => Ok(()),
                Err(error) => Err(failed(error)),
            };
        }
        let pairs: BTreeMap<&str, &str> = metadata.iter().collect();
        let text = serde_json::to_vec(&pairs).expect("strings always serialise");
        let temp = self.write_temp(&text)?;
        let placed = std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(&temp, &path));
        if placed.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        placed.map_err(failed)
    }

    /// Removes the metadata of every content of `name` but `keep` (every one when `keep` is
    /// `None`), and the directories that leaves empty. Leftovers cost nothing but disk: a write
    /// always puts its own content's metadata in place first.
    fn forget_metadata(&self, name: &BlobName, keep: Option<&str>) {
        let dir = self.metadata_dir_of(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            if keep.is_none_or(|keep| entry.file_name() != keep) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
        self.remove_empty_parents(&dir, &self.container_dir.join(METADATA_DIR));
    }

    fn get(&self, name: &BlobName) -> Result<Option<Blob>, StoreError> {
        let path = match self.path_of(name) {
            Ok(path) => path,
            // Nothing can be stored under a reserved name.
            Err(_) => return Ok(None),
        };
        match std::fs::read(&path) {
            Ok(body) => {
                let metadata = self.metadata_of(name, &content_hash(&body))?;
                Ok(Some(Blob {
                    etag: etag_of(&body, &metadata),
                    body: Bytes::from(body),
                    metadata,
                }))
            }
            Err(error) if is_missing(&error, &path) => Ok(None),
            Err(error) => Err(failed(error)),
        }
    }

    /// Writes `body` to a new file in the temp directory and returns its path.
    fn write_temp(&self, body: &[u8]) -> Result<PathBuf, StoreError> {
        let temp_dir = self.temp_dir();
        std::fs::create_dir_all(&temp_dir).map_err(failed)?;
        let temp = temp_dir.join(uuid::Uuid::new_v4().simple().to_string());
        let written = std::fs::File::create(&temp).and_then(|mut file| {
            io::Write::write_all(&mut file, body)?;
            file.sync_all()
        });
        match written {
            Ok(()) => Ok(temp),
            Err(error) => {
                let _ = std::fs::remove_file(&temp);
                Err(failed(error))
            }
        }
    }

    /// Moves the written temp file, whose content hash is `content`, to the blob `name` with
    /// `metadata` if `condition` holds. The caller holds the lock alone.
    fn install(
        &self,
        temp: &Path,
        name: &BlobName,
        content: &str,
        metadata: &Metadata,
        condition: &WriteCondition,
    ) -> Result<(), StoreError> {
        let target = self.path_of(name)?;
        let target = target.as_path();
        if let WriteCondition::IfMatch(expected) = condition {
            // A blob that exists has its directory already.
            let current = match std::fs::read(target) {
                Ok(current) => current,
                Err(error) if is_missing(&error, target) => {
                    return Err(StoreError::ConditionFailed)
                }
                Err(error) => return Err(failed(error)),
            };
            let current_metadata = self.metadata_of(name, &content_hash(&current))?;
            if etag_of(&current, &current_metadata) != *expected {
                return Err(StoreError::ConditionFailed);
            }
            self.set_metadata(name, content, metadata)?;
            std::fs::rename(temp, target).map_err(failed)?;
            self.forget_metadata(name, Some(content));
            return Ok(());
        }

        if target.is_file() {
            return Err(StoreError::ConditionFailed);
        }
        if target.is_dir() {
            // Blobs live under this name (`a/b` exists, `a` is being written).
            return Err(failed(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a directory of blobs has this name",
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        self.set_metadata(name, content, metadata)?;
        // The link fails when the name is taken, even by another process: creation is atomic.
        match std::fs::hard_link(temp, target) {
            Ok(()) => {
                self.forget_metadata(name, Some(content));
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::ConditionFailed)
            }
            Err(error) => Err(failed(error)),
        }
    }

    fn delete(&self, name: &BlobName) -> Result<(), StoreError> {
        let Ok(path) = self.path_of(name) else {
            return Ok(());
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {
                self.remove_empty_parents(&path, &self.container_dir);
                self.forget_metadata(name, None);
                Ok(())
            }
            Err(error) if is_missing(&error, &path) => Ok(()),
            Err(error) => Err(failed(error)),
        }
    }

    /// Removes the directories a deleted file leaves empty (`jobs/<id>/`), up to `top`. A
    /// directory that is not empty stops the walk. The caller holds the lock alone, so no
    /// write of this process is about to use one of them.
    fn remove_empty_parents(&self, path: &Path, top: &Path) {
        let mut dir = path.parent();
        while let Some(current) = dir {
            if current == top || std::fs::remove_dir(current).is_err() {
                break;
            }
            dir = current.parent();
        }
    }

    fn list(
        &self,
        prefix: &str,
        marker: Option<&str>,
        max_results: usize,
    ) -> Result<ListPage, StoreError> {
        // Only the directory the prefix names needs walking: `jobs/ab` → `<container>/jobs`.
        let (start_dir, start_name) = match prefix.rfind('/') {
            Some(slash) => (
                self.container_dir.join(&prefix[..slash]),
                prefix[..=slash].to_owned(),
            ),
            None => (self.container_dir.clone(), String::new()),
        };
        let mut names = Vec::new();
        collect_files(&self.container_dir, &start_dir, start_name, &mut names)?;
        let temp_prefix = format!("{TEMP_DIR}/");
        let metadata_prefix = format!("{METADATA_DIR}/");
        names.retain(|(name, _)| {
            name.starts_with(prefix)
                && !name.starts_with(&temp_prefix)
                && !name.starts_with(&metadata_prefix)
                && marker.is_none_or(|marker| name.as_str() > marker)
        });
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        let more = names.len() > max_results;
        names.truncate(max_results);
        let next_marker = if more {
            names.last().map(|(name, _)| name.clone())
        } else {
            None
        };
        let items = names
            .into_iter()
            .filter_map(|(name, metadata)| {
                Some(BlobItem {
                    name: BlobName::parse(name).ok()?,
                    last_modified: metadata
                        .modified()
                        .map(DateTime::<Utc>::from)
                        .unwrap_or_default(),
                    size: metadata.len(),
                })
            })
            .collect();
        Ok(ListPage { items, next_marker })
    }
}

/// Adds the files under `dir` (whose blob name prefix is `dir_name`, empty or ending in `/`) to
/// `found`, skipping the temp directory and names that are not valid blob names.
fn collect_files(
    container_dir: &Path,
    dir: &Path,
    dir_name: String,
    found: &mut Vec<(String, std::fs::Metadata)>,
) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // No directory, no blobs (also when the prefix's directory part names a file).
        Err(error) if error.kind() == io::ErrorKind::NotFound || !dir.is_dir() => return Ok(()),
        Err(error) => return Err(failed(error)),
    };
    for entry in entries {
        let entry = entry.map_err(failed)?;
        let Ok(file_name) = entry.file_name().into_string() else {
            continue;
        };
        if dir == container_dir && (file_name == TEMP_DIR || file_name == METADATA_DIR) {
            continue;
        }
        let name = format!("{dir_name}{file_name}");
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            // Deleted while we walked.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(failed(error)),
        };
        if metadata.is_dir() {
            collect_files(container_dir, &entry.path(), format!("{name}/"), found)?;
        } else if metadata.is_file() && BlobName::parse(name.as_str()).is_ok() {
            found.push((name, metadata));
        }
    }
    Ok(())
}

#[async_trait]
impl BlobStore for LocalDirStore {
    async fn ensure_container(&self) -> Result<(), StoreError> {
        meter::count(Request::Write);
        self.blocking(|inner| std::fs::create_dir_all(inner.temp_dir()).map_err(failed))
            .await
    }

    async fn get(&self, name: &BlobName) -> Result<Option<Blob>, StoreError> {
        meter::count(Request::Read);
        let guard = Arc::clone(&self.inner.lock).read_owned().await;
        let name = name.clone();
        self.blocking(move |inner| {
            let _guard = guard;
            inner.get(&name)
        })
        .await
    }

    async fn put_with_metadata(
        &self,
        name: &BlobName,
        body: Bytes,
        _content_type: &str,
        metadata: &Metadata,
        condition: WriteCondition,
    ) -> Result<ETag, StoreError> {
        metadata
            .check()
            .map_err(|error| StoreError::Failed(Box::new(error)))?;
        self.inner.path_of(name)?;
        meter::count_write(body.len());
        let etag = etag_of(&body, metadata);
        let content = content_hash(&body);
        let temp = self.blocking(move |inner| inner.write_temp(&body)).await?;

        let guard = Arc::clone(&self.inner.lock).write_owned().await;
        let installed = {
            let temp = temp.clone();
            let name = name.clone();
            let metadata = metadata.clone();
            self.blocking(move |inner| {
                let _guard = guard;
                inner.install(&temp, &name, &content, &metadata, &condition)
            })
            .await
        };
        // After a rename the temp file is gone; after a hard link or a failure it is left over.
        let _ = tokio::fs::remove_file(&temp).await;
        installed.map(|()| etag)
    }

    async fn delete(&self, name: &BlobName) -> Result<(), StoreError> {
        meter::count(Request::Delete);
        let guard = Arc::clone(&self.inner.lock).write_owned().await;
        let name = name.clone();
        self.blocking(move |inner| {
            let _guard = guard;
            inner.delete(&name)
        })
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> Result<ListPage, StoreError> {
        meter::count(Request::List);
        let prefix = prefix.to_owned();
        let max_results = usize::try_from(max_results.max(1)).unwrap_or(usize::MAX);
        self.blocking(move |inner| inner.list(&prefix, marker.as_deref(), max_results))
            .await
    }

    fn describe(&self) -> String {
        format!("local dir {}", self.inner.container_dir.display())
    }
}

/// The hex SHA-256 of a blob's content: the name of its metadata file.
fn content_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The content's hash alone when there is no metadata; otherwise the hash of the content's
/// hash followed by each name and value, every one after a zero byte.
fn etag_of(body: &[u8], metadata: &Metadata) -> ETag {
    if metadata.is_empty() {
        return ETag(content_hash(body));
    }
    let mut hasher = Sha256::new();
    hasher.update(Sha256::digest(body));
    for (name, value) in metadata.iter() {
        hasher.update([0]);
        hasher.update(name);
        hasher.update([0]);
        hasher.update(value);
    }
    ETag(hex::encode(hasher.finalize()))
}

/// Whether a failed file operation on `path` means there is no blob there: the file does not
/// exist, or the path is a directory or lies under a file (`a/b` when `a` is a blob).
fn is_missing(error: &io::Error, path: &Path) -> bool {
    error.kind() == io::ErrorKind::NotFound || !path.is_file()
}

fn failed(error: io::Error) -> StoreError {
    StoreError::Failed(Box::new(error))
}

/// A blob name whose first segment is the store's temp directory.
#[derive(Debug, thiserror::Error)]
#[error("blob name {0} is reserved by the local store")]
struct ReservedName(BlobName);

#[cfg(test)]
mod tests;
