//! The function app on disk, as the host reads it: `host.json` (the executable, its arguments
//! and working directory, whether HTTP calls are forwarded, the route prefix) and every
//! `*/function.json` (each function's trigger, binding names, methods, route and `authLevel`).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// What `host.json` and the function folders declare.
#[derive(Debug, Clone)]
pub struct FunctionApp {
    pub root: PathBuf,
    /// `customHandler.description.defaultExecutablePath`.
    pub executable: String,
    /// `customHandler.description.arguments`.
    pub arguments: Vec<String>,
    /// `customHandler.description.workingDirectory`, resolved against the root.
    pub working_directory: PathBuf,
    /// `customHandler.enableForwardingHttpRequest`.
    pub forwards_http: bool,
    /// `extensions.http.routePrefix` (default `api`).
    pub route_prefix: String,
    /// One per folder holding a `function.json`, sorted by name.
    pub functions: Vec<FunctionDefinition>,
}

/// One function folder.
#[derive(Debug, Clone)]
pub struct FunctionDefinition {
    /// The folder name, exact case: the envelope path and `sys.MethodName`.
    pub name: String,
    pub bindings: Vec<Binding>,
}

/// One entry of `bindings` in `function.json`.
#[derive(Debug, Clone)]
pub struct Binding {
    pub name: String,
    /// `type`: `httpTrigger`, `http`, `timerTrigger`, ...
    pub kind: String,
    /// `in` or `out`.
    pub direction: String,
    /// The whole entry, for settings such as `methods`, `route` or `schedule`.
    pub settings: Value,
}

impl FunctionApp {
    /// Reads the app at `root`. The error says which file is wrong and how.
    pub fn load(root: &Path) -> Result<Self, String> {
        let host_path = root.join("host.json");
        let host = read_json(&host_path)?;
        let handler = &host["customHandler"];
        let description = &handler["description"];
        let executable = description["defaultExecutablePath"]
            .as_str()
            .filter(|path| !path.is_empty())
            .ok_or_else(|| {
                format!(
                    "{}: customHandler.description.defaultExecutablePath is missing",
                    host_path.display()
                )
            })?
            .to_owned();
        let arguments = match &description["arguments"] {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        format!(
                            "{}: customHandler.description.arguments holds a non-string",
                            host_path.display()
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(format!(
                    "{}: customHandler.description.arguments is not an array",
                    host_path.display()
                ))
            }
        };
        let working_directory = match description["workingDirectory"].as_str() {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.to_path_buf(),
        };
        let route_prefix = host["extensions"]["http"]["routePrefix"]
            .as_str()
            .unwrap_or("api")
            .trim_matches('/')
            .to_owned();

        let mut functions = Vec::new();
        let entries =
            std::fs::read_dir(root).map_err(|error| format!("{}: {error}", root.display()))?;
        for entry in entries {
            let folder = entry
                .map_err(|error| format!("{}: {error}", root.display()))?
                .path();
            let function_json = folder.join("function.json");
            if folder.is_dir() && function_json.is_file() {
                let name = folder
                    .file_name()
                    .and_then(|name| name.to_str())
                    .ok_or_else(|| format!("{}: the folder name is not UTF-8", folder.display()))?
                    .to_owned();
                functions.push(FunctionDefinition::parse(name, &function_json)?);
            }
        }
        if functions.is_empty() {
            return Err(format!(
                "{}: no */function.json: the app has no functions",
                root.display()
            ));
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));

        Ok(Self {
            root: root.to_path_buf(),
            executable,
            arguments,
            working_directory,
            forwards_http: handler["enableForwardingHttpRequest"]
                .as_bool()
                .unwrap_or(false),
            route_prefix,
            functions,
        })
    }

    /// The function named exactly `name`.
    pub fn function(&self, name: &str) -> Option<&FunctionDefinition> {
        self.functions.iter().find(|function| function.name == name)
    }

    /// The HTTP function whose public route is `path` (no query). ASP.NET routing ignores case
    /// and a trailing slash.
    pub fn http_function_at(&self, path: &str) -> Option<&FunctionDefinition> {
        let path = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        self.functions.iter().find(|function| {
            function
                .public_path(&self.route_prefix)
                .is_some_and(|route| route.eq_ignore_ascii_case(path))
        })
    }
}

