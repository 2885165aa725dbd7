//! The documentation held to the code, so that it cannot rot unnoticed. What is checked:
//!
//! - every test the README or a page of `docs/` cites exists, where the citation says it is;
//! - every setting the handler reads is listed in `docs/settings.md`, and every setting listed
//!   there is one the handler reads.
//!
//! **What counts as a cited test.** Outside fenced code blocks, a code span holding a
//! snake_case name (lower-case letters, digits and `_`) of at least four words
//! (`a_job_killed_mid_way_is_resumed_after_restart_without_refetching_finished_subreddits`),
//! optionally after a module path (`durability::`, `testkit::in_process::`). A name cut short
//! with `…` or `...` needs only two words: at its end it is a prefix of the test's name, at its
//! start a suffix. Shorter names are JSON fields and such (`status_query_url`); setting names
//! are upper case and never match.
//!
//! **Where it must be.** A function of that name (a test or not: some citations name helpers)
//! must exist in a `.rs` file under `src/`, `tests/`, `testkit/` or `benches/`. A module path
//! narrows it: each of its names, in order, must be a folder, a file or an inline `mod` on the
//! way to the function (`durability::x` is `x` in `tests/integration/durability.rs`). A file
//! cited just before the name (`` `src/jobs/status.rs` `terminal_states_refuse_every_transition` ``),
//! and for the names that follow it separated by `, `, narrows it to that file and the
//! files of its submodules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use testkit::app_root;
use testkit::docs::{rust_files, settings_the_handler_reads};

/// The folders whose functions a citation may name.
const CODE_FOLDERS: [&str; 4] = ["src", "tests", "testkit", "benches"];

