//! `infra/` and `azure.yaml`, checked offline: no Bicep compiler can be installed on the build
//! machines and nothing here deploys. What is checked:
//!
//! - every setting the handler reads (`testkit::docs::settings_the_handler_reads`, the one
//!   list `tests/docs.rs` holds docs/settings.md to) is in the README's settings table, and every one the table marks `infra/`
//!   is set by the template, while every setting the template sets is in the table;
//! - the storage settings name the identity the app runs as, and every role the code needs is
//!   assigned to that identity, on the right resource;
//! - the names match the contract: container `hot-topics`, queue `hot-topics-jobs`, the Reddit
//!   secrets, and the Key Vault references point at them;
//! - `azure.yaml` deploys what the Makefile unpacks;
//! - the decisions of docs/deploy.md: queue dispatch by default with inline a parameter away,
//!   one instance per function group, the roles Microsoft states for host storage, the timer's
//!   key generated once and kept, the host key and the Key Vault references seen to by the
//!   postdeploy hook with bounded retries, and the azd version whose zip keeps the execute bit.
//!   The hooks are POSIX sh scripts; they are run here against stand-ins for `az`, `azd` and
//!   `sleep` that record their arguments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use summary_womble::config::{DEFAULT_CONTAINER, DEFAULT_JOB_QUEUE as JOB_QUEUE};
use summary_womble::secrets::{CLIENT_ID_SECRET, CLIENT_SECRET_SECRET, USER_AGENT_SECRET};

/// Roles by the id Azure gives them (built-in role definitions).
const STORAGE_BLOB_DATA_OWNER: &str = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b";
const STORAGE_QUEUE_DATA_CONTRIBUTOR: &str = "974c5e8b-45b9-4653-ba55-5f855dd0fb88";
const STORAGE_TABLE_DATA_CONTRIBUTOR: &str = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3";
const MONITORING_METRICS_PUBLISHER: &str = "3913510d-42f4-4e42-8a64-420c390055eb";
const KEY_VAULT_SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";

/// The first azd whose zip keeps a file's Unix mode (Azure/azure-dev#8599, in 1.26.0).
const AZD_KEEPING_THE_EXECUTE_BIT: &str = ">= 1.26.0";

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository().join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Every `.bicep` file of `infra/`, concatenated.
fn bicep() -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repository().join("infra"))
        .expect("infra/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "bicep"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .bicep file in infra/");
    files
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where a setting comes from in Azure, as the README's table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InAzure {
    Template,
    Platform,
    Optional,
}

/// The README's settings table: every variable named in a row's first cell, with the row's
/// last cell.
fn documented_settings() -> BTreeMap<String, InAzure> {
    let readme = read("README.md");
    let section = readme
        .split("\n## Settings\n")
        .nth(1)
        .expect("README.md has a Settings section");
    let section = section.split("\n## ").next().unwrap();
    let mut settings = BTreeMap::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        let in_azure = match cells.last().unwrap().trim() {
            "infra/" => InAzure::Template,
            "platform" => InAzure::Platform,
            "optional" => InAzure::Optional,
            other => panic!("README settings row with {other:?} in the last column: {row}"),
        };
        for name in cells[0].split('`').skip(1).step_by(2) {
            assert!(
                settings.insert(name.to_owned(), in_azure).is_none(),
                "{name} is in the table twice"
            );
        }
    }
    assert!(settings.len() > 20, "{settings:?}");
    settings
}

/// The app settings of the Function App: name to value expression.
fn app_settings(bicep: &str) -> BTreeMap<String, String> {
    let block = bicep
        .split("appSettings: [")
        .nth(1)
        .expect("the template sets appSettings");
    let block = block.split("\n      ]").next().unwrap();
    let mut settings = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in block.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("name: '") {
            name = Some(rest.trim_end_matches('\'').to_owned());
        } else if let Some(value) = line.strip_prefix("value: ") {
            let name = name.take().expect("value after name");
            settings.insert(name, value.to_owned());
        }
    }
    assert!(!settings.is_empty());
    settings
}