impl FunctionDefinition {
    fn parse(name: String, path: &Path) -> Result<Self, String> {
        let document = read_json(path)?;
        let entries = document["bindings"]
            .as_array()
            .filter(|bindings| !bindings.is_empty())
            .ok_or_else(|| format!("{}: bindings must be a non-empty array", path.display()))?;
        let mut bindings = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let field = |key: &str| {
                entry[key].as_str().map(str::to_owned).ok_or_else(|| {
                    format!("{}: bindings[{index}].{key} is missing", path.display())
                })
            };
            bindings.push(Binding {
                name: field("name")?,
                kind: field("type")?,
                direction: field("direction")?,
                settings: entry.clone(),
            });
        }
        let triggers = bindings
            .iter()
            .filter(|b| b.kind.ends_with("Trigger"))
            .count();
        if triggers != 1 {
            return Err(format!(
                "{}: a function needs exactly one trigger, found {triggers}",
                path.display()
            ));
        }
        Ok(Self { name, bindings })
    }

    /// The trigger binding (`parse` guarantees there is exactly one).
    pub fn trigger(&self) -> &Binding {
        self.bindings
            .iter()
            .find(|binding| binding.kind.ends_with("Trigger"))
            .expect("a parsed function has a trigger")
    }

    pub fn is_http(&self) -> bool {
        self.trigger().kind.eq_ignore_ascii_case("httpTrigger")
    }

    pub fn is_timer(&self) -> bool {
        self.trigger().kind.eq_ignore_ascii_case("timerTrigger")
    }

    /// Driven by the queue listener ([`super::QueueListener`]).
    pub fn is_queue(&self) -> bool {
        self.trigger().kind.eq_ignore_ascii_case("queueTrigger")
    }

    /// The `http` output binding, whose name is the key of `Outputs` in an envelope answer.
    pub fn http_output(&self) -> Option<&Binding> {
        self.bindings
            .iter()
            .find(|binding| binding.direction == "out" && binding.kind.eq_ignore_ascii_case("http"))
    }

    /// Exactly one `httpTrigger` in and one `http` out: the only shape the host forwards.
    pub fn is_http_in_and_out(&self) -> bool {
        let inputs: Vec<&Binding> = self
            .bindings
            .iter()
            .filter(|b| b.direction == "in")
            .collect();
        let outputs: Vec<&Binding> = self
            .bindings
            .iter()
            .filter(|b| b.direction == "out")
            .collect();
        matches!(inputs.as_slice(), [input] if input.kind.eq_ignore_ascii_case("httpTrigger"))
            && matches!(outputs.as_slice(), [output] if output.kind.eq_ignore_ascii_case("http"))
    }

    /// `authLevel` in lower case; `function` when absent.
    pub fn auth_level(&self) -> String {
        self.trigger().settings["authLevel"]
            .as_str()
            .unwrap_or("function")
            .to_ascii_lowercase()
    }

    /// Whether `method` is listed in `methods` (every method when the list is absent).
    pub fn allows_method(&self, method: &str) -> bool {
        match self.trigger().settings["methods"].as_array() {
            None => true,
            Some(methods) => methods
                .iter()
                .filter_map(Value::as_str)
                .any(|allowed| allowed.eq_ignore_ascii_case(method)),
        }
    }

    /// `/<prefix>/<route>` for an HTTP function (`route` defaults to the function name).
    pub fn public_path(&self, route_prefix: &str) -> Option<String> {
        if !self.is_http() {
            return None;
        }
        let route = self.trigger().settings["route"]
            .as_str()
            .unwrap_or(&self.name)
            .trim_matches('/');
        Some(if route_prefix.is_empty() {
            format!("/{route}")
        } else {
            format!("/{route_prefix}/{route}")
        })
    }
}

/// A JSON file; the error names the file.
pub(super) fn read_json(path: &Path) -> Result<Value, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{}: not JSON: {error}", path.display()))
}
