//! `infra/` and `azure.yaml`, checked offline: no Bicep compiler can be installed on the build
//! machines and nothing here deploys. What is checked:
//!
//! - every setting the handler reads (the names in `src/config.rs`, `src/config/*.rs` and the
//!   identity code) is in the README's settings table, and every one the table marks `infra/`
//!   is set by the template, while every setting the template sets is in the table;
//! - the storage settings name the identity the app runs as, and every role the code needs is
//!   assigned to that identity, on the right resource;
//! - the names match the contract: container `hot-topics`, queue `hot-topics-jobs`, the Reddit
//!   secrets, and the Key Vault references point at them;
//! - `azure.yaml` deploys what the Makefile unpacks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use summary_womble::config::{DEFAULT_CONTAINER, DEFAULT_JOB_QUEUE as JOB_QUEUE};
use summary_womble::secrets::{CLIENT_ID_SECRET, CLIENT_SECRET_SECRET, USER_AGENT_SECRET};

/// The files whose string literals name the settings the handler reads: the settings module
/// with every file under `src/config/`, and the identity code (the platform's variables).
fn settings_sources() -> Vec<String> {
    let mut sources = vec![
        "src/config.rs".to_owned(),
        "src/store/azure/identity.rs".to_owned(),
    ];
    for entry in std::fs::read_dir(repository().join("src/config")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".rs") {
            sources.push(format!("src/config/{name}"));
        }
    }
    sources
}

/// Roles by the id Azure gives them (built-in role definitions).
const STORAGE_BLOB_DATA_OWNER: &str = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b";
const STORAGE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
const STORAGE_QUEUE_DATA_CONTRIBUTOR: &str = "974c5e8b-45b9-4653-ba55-5f855dd0fb88";
const KEY_VAULT_SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";

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

/// The string literals of a source file that have the shape of a setting name: upper-case
/// words joined by `_` (`MAX_CONCURRENT_JOBS`), or `AzureWebJobsStorage` and the names under
/// it.
fn setting_names_in(source: &str) -> BTreeSet<String> {
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| {
            let screaming = literal.len() > 3
                && literal.contains('_')
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
    for source in settings_sources() {
        for name in setting_names_in(&read(&source)) {
            assert!(
                documented.contains(&name.to_ascii_lowercase()),
                "{source} reads {name}, which README.md's settings table does not list"
            );
        }
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

    for (setting, secret) in [
        ("REDDIT_CLIENT_ID", CLIENT_ID_SECRET),
        ("REDDIT_CLIENT_SECRET", CLIENT_SECRET_SECRET),
        ("REDDIT_USER_AGENT", USER_AGENT_SECRET),
    ] {
        let value = &settings[setting];
        assert!(
            value
                .starts_with("'@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/"),
            "{setting} = {value}"
        );
        // The secret's name comes from a variable that holds the contract's name.
        let variable = value
            .split("secrets/${")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .unwrap();
        assert!(
            bicep.contains(&format!("var {variable} = '{secret}'")),
            "{setting} points at {variable}, which is not {secret:?}"
        );
    }
}

#[test]
fn every_role_the_code_needs_is_assigned_to_the_apps_identity_on_the_right_resource() {
    let bicep = bicep();
    let (identity, _) = only_resource(&bicep, "Microsoft.ManagedIdentity/userAssignedIdentities");
    let (storage, _) = only_resource(&bicep, "Microsoft.Storage/storageAccounts");
    let (vault, _) = only_resource(&bicep, "Microsoft.KeyVault/vaults");
    let roles = role_variables(&bicep);

    // (role id, scope) of every assignment to the app's identity.
    let assigned: BTreeSet<(String, String)> =
        resources(&bicep, "Microsoft.Authorization/roleAssignments")
            .values()
            .filter(|body| {
                body.contains(&format!("principalId: {identity}.properties.principalId"))
            })
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
            .collect();
    let has = |role: &str, scope: &str| assigned.contains(&(role.to_owned(), scope.to_owned()));

    assert!(
        has(STORAGE_BLOB_DATA_OWNER, &storage) || has(STORAGE_BLOB_DATA_CONTRIBUTOR, &storage),
        "no Storage Blob Data Owner or Contributor on {storage}: {assigned:?}"
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