/// The body (between the outer braces) of each resource of a type: symbol to body.
fn resources(bicep: &str, resource_type: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let marker = format!(" '{resource_type}@");
    for (index, _) in bicep.match_indices(&marker) {
        let line_start = bicep[..index].rfind('\n').map_or(0, |i| i + 1);
        let declaration = &bicep[line_start..index];
        let Some(symbol) = declaration.trim().strip_prefix("resource ") else {
            continue;
        };
        let open = index + bicep[index..].find('{').unwrap();
        let mut depth = 0;
        let mut close = open;
        for (offset, c) in bicep[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + offset;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.insert(symbol.to_owned(), bicep[open + 1..close].to_owned());
    }
    found
}

/// The one resource of a type.
fn only_resource(bicep: &str, resource_type: &str) -> (String, String) {
    let mut found = resources(bicep, resource_type);
    assert_eq!(found.len(), 1, "{resource_type}: {:?}", found.keys());
    found.pop_first().unwrap()
}

/// The `var` object of role ids: name to id.
fn role_variables(bicep: &str) -> BTreeMap<String, String> {
    let block = bicep
        .split("var roles = {")
        .nth(1)
        .expect("the template names its roles in `var roles`");
    let block = block.split('}').next().unwrap();
    block
        .lines()
        .filter_map(|line| line.trim().split_once(": "))
        .map(|(name, id)| (name.to_owned(), id.trim_matches('\'').to_owned()))
        .collect()
}

#[test]
fn every_setting_the_handler_reads_is_documented_with_where_it_comes_from_in_azure() {
    // The host matches the names under a prefix ignoring case, and so does the handler.
    let documented: BTreeSet<String> = documented_settings()
        .keys()
        .map(|name| name.to_ascii_lowercase())
        .collect();
    for name in testkit::docs::settings_the_handler_reads() {
        assert!(
            documented.contains(&name.to_ascii_lowercase()),
            "the handler reads {name}, which README.md's settings table does not list"
        );
    }
}

#[test]
fn every_setting_the_template_must_set_is_set_and_every_one_it_sets_is_documented() {
    let documented = documented_settings();
    let set = app_settings(&bicep());
    for (name, in_azure) in &documented {
        if *in_azure == InAzure::Template {
            assert!(
                set.contains_key(name),
                "README.md says the template sets {name}; infra/ does not"
            );
        }
    }
    for name in set.keys() {
        assert!(
            documented.contains_key(name),
            "infra/ sets {name}, which README.md's settings table does not list"
        );
        assert_ne!(
            documented[name],
            InAzure::Platform,
            "{name} is the platform's to set, not the template's"
        );
    }
}

#[test]
fn the_storage_settings_and_key_vault_references_use_the_identity_the_app_runs_as() {
    let bicep = bicep();
    let (identity, _) = only_resource(&bicep, "Microsoft.ManagedIdentity/userAssignedIdentities");
    let (storage, _) = only_resource(&bicep, "Microsoft.Storage/storageAccounts");
    let (_, app) = only_resource(&bicep, "Microsoft.Web/sites");

    assert!(app.contains("kind: 'functionapp,linux'"), "{app}");
    assert!(app.contains("type: 'UserAssigned'"), "{app}");
    assert!(
        app.contains(&format!("'${{{identity}.id}}': {{}}")),
        "the app does not run as {identity}"
    );
    assert!(
        app.contains(&format!("keyVaultReferenceIdentity: {identity}.id")),
        "Key Vault references are not resolved as {identity}"
    );
    assert!(app.contains("name: 'custom'"), "not the custom runtime");

    let settings = app_settings(&bicep);
    assert_eq!(
        settings["AzureWebJobsStorage__accountName"],
        format!("{storage}.name")
    );
    assert_eq!(
        settings["AzureWebJobsStorage__credential"],
        "'managedidentity'"
    );
    assert_eq!(
        settings["AzureWebJobsStorage__clientId"],
        format!("{identity}.properties.clientId")
    );
    // No connection string: it would win over the identity-based settings.
    assert!(!settings.contains_key("AzureWebJobsStorage"));
    assert!(!settings.contains_key("OUTPUT_STORAGE_CONNECTION_STRING"));

    // The Reddit credentials are read by the handler from the vault, as the app's identity,
    // so that a rotated secret is taken up without a restart: no reference in the settings.
    assert_eq!(settings["KEY_VAULT_URL"], "vault.properties.vaultUri");
    assert_eq!(
        settings["AZURE_CLIENT_ID"],
        format!("{identity}.properties.clientId")
    );
    for setting in [
        "REDDIT_CLIENT_ID",
        "REDDIT_CLIENT_SECRET",
        "REDDIT_USER_AGENT",
    ] {
        assert!(
            !settings.contains_key(setting),
            "{setting} would be fixed for the life of the process"
        );
    }
    for (variable, secret) in [
        ("clientIdSecretName", CLIENT_ID_SECRET),
        ("clientSecretSecretName", CLIENT_SECRET_SECRET),
        ("userAgentSecretName", USER_AGENT_SECRET),
    ] {
        assert!(
            bicep.contains(&format!("var {variable} = '{secret}'")),
            "the vault secret {variable} is not {secret:?}"
        );
    }

    // The callback signing key is a reference to the secret the template keeps.
    let value = &settings["CALLBACK_SIGNING_KEY"];
    assert_eq!(
        value,
        "'@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/${callbackKeySecretName})'"
    );
}

/// (role id, scope) of every role assignment to the app's identity.
fn roles_of_the_apps_identity(bicep: &str) -> BTreeSet<(String, String)> {
    let (identity, _) = only_resource(bicep, "Microsoft.ManagedIdentity/userAssignedIdentities");
    let roles = role_variables(bicep);
    resources(bicep, "Microsoft.Authorization/roleAssignments")
        .values()
        .filter(|body| body.contains(&format!("principalId: {identity}.properties.principalId")))
        .map(|body| {
            let scope = body
                .lines()
                .find_map(|line| line.trim().strip_prefix("scope: "))
                .expect("an assignment with a scope")
                .to_owned();
            let role = roles
                .iter()
                .find(|(name, _)| body.contains(&format!("roles.{name})")))
                .map(|(_, id)| id.clone())
                .expect("an assignment of a role from `var roles`");
            (role, scope)
        })
        .collect()
}

#[test]
fn every_role_the_code_needs_is_assigned_to_the_apps_identity_on_the_right_resource() {
    let bicep = bicep();
    let (storage, _) = only_resource(&bicep, "Microsoft.Storage/storageAccounts");
    let (vault, _) = only_resource(&bicep, "Microsoft.KeyVault/vaults");
    let assigned = roles_of_the_apps_identity(&bicep);
    let has = |role: &str, scope: &str| assigned.contains(&(role.to_owned(), scope.to_owned()));

    assert!(
        has(STORAGE_BLOB_DATA_OWNER, &storage),
        "no Storage Blob Data Owner on {storage}: {assigned:?}"
    );
    assert!(
        has(STORAGE_QUEUE_DATA_CONTRIBUTOR, &storage),
        "no Storage Queue Data Contributor on {storage}: {assigned:?}"
    );
    assert!(
        has(KEY_VAULT_SECRETS_USER, &vault),
        "no Key Vault Secrets User on {vault}: {assigned:?}"
    );
}

#[test]
fn the_names_match_the_contract() {
    let bicep = bicep();
    assert_eq!(DEFAULT_CONTAINER, "hot-topics");
    assert!(bicep.contains(&format!("var containerName = '{DEFAULT_CONTAINER}'")));
    assert!(bicep.contains("name: containerName"));
    assert!(bicep.contains(&format!("var jobQueueName = '{JOB_QUEUE}'")));
    assert!(bicep.contains("resource jobQueue 'queues' = if (queueDispatch)"));
    assert!(bicep.contains("name: jobQueueName"));
    for secret in [CLIENT_ID_SECRET, CLIENT_SECRET_SECRET, USER_AGENT_SECRET] {
        let variable = bicep
            .lines()
            .find_map(|line| {
                line.strip_prefix("var ")
                    .and_then(|rest| rest.strip_suffix(&format!(" = '{secret}'")))
            })
            .unwrap_or_else(|| panic!("no variable holds the secret name {secret}"));
        assert!(
            bicep.contains(&format!("name: {variable}")),
            "no Key Vault secret is named {secret}"
        );
    }
    let (_, plan) = only_resource(&bicep, "Microsoft.Web/serverfarms");
    assert!(plan.contains("tier: 'FlexConsumption'"), "{plan}");
}

#[test]
fn azure_yaml_deploys_what_the_makefile_unpacks_to_the_app_the_template_tags() {
    let azure_yaml: serde_yaml::Value = serde_yaml::from_str(&read("azure.yaml")).unwrap();
    let services = azure_yaml["services"].as_mapping().unwrap();
    assert_eq!(services.len(), 1);
    let (name, service) = services.iter().next().unwrap();
    let name = name.as_str().unwrap();
    assert_eq!(service["host"].as_str(), Some("function"));
    assert_eq!(service["project"].as_str(), Some("."));
    let dist = service["dist"].as_str().unwrap();
    assert_eq!(
        service["hooks"]["prepackage"]["run"].as_str(),
        Some("make unpack")
    );
    let makefile = read("Makefile");
    let unpack = makefile
        .split("\nunpack:")
        .nth(1)
        .expect("the Makefile has an unpack target");
    let unpack = unpack.split("\n\n").next().unwrap();
    assert!(
        unpack.contains(&format!("-d {dist}")),
        "make unpack does not write {dist}: {unpack}"
    );
    assert!(unpack.contains("package"), "{unpack}");
    assert!(
        bicep().contains(&format!("'azd-service-name': '{name}'")),
        "the Function App is not tagged for the service {name}"
    );
    assert!(Path::new(&repository().join("infra/main.parameters.json")).is_file());
}

#[test]
fn the_readme_says_the_template_was_not_deployed_by_the_tests() {
    let readme = read("README.md");
    assert!(
        readme.contains("The template has not been deployed from this repository's test suite"),
        "README.md must say plainly that infra/ is untested against Azure"
    );
}

// ----- the decisions of docs/deploy.md -----

/// A `param` of a Bicep file: its declaration line (`param x int = 1`) and the decorators
/// (`@minValue(1)`) on the lines just above it.
fn parameter(bicep: &str, name: &str) -> (String, Vec<String>) {
    let lines: Vec<&str> = bicep.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.starts_with(&format!("param {name} ")))
        .unwrap_or_else(|| panic!("no param {name}"));
    let decorators = lines[..at]
        .iter()
        .rev()
        .take_while(|line| line.starts_with('@'))
        .map(|line| line.to_string())
        .collect();
    (lines[at].to_owned(), decorators)
}