fn read(path: &str) -> String {
    std::fs::read_to_string(app_root().join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The README and every page of `docs/`, by path.
fn documents() -> Vec<(String, String)> {
    let mut paths = vec!["README.md".to_owned()];
    let mut pages: Vec<String> = std::fs::read_dir(app_root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    pages.sort();
    paths.extend(pages);
    paths
        .into_iter()
        .map(|path| {
            let text = read(&path);
            (path, text)
        })
        .collect()
}

// ----- functions in the code -----

/// A function found in the code.
#[derive(Debug, Clone)]
struct Function {
    name: String,
    file: PathBuf,
    /// The names on the way to it: the file's folders and stem, then its inline modules.
    modules: Vec<String>,
}

/// Every function under [`CODE_FOLDERS`].
fn functions() -> Vec<Function> {
    let root = app_root();
    let mut found = Vec::new();
    for folder in CODE_FOLDERS {
        for file in rust_files(&root, Path::new(folder)) {
            let text = std::fs::read_to_string(root.join(&file)).unwrap();
            let path_modules: Vec<String> = file
                .with_extension("")
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            for (name, inline) in functions_in(&text) {
                let mut modules = path_modules.clone();
                modules.extend(inline);
                found.push(Function {
                    name,
                    file: file.clone(),
                    modules,
                });
            }
        }
    }
    assert!(found.len() > 500, "only {} functions found", found.len());
    found
}

/// The functions of one Rust source file, each with the inline modules (`mod x { ... }`) it
/// sits in. A small lexer: it skips comments, strings, raw strings and character literals, so
/// that a `fn` or a brace inside them counts for nothing, and follows the braces.
fn functions_in(text: &str) -> Vec<(String, Vec<String>)> {
    #[derive(PartialEq)]
    enum Expect {
        Nothing,
        FunctionName,
        ModuleName,
        ModuleBody(String),
    }
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let is_continue = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let mut modules: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut expect = Expect::Nothing;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut nesting = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    nesting += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    nesting -= 1;
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(&chars, i) {
            i = end;
            expect = Expect::Nothing;
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            i += if c == 'b' { 2 } else { 1 };
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            expect = Expect::Nothing;
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let quote = if c == 'b' { i + 1 } else { i };
            if at(quote + 1) == '\\' {
                // An escape: '\n', '\'', '\u{1F600}'.
                i = quote + 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(quote + 2) == '\'' {
                i = quote + 3;
            } else {
                // A lifetime or a label: its name follows as an identifier.
                i = quote + 1;
            }
            expect = Expect::Nothing;
        } else if is_start(c) {
            if c == 'r' && at(i + 1) == '#' && is_start(at(i + 2)) {
                i += 2;
            }
            let word_start = i;
            while i < chars.len() && is_continue(chars[i]) {
                i += 1;
            }
            let word: String = chars[word_start..i].iter().collect();
            expect = match (expect, word.as_str()) {
                (Expect::FunctionName, _) => {
                    found.push((word, modules.iter().map(|(name, _)| name.clone()).collect()));
                    Expect::Nothing
                }
                (Expect::ModuleName, _) => Expect::ModuleBody(word),
                (_, "fn") => Expect::FunctionName,
                (_, "mod") => Expect::ModuleName,
                _ => Expect::Nothing,
            };
        } else if c.is_ascii_digit() {
            while i < chars.len() && is_continue(chars[i]) {
                i += 1;
            }
            expect = Expect::Nothing;
        } else {
            if c == '{' {
                depth += 1;
                if let Expect::ModuleBody(name) = expect {
                    modules.push((name, depth));
                }
            } else if c == '}' {
                depth = depth.saturating_sub(1);
                while modules.last().is_some_and(|(_, inside)| *inside > depth) {
                    modules.pop();
                }
            }
            expect = Expect::Nothing;
            i += 1;
        }
    }
    found
}

/// Where a raw string (`r"..."`, `r#"..."#`, `br"..."`) starting at `i` ends, if one does.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

// ----- citations in the documents -----

/// How a cited name is to be matched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Exact(String),
    /// Cut short at its end (`a_job_killed_mid_way_…`).
    Prefix(String),
    /// Cut short at its start (`…pages_follow_one_another`).
    Suffix(String),
    /// Cut short at both ends.
    Part(String),
}

impl Name {
    fn matches(&self, name: &str) -> bool {
        match self {
            Name::Exact(cited) => name == cited,
            Name::Prefix(cited) => name.starts_with(cited.as_str()),
            Name::Suffix(cited) => name.ends_with(cited.as_str()),
            Name::Part(cited) => name.contains(cited.as_str()),
        }
    }
}

/// A test (or function) a document cites.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Citation {
    /// As written, for messages.
    text: String,
    line: usize,
    modules: Vec<String>,
    name: Name,
    /// The file cited just before it.
    file: Option<String>,
}

const ELLIPSES: [&str; 2] = ["…", "..."];

/// A module name or a function name: lower-case snake_case.
fn is_snake(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The cited name in a code span, if the span holds one (see the module documentation).
fn cited_name(span: &str) -> Option<(Vec<String>, Name)> {
    let (path, name) = match span.rsplit_once("::") {
        Some((path, name)) => (Some(path), name),
        None => (None, span),
    };
    let modules: Vec<String> = match path {
        None => Vec::new(),
        Some(path) => path.split("::").map(str::to_owned).collect(),
    };
    if !modules
        .iter()
        .all(|module| is_snake(module) && !module.starts_with(|c: char| c.is_ascii_digit()))
    {
        return None;
    }
    let (cut_start, name) = match ELLIPSES.iter().find_map(|e| name.strip_prefix(e)) {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let (cut_end, name) = match ELLIPSES.iter().find_map(|e| name.strip_suffix(e)) {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    if !is_snake(name) || (!cut_start && name.starts_with('_')) || (!cut_end && name.ends_with('_'))
    {
        return None;
    }
    let words = name.split('_').filter(|word| !word.is_empty()).count();
    let least = if cut_start || cut_end { 2 } else { 4 };
    if words < least {
        return None;
    }
    let name = name.to_owned();
    let name = match (cut_start, cut_end) {
        (false, false) => Name::Exact(name),
        (false, true) => Name::Prefix(name),
        (true, false) => Name::Suffix(name),
        (true, true) => Name::Part(name),
    };
    Some((modules, name))
}

/// A code span that names a Rust file (`src/jobs/status.rs`).
fn is_rust_file(span: &str) -> bool {
    span.ends_with(".rs") && !span.contains(char::is_whitespace)
}

/// Every citation of a document.
fn citations(document: &str) -> Vec<Citation> {
    // Fenced code blocks hold commands and output, not citations; their lines are kept empty
    // so that line numbers stay right.
    let mut fenced = false;
    let text: String = document
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                ""
            } else if fenced {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");

    #[derive(PartialEq)]
    enum Previous {
        Other,
        File,
        ScopedCitation,
    }
    let mut found = Vec::new();
    let mut file: Option<String> = None;
    let mut previous = Previous::Other;
    let mut line = 1;
    for (index, part) in text.split('`').enumerate() {
        let is_span = index % 2 == 1;
        if !is_span {
            let gap = part;
            let adjacent = match previous {
                Previous::File => gap.trim().is_empty(),
                Previous::ScopedCitation => gap == ", ",
                Previous::Other => false,
            };
            if !adjacent {
                file = None;
                previous = Previous::Other;
            }
        } else if is_rust_file(part) {
            file = Some(part.to_owned());
            previous = Previous::File;
        } else if let Some((modules, name)) = cited_name(part) {
            let scoped = modules.is_empty() && file.is_some();
            found.push(Citation {
                text: part.to_owned(),
                line,
                file: if scoped { file.clone() } else { None },
                modules,
                name,
            });
            previous = if scoped {
                Previous::ScopedCitation
            } else {
                Previous::Other
            };
        } else {
            file = None;
            previous = Previous::Other;
        }
        line += part.matches('\n').count();
    }
    found
}

/// Why a citation names no function where it says, or `None` when it does.
fn unresolved(citation: &Citation, functions: &[Function]) -> Option<String> {
    let named: Vec<&Function> = functions
        .iter()
        .filter(|function| citation.name.matches(&function.name))
        .collect();
    if named.is_empty() {
        return Some(
            match citation.name {
                Name::Exact(_) => "no function has that name",
                Name::Prefix(_) => "no function's name starts with that",
                Name::Suffix(_) => "no function's name ends with that",
                Name::Part(_) => "no function's name holds that",
            }
            .into(),
        );
    }
    let in_modules = |function: &&Function| {
        let mut names = function.modules.iter();
        citation
            .modules
            .iter()
            .all(|module| names.any(|name| name == module))
    };
    let in_file = |function: &&Function| match &citation.file {
        None => true,
        Some(file) => {
            let file = Path::new(file);
            let folder = if file.file_name().is_some_and(|name| name == "mod.rs") {
                file.parent().unwrap().to_path_buf()
            } else {
                file.with_extension("")
            };
            function.file == file || function.file.starts_with(&folder)
        }
    };
    if named
        .iter()
        .any(|function| in_modules(function) && in_file(function))
    {
        return None;
    }
    let places: BTreeSet<String> = named
        .iter()
        .map(|function| function.file.display().to_string())
        .collect();
    let said = match &citation.file {
        Some(file) => format!("in {file}"),
        None => format!("in a module {}", citation.modules.join("::")),
    };
    Some(format!(
        "it is not {said}, but in {}",
        places.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

/// What is wrong with the citations of `documents`, one line each.
fn broken_citations(documents: &[(String, String)], functions: &[Function]) -> Vec<String> {
    let mut broken = Vec::new();
    for (path, text) in documents {
        for citation in citations(text) {
            if let Some(file) = &citation.file {
                if !app_root().join(file).is_file() {
                    broken.push(format!(
                        "{path}:{} cites `{}` in {file}, which does not exist",
                        citation.line, citation.text
                    ));
                    continue;
                }
            }
            if let Some(reason) = unresolved(&citation, functions) {
                broken.push(format!(
                    "{path}:{} cites `{}`: {reason}",
                    citation.line, citation.text
                ));
            }
        }
    }
    broken
}

#[test]
fn every_test_the_docs_cite_exists_where_they_say_it_is() {
    let documents = documents();
    let cited: usize = documents
        .iter()
        .map(|(_, text)| citations(text).len())
        .sum();
    assert!(
        cited > 50,
        "only {cited} citations found: is the rule still right?"
    );
    let broken = broken_citations(&documents, &functions());
    assert!(
        broken.is_empty(),
        "cited tests that are not where the documents say (renamed, moved or removed?):\n{}",
        broken.join("\n")
    );
}

#[test]
fn a_renamed_or_moved_test_is_reported_and_a_cut_short_name_is_matched_by_its_start() {
    let functions = functions();
    let document = |text: &str| vec![("example.md".to_owned(), text.to_owned())];
    // Where the test really is, whole and cut short: nothing to report.
    let good = "`in_process::a_cancelled_job_stops_before_its_next_subreddit_and_keeps_finished_results`, \
                `hardening::a_busy_instance_claims_…`, `durability::a_job_killed_mid_way_...`, \
                `src/jobs/status.rs` `terminal_states_refuse_every_transition`";
    assert_eq!(
        broken_citations(&document(good), &functions),
        Vec::<String>::new()
    );
    // A module it is not in, a name nothing has, a prefix nothing starts with, the wrong file.
    let bad = "`durability::a_cancelled_job_stops_before_its_next_subreddit_and_keeps_finished_results`\n\
               `api::a_test_that_was_renamed_long_ago`\n\
               `hardening::a_busy_instance_claims_every…`\n\
               `src/app/tests.rs` `terminal_states_refuse_every_transition`\n\
               `src/no/such/file.rs` `terminal_states_refuse_every_transition`";
    let broken = broken_citations(&document(bad), &functions);
    assert_eq!(broken.len(), 5, "{broken:#?}");
    assert!(
        broken[0].starts_with("example.md:1 cites `durability::a_cancelled")
            && broken[0].contains("tests/integration/in_process.rs"),
        "{}",
        broken[0]
    );
    assert!(
        broken[1].contains("no function has that name"),
        "{}",
        broken[1]
    );
}

#[test]
fn the_citation_rule_takes_test_names_and_leaves_fields_settings_and_types_alone() {
    let text = "\
The `status_query_url` field, `JOB_STALE_AFTER_SECONDS`, `StoreError::Unavailable`,
`reddit::RedditClient`, `info,warp::filters::trace=warn`, `::ffff:a.b.c.d`, `secrets::*`.

```console
$ cargo test `api::not_a_citation_inside_a_fenced_block`
```

`api::bad_input_gets_a_json_error_and_changes_nothing`, `a_forwarded_host_is_trusted_only`,
`durability::a_job_killed_mid_way_…`, `…pages_follow_one_another`, `a_job_...`,
`src/jobs/repository/tests.rs` `first_test_of_the_file`, `second_test_of_the_file` (then
`third_test_not_scoped_anymore`).
";
    let found: Vec<(usize, String, Name, Option<String>)> = citations(text)
        .into_iter()
        .map(|c| (c.line, c.modules.join("::"), c.name, c.file))
        .collect();
    let file = Some("src/jobs/repository/tests.rs".to_owned());
    let exact = |name: &str| Name::Exact(name.to_owned());
    assert_eq!(
        found,
        vec![
            (
                8,
                "api".into(),
                exact("bad_input_gets_a_json_error_and_changes_nothing"),
                None
            ),
            (
                8,
                "".into(),
                exact("a_forwarded_host_is_trusted_only"),
                None
            ),
            (
                9,
                "durability".into(),
                Name::Prefix("a_job_killed_mid_way_".into()),
                None
            ),
            (
                9,
                "".into(),
                Name::Suffix("pages_follow_one_another".into()),
                None
            ),
            (9, "".into(), Name::Prefix("a_job_".into()), None),
            (10, "".into(), exact("first_test_of_the_file"), file.clone()),
            (10, "".into(), exact("second_test_of_the_file"), file),
            (11, "".into(), exact("third_test_not_scoped_anymore"), None),
        ]
    );
}

#[test]
fn the_lexer_finds_functions_in_their_inline_modules_and_none_in_strings_or_comments() {
    let source = r##"
// fn in_a_comment() {}
/* fn in_a_block /* nested */ comment() {} */
const TEXT: &str = "fn in_a_string() { }";
const RAW: &str = r#"fn in_a_raw_string() { "# ;
const BRACE: char = '{';
fn outer<'a>(x: &'a str) -> &'a str { x }
mod tests {
    use super::*;
    #[test]
    fn inside_tests() { let _ = '}'; }
    mod deeper { fn inside_deeper() {} }
    fn after_deeper() {}
}
fn at_the_end() {}
"##;
    let found = functions_in(source);
    let expected: Vec<(String, Vec<String>)> = vec![
        ("outer".into(), vec![]),
        ("inside_tests".into(), vec!["tests".into()]),
        (
            "inside_deeper".into(),
            vec!["tests".into(), "deeper".into()],
        ),
        ("after_deeper".into(), vec!["tests".into()]),
        ("at_the_end".into(), vec![]),
    ];
    assert_eq!(found, expected);
}

// ----- settings -----

/// The settings `docs/settings.md` lists: every name in code in the first cell of a table row,
/// with its line.
fn listed_in_settings_md() -> BTreeMap<String, usize> {
    let mut listed = BTreeMap::new();
    for (index, line) in read("docs/settings.md").lines().enumerate() {
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let first_cell = row.split(" | ").next().unwrap();
        for name in format!("`{first_cell}").split('`').skip(1).step_by(2) {
            assert!(
                listed.insert(name.to_owned(), index + 1).is_none(),
                "docs/settings.md lists {name} twice"
            );
        }
    }
    assert!(listed.len() > 30, "{listed:?}");
    listed
}

/// Every setting the handler reads: by name in its code, and `RUST_LOG`, which
/// `tracing_subscriber` reads for it.
fn read_by_the_handler() -> BTreeSet<String> {
    let mut names = settings_the_handler_reads();
    assert!(
        read("src/telemetry.rs").contains("EnvFilter::try_from_default_env"),
        "src/telemetry.rs no longer reads the log filter from tracing_subscriber's variable"
    );
    names.insert(tracing_subscriber::EnvFilter::DEFAULT_ENV.to_owned());
    assert!(names.len() > 30, "{names:?}");
    names
}

#[test]
fn every_setting_the_handler_reads_is_listed_in_settings_md() {
    let listed = listed_in_settings_md();
    let missing: Vec<String> = read_by_the_handler()
        .into_iter()
        .filter(|name| !listed.contains_key(name))
        .collect();
    assert!(
        missing.is_empty(),
        "the handler reads these settings, which no table of docs/settings.md lists: {}",
        missing.join(", ")
    );
}

#[test]
fn settings_md_lists_only_settings_the_handler_reads() {
    let read = read_by_the_handler();
    let stray: Vec<String> = listed_in_settings_md()
        .into_iter()
        .filter(|(name, _)| !read.contains(name))
        .map(|(name, line)| format!("{name} (docs/settings.md:{line})"))
        .collect();
    assert!(
        stray.is_empty(),
        "docs/settings.md lists settings the handler never reads: {}",
        stray.join(", ")
    );
}
