//! What the documentation is checked against: the settings the handler reads, found in its
//! source. `tests/docs.rs` holds `docs/settings.md` to this list; the names are read from the
//! code so that a setting added there cannot go undocumented.
//!
//! A setting counts as read when its name is a string literal of the settings code (every
//! file of `src/config.rs` and `src/config/`, and the identity code, which reads the platform's
//! token endpoint), outside its tests, or the `env = "..."` of a command-line argument
//! anywhere under `src/` (clap reads those).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The files whose string literals name the settings the server reads: the settings module
/// with every file under `src/config/`, and the identity code (the platform's variables).
/// Paths are relative to the app root.
pub fn settings_sources() -> Vec<PathBuf> {
    let root = crate::app_root();
    let mut sources = vec![
        PathBuf::from("src/config.rs"),
        PathBuf::from("src/store/azure/identity.rs"),
    ];
    sources.extend(
        rust_files(&root, Path::new("src/config"))
            .into_iter()
            .filter(|path| !is_test_file(path)),
    );
    sources.sort();
    sources
}

/// The string literals of a source file that have the shape of a setting name: upper-case
/// words joined by `_` (`MAX_CONCURRENT_JOBS`, `PORT`), or `AzureWebJobsStorage` and the names under
/// it, or the names under `OUTPUT_STORAGE_CONNECTION_STRING__`.
pub fn setting_names_in(source: &str) -> BTreeSet<String> {
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| {
            let screaming = literal.len() > 3
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && literal.as_bytes()[0].is_ascii_uppercase();
            let storage = literal.starts_with("AzureWebJobsStorage")
                || literal.starts_with("OUTPUT_STORAGE_CONNECTION_STRING__");
            (screaming || storage) && !literal.contains(' ')
        })
        .map(str::to_owned)
        .collect()
}

/// Every setting the handler reads by name: the setting names of [`settings_sources`] outside
/// their tests, and the variables of the command line's arguments (`env = "WOMBLE_URL"`).
/// Variables read by libraries on their own (`RUST_LOG` through `tracing_subscriber`,
/// `azure_identity`'s) are not here: their names are not in this code.
pub fn settings_the_handler_reads() -> BTreeSet<String> {
    let root = crate::app_root();
    let mut names = BTreeSet::new();
    for source in settings_sources() {
        names.extend(setting_names_in(without_tests(&read(&root, &source))));
    }
    for source in rust_files(&root, Path::new("src")) {
        let text = read(&root, &source);
        for (index, _) in text.match_indices("env = \"") {
            let rest = &text[index + "env = \"".len()..];
            let name = rest.split('"').next().unwrap_or_default();
            names.extend(setting_names_in(&format!("\"{name}\"")));
        }
    }
    names
}

/// A file's text before its test module (`#[cfg(test)]`, which by this project's layout ends a
/// file): test code names variables only to set them up.
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// A file of tests alone: `tests.rs`, or anything in a `tests/` folder.
fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|name| name == "tests.rs")
        || path.components().any(|part| part.as_os_str() == "tests")
}

fn read(root: &Path, path: &Path) -> String {
    std::fs::read_to_string(root.join(path))
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every `.rs` file under `dir` (relative to `root`), recursively, as paths relative to `root`,
/// sorted.
pub fn rust_files(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(root.join(&dir))
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap();
            let path = dir.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