fn azure_yaml() -> serde_yaml::Value {
    serde_yaml::from_str(&read("azure.yaml")).unwrap()
}

/// Every file under `infra/`, by path.
fn infra_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                found.push((path.display().to_string(), text));
            }
        }
    }
    let mut found = Vec::new();
    walk(&repository().join("infra"), &mut found);
    assert!(
        found.len() >= 4,
        "{:?}",
        found.iter().map(|(path, _)| path).collect::<Vec<_>>()
    );
    found
}

/// A hook script run the way azd runs it (`sh <script>`, its environment the azd
/// environment's values), with stand-ins for `az`, `azd` and `sleep` first on the PATH. Each
/// stand-in appends its command line to the log and answers as `behaviour` (environment
/// variables read by the `az` stand-in) says.
struct HookRun {
    succeeded: bool,
    output: String,
    /// The command lines the stand-ins received, in order.
    calls: Vec<String>,
}

const STAND_IN_AZ: &str = r#"#!/bin/sh
echo "az $*" >> "$STAND_IN_LOG"
count() {
    n=$(cat "$STAND_IN_DIR/$1" 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "$n" > "$STAND_IN_DIR/$1"
    echo "$n"
}
case "$*" in
*"functionapp keys set"*)
    if [ "$(count keys)" -le "${KEY_SETS_REFUSED:-0}" ]; then
        echo "ERROR: Encountered an error (ServiceUnavailable) from host runtime." >&2
        exit 1
    fi ;;
*"rest --method get"*)
    if [ "$(count reads)" -le "${READS_UNRESOLVED:-0}" ]; then
        printf '%s\t%s\n' \
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Web/sites/func/config/configreferences/appsettings/SUMMARY_WOMBLE_KEY" \
            AccessToKeyVaultDenied
    fi ;;
esac
"#;

fn run_hook(script: &str, env: &[(&str, &str)]) -> HookRun {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    for (name, body) in [
        ("az", STAND_IN_AZ),
        ("azd", "#!/bin/sh\necho \"azd $*\" >> \"$STAND_IN_LOG\"\n"),
        (
            "sleep",
            "#!/bin/sh\necho \"sleep $*\" >> \"$STAND_IN_LOG\"\n",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned())
    );
    let output = std::process::Command::new("sh")
        .arg(repository().join(script))
        .current_dir(repository())
        .env_clear()
        .env("PATH", path)
        .env("STAND_IN_DIR", dir.path())
        .env("STAND_IN_LOG", &log)
        .envs(env.iter().copied())
        .output()
        .expect("sh runs");
    let calls = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    HookRun {
        succeeded: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        calls,
    }
}

/// What the postdeploy hook finds in the azd environment after `azd provision`.
const PROVISIONED: [(&str, &str); 5] = [
    ("AZURE_ENV_NAME", "dev"),
    ("AZURE_SUBSCRIPTION_ID", "sub"),
    ("AZURE_RESOURCE_GROUP", "rg"),
    ("AZURE_FUNCTION_APP_NAME", "func"),
    (
        "SUMMARY_WOMBLE_KEY",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ),
];

fn provisioned_with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    PROVISIONED.iter().chain(extra).copied().collect()
}

/// The `name=<number>` assignment at the start of a line of a script.
fn script_number(script: &str, name: &str) -> u64 {
    read(script)
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{script} sets no number {name}"))
}

#[test]
fn queue_dispatch_is_the_templates_default_and_inline_dispatch_stays_a_parameter() {
    let main = read("infra/main.bicep");
    let (declaration, _) = parameter(&main, "queueDispatch");
    assert_eq!(declaration, "param queueDispatch bool = true");
    assert!(
        main.contains("    queueDispatch: queueDispatch\n"),
        "main.bicep does not pass it on"
    );
    let settings = app_settings(&bicep());
    assert_eq!(
        settings["JOB_DISPATCH"],
        "queueDispatch ? 'queue' : 'inline'"
    );
}

#[test]
fn each_function_group_runs_at_most_one_instance_because_all_share_one_reddit_quota() {
    let main = read("infra/main.bicep");
    let (declaration, decorators) = parameter(&main, "maximumInstanceCount");
    assert_eq!(declaration, "param maximumInstanceCount int = 1");
    // The lowest ceiling Flex Consumption takes is 1: no older floor (40) stays in the way.
    assert!(
        decorators.contains(&"@minValue(1)".to_owned()),
        "{decorators:?}"
    );
    assert!(main.contains("    maximumInstanceCount: maximumInstanceCount\n"));
    let (_, app) = only_resource(&bicep(), "Microsoft.Web/sites");
    assert!(
        app.contains("maximumInstanceCount: maximumInstanceCount"),
        "the app's scaleAndConcurrency does not use the parameter"
    );
}

#[test]
fn no_key_is_made_anew_by_each_provision() {
    for (path, text) in infra_files() {
        assert!(
            !text.to_ascii_lowercase().contains("newguid("),
            "{path} calls newGuid(): a new value on every deployment"
        );
    }
    let main = read("infra/main.bicep");
    let (declaration, decorators) = parameter(&main, "timerFunctionKey");
    assert_eq!(
        declaration, "param timerFunctionKey string",
        "the key must come from the azd environment, not from a default"
    );
    assert!(
        decorators.contains(&"@secure()".to_owned()),
        "{decorators:?}"
    );
    assert!(
        decorators.contains(&"@minLength(32)".to_owned()),
        "{decorators:?}"
    );

    let parameters: serde_json::Value =
        serde_json::from_str(&read("infra/main.parameters.json")).unwrap();
    assert_eq!(
        parameters["parameters"]["timerFunctionKey"]["value"],
        "${SUMMARY_WOMBLE_KEY}"
    );
    assert_eq!(
        azure_yaml()["hooks"]["preprovision"]["run"].as_str(),
        Some("sh infra/hooks/preprovision.sh")
    );
}

#[test]
fn the_preprovision_hook_generates_the_timer_key_and_the_signing_key_once_and_keeps_them_after() {
    let first = run_hook("infra/hooks/preprovision.sh", &[("AZURE_ENV_NAME", "dev")]);
    assert!(first.succeeded, "{}", first.output);
    assert_eq!(first.calls.len(), 2, "{:?}", first.calls);
    let kept = |name: &str| {
        first
            .calls
            .iter()
            .find_map(|call| call.strip_prefix(&format!("azd env set --environment dev {name} ")))
            .unwrap_or_else(|| panic!("{name} not kept in the azd environment: {:?}", first.calls))
            .to_owned()
    };
    let key = kept("SUMMARY_WOMBLE_KEY");
    assert_eq!(key.len(), 64, "{key}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    // A Standard Webhooks secret: whsec_ and the base64 of 32 bytes.
    let signing = kept("CALLBACK_SIGNING_KEY");
    let encoded = signing.strip_prefix("whsec_").expect("a whsec_ secret");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    assert_eq!(bytes.len(), 32);
    for secret in [&key, &signing] {
        assert!(
            !first.output.contains(secret.as_str()),
            "the hook printed a secret"
        );
    }

    let again = run_hook(
        "infra/hooks/preprovision.sh",
        &[
            ("AZURE_ENV_NAME", "dev"),
            ("SUMMARY_WOMBLE_KEY", &key),
            ("CALLBACK_SIGNING_KEY", &signing),
        ],
    );
    assert!(again.succeeded, "{}", again.output);
    assert!(
        again.calls.is_empty(),
        "a kept key was replaced: {:?}",
        again.calls
    );

    let other = run_hook("infra/hooks/preprovision.sh", &[("AZURE_ENV_NAME", "dev")]);
    assert_ne!(
        other.calls, first.calls,
        "two environments got the same key"
    );
}

#[test]
fn the_host_key_is_set_by_the_postdeploy_hook_not_by_the_template() {
    let found = resources(&bicep(), "Microsoft.Web/sites/host/functionKeys");
    assert!(
        found.is_empty(),
        "the template still makes host keys: {:?}",
        found.keys()
    );
    let service = &azure_yaml()["services"]["handler"];
    assert_eq!(
        service["hooks"]["postdeploy"]["run"].as_str(),
        Some("sh infra/hooks/postdeploy.sh")
    );
    // The value GetHotTopics sends is the one the template puts in Key Vault.
    let settings = app_settings(&bicep());
    assert!(
        settings["SUMMARY_WOMBLE_KEY"].contains("secrets/${timerKeySecretName}"),
        "{}",
        settings["SUMMARY_WOMBLE_KEY"]
    );
    assert!(bicep().contains("value: timerFunctionKey"));
}

#[test]
fn the_postdeploy_hook_sets_the_host_key_to_the_kept_value_trying_again_until_the_host_takes_it() {
    let run = run_hook(
        "infra/hooks/postdeploy.sh",
        &provisioned_with(&[("KEY_SETS_REFUSED", "2")]),
    );
    assert!(run.succeeded, "{}", run.output);
    let sets: Vec<&String> = run
        .calls
        .iter()
        .filter(|call| call.contains("keys set"))
        .collect();
    assert_eq!(sets.len(), 3, "{:?}", run.calls);
    let expected = format!(
        "az functionapp keys set --subscription sub --resource-group rg --name func \
         --key-type functionKeys --key-name summary-womble-timer --key-value {} --output none",
        PROVISIONED[4].1
    );
    assert!(sets.iter().all(|call| **call == expected), "{sets:?}");
    // A pause before each try again, none after the one that worked.
    let sleeps = run
        .calls
        .iter()
        .filter(|call| call.starts_with("sleep "))
        .count();
    assert_eq!(sleeps, 2, "{:?}", run.calls);
    assert!(
        !run.output.contains(PROVISIONED[4].1),
        "the hook printed the key"
    );
}

#[test]
fn the_postdeploy_hook_gives_up_after_a_bounded_number_of_tries_and_fails() {
    let attempts = script_number("infra/hooks/postdeploy.sh", "attempts");
    let delay = script_number("infra/hooks/postdeploy.sh", "delay");
    assert!(
        (2..=30).contains(&attempts) && attempts * delay <= 300,
        "{attempts} tries {delay} s apart"
    );
    let run = run_hook(
        "infra/hooks/postdeploy.sh",
        &provisioned_with(&[("KEY_SETS_REFUSED", "1000")]),
    );
    assert!(!run.succeeded, "{}", run.output);
    let sets = run
        .calls
        .iter()
        .filter(|call| call.contains("keys set"))
        .count();
    assert_eq!(sets as u64, attempts, "{:?}", run.calls);
    assert!(
        run.output
            .contains("azd hooks run postdeploy --service handler"),
        "the failure does not say how to try again: {}",
        run.output
    );

    let unprovisioned = run_hook("infra/hooks/postdeploy.sh", &[("AZURE_ENV_NAME", "dev")]);
    assert!(!unprovisioned.succeeded);
    assert!(unprovisioned.calls.is_empty(), "{:?}", unprovisioned.calls);
}

#[test]
fn the_postdeploy_hook_has_unresolved_key_vault_references_refreshed_and_waits_for_them() {
    let refresh = "az rest --method post --url /subscriptions/sub/resourceGroups/rg/providers/\
                   Microsoft.Web/sites/func/config/configreferences/appsettings/refresh\
                   ?api-version=2022-03-01 --output none";
    let reads = |run: &HookRun| {
        run.calls
            .iter()
            .filter(|c| c.contains("--method get"))
            .count()
    };
    let refreshes = |run: &HookRun| run.calls.iter().filter(|c| *c == refresh).count();

    let lagging = run_hook(
        "infra/hooks/postdeploy.sh",
        &provisioned_with(&[("READS_UNRESOLVED", "4")]),
    );
    assert!(lagging.succeeded, "{}", lagging.output);
    assert_eq!(reads(&lagging), 5, "{:?}", lagging.calls);
    assert!(refreshes(&lagging) >= 1, "{:?}", lagging.calls);
    assert!(lagging
        .output
        .contains("SUMMARY_WOMBLE_KEY AccessToKeyVaultDenied"));

    // A refresh restarts the app: none when every reference is resolved.
    let resolved = run_hook("infra/hooks/postdeploy.sh", &provisioned_with(&[]));
    assert!(resolved.succeeded, "{}", resolved.output);
    assert_eq!(reads(&resolved), 1);
    assert_eq!(refreshes(&resolved), 0, "{:?}", resolved.calls);

    let stuck = run_hook(
        "infra/hooks/postdeploy.sh",
        &provisioned_with(&[("READS_UNRESOLVED", "1000")]),
    );
    assert!(!stuck.succeeded, "{}", stuck.output);
    assert_eq!(
        reads(&stuck) as u64,
        script_number("infra/hooks/postdeploy.sh", "attempts")
    );
    // The host key is still set: one failure does not stop the other step.
    assert!(stuck.calls.iter().any(|call| call.contains("keys set")));
}

#[test]
fn the_host_gets_the_storage_and_telemetry_roles_microsoft_states_as_its_minimum() {
    let bicep = bicep();
    let (storage, _) = only_resource(&bicep, "Microsoft.Storage/storageAccounts");
    let (insights, _) = only_resource(&bicep, "Microsoft.Insights/components");
    let assigned = roles_of_the_apps_identity(&bicep);
    for (role, scope, name) in [
        (STORAGE_BLOB_DATA_OWNER, &storage, "Storage Blob Data Owner"),
        (
            STORAGE_QUEUE_DATA_CONTRIBUTOR,
            &storage,
            "Storage Queue Data Contributor",
        ),
        (
            STORAGE_TABLE_DATA_CONTRIBUTOR,
            &storage,
            "Storage Table Data Contributor",
        ),
        (
            MONITORING_METRICS_PUBLISHER,
            &insights,
            "Monitoring Metrics Publisher",
        ),
    ] {
        assert!(
            assigned.contains(&(role.to_owned(), scope.clone())),
            "no {name} on {scope}: {assigned:?}"
        );
    }
    // The app starts only after its roles are in place.
    let (_, app) = only_resource(&bicep, "Microsoft.Web/sites");
    let depends_on = app
        .split("dependsOn: [")
        .nth(1)
        .expect("the app has dependsOn");
    for symbol in resources(&bicep, "Microsoft.Authorization/roleAssignments").keys() {
        assert!(
            depends_on.contains(&format!("    {symbol}\n")),
            "the app does not wait for {symbol}"
        );
    }
    // The deployment package is read as the same identity, under the same Blob Data Owner.
    assert!(app.contains("type: 'UserAssignedIdentity'"), "{app}");
}

#[test]
fn the_host_storage_connection_names_its_blob_and_queue_endpoints_as_microsofts_flex_samples_do() {
    let bicep = bicep();
    let (storage, _) = only_resource(&bicep, "Microsoft.Storage/storageAccounts");
    let settings = app_settings(&bicep);
    for service in ["blob", "queue"] {
        assert_eq!(
            settings[&format!("AzureWebJobsStorage__{service}ServiceUri")],
            format!("{storage}.properties.primaryEndpoints.{service}")
        );
    }
}

#[test]
fn azure_yaml_requires_an_azd_whose_zip_keeps_the_handlers_execute_bit() {
    assert_eq!(
        azure_yaml()["requiredVersions"]["azd"].as_str(),
        Some(AZD_KEEPING_THE_EXECUTE_BIT)
    );
}

#[test]
fn the_readme_asks_for_microsofts_host_storage_roles_and_points_to_docs_deploy_md() {
    let readme = read("README.md");
    let section = readme
        .split("\n## Deploying\n")
        .nth(1)
        .expect("README.md has a Deploying section");
    let section = section.split("\n## ").next().unwrap();
    assert!(section.contains("(docs/deploy.md)"), "{section}");
    assert!(section.contains("*Storage Blob Data Owner*"), "{section}");
    assert!(
        !section.contains("Storage Blob Data Contributor") && !section.contains("or *Contributor*"),
        "the README still accepts a role below Microsoft's minimum for host storage"
    );
    let page = read("docs/deploy.md");
    for needed in [
        "Storage Blob Data Owner",
        "Storage Table Data Contributor",
        "2026-12-07",
    ] {
        assert!(
            page.contains(needed),
            "docs/deploy.md does not name {needed:?}"
        );
    }
}
