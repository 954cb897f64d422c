use crate::support::workspace_root;

fn schema_names(node: &serde_json::Value, names: &mut Vec<String>) {
    match node {
        serde_json::Value::Object(fields) => {
            if let Some(serde_json::Value::Object(properties)) = fields.get("properties") {
                names.extend(properties.keys().cloned());
            }
            for key in ["const", "enum"] {
                match fields.get(key) {
                    Some(serde_json::Value::String(value)) => names.push(value.clone()),
                    Some(serde_json::Value::Array(values)) => names.extend(
                        values
                            .iter()
                            .filter_map(|value| value.as_str().map(str::to_string)),
                    ),
                    _ => {}
                }
            }
            for value in fields.values() {
                schema_names(value, names);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| schema_names(item, names)),
        _ => {}
    }
}

/// docs/manifest.md names every field, kind and allowed value of the schema, and every validation code
#[test]
fn docs_manifest_covers_the_schema() {
    let page = std::fs::read_to_string(workspace_root().join("docs/manifest.md"))
        .expect("docs/manifest.md");
    let schema: serde_json::Value =
        serde_json::from_str(&declastruct_manifest::manifest::manifest_schema()).expect("schema");
    let mut names = Vec::new();
    schema_names(&schema, &mut names);
    names.sort();
    names.dedup();
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !page.contains(&format!("`{name}`")) && !page.contains(&format!(".{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/manifest.md does not mention {missing:?}"
    );

    let loader = ["load.rs", "error.rs", "yaml_tree.rs", "variables.rs"]
        .iter()
        .map(|file| {
            std::fs::read_to_string(
                workspace_root()
                    .join("crates/declastruct-manifest/src/manifest")
                    .join(file),
            )
            .unwrap_or_default()
        })
        .collect::<String>();
    let codes: Vec<&str> = loader
        .match_indices("declastruct::manifest::")
        .map(|(start, _)| {
            let rest = &loader[start..];
            &rest[..rest
                .find(|character: char| {
                    !(character.is_ascii_alphanumeric() || character == '_' || character == ':')
                })
                .unwrap_or(rest.len())]
        })
        .collect();
    assert!(codes.len() >= 10);
    for code in codes {
        assert!(
            page.contains(&format!("`{code}`")),
            "docs/manifest.md does not document {code}"
        );
    }
}

#[test]
fn the_docs_the_readme_links_exist() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let mut linked = 0;
    for (start, _) in readme.match_indices("](docs/") {
        let rest = &readme[start + 2..];
        let path = &rest[..rest.find(')').expect("closing parenthesis")];
        assert!(
            workspace_root().join(path).exists(),
            "README links {path}, which does not exist"
        );
        linked += 1;
    }
    assert!(linked >= 4);
}

/// the AWS actions the code calls, read from its source: every SDK call on a client field (`.ec2.x()`, `.rds.x()`,
/// `.secrets.x()`, `.ssm.x()`), the AWS CLI's `ssm start-session`, and the RDS IAM token
fn actions_the_code_calls() -> Vec<String> {
    let mut sources = Vec::new();
    for crate_folder in [
        "crates/declastruct-aws/src",
        "crates/declastruct-tunnel/src",
        "crates/declastruct-manifest/src",
        "crates/declastruct-cli/src",
    ] {
        let mut folders = vec![workspace_root().join(crate_folder)];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("source folder").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|extension| extension == "rs") {
                    sources.push(std::fs::read_to_string(&path).expect("source"));
                }
            }
        }
    }
    let pascal = |operation: &str| -> String {
        operation
            .split('_')
            .map(|word| match word {
                // IAM spells these in capitals (rds:DescribeDBClusters)
                "db" => "DB".to_string(),
                word => {
                    let mut characters = word.chars();
                    characters.next().map_or_else(String::new, |first| {
                        first.to_ascii_uppercase().to_string() + characters.as_str()
                    })
                }
            })
            .collect()
    };
    let mut actions = Vec::new();
    for source in &sources {
        let compact: String = source.split_whitespace().collect();
        for (field, service) in [
            ("ec2", "ec2"),
            ("rds", "rds"),
            ("secrets", "secretsmanager"),
            ("ssm", "ssm"),
        ] {
            let needle = format!(".{field}.");
            for (position, _) in compact.match_indices(&needle) {
                let rest = &compact[position + needle.len()..];
                let operation: String = rest
                    .chars()
                    .take_while(|character| character.is_ascii_lowercase() || *character == '_')
                    .collect();
                if !operation.is_empty() && rest[operation.len()..].starts_with("()") {
                    // the SDK's waiters poll a Describe call
                    let action = if operation.starts_with("wait_until_instance_") {
                        "DescribeInstances".to_string()
                    } else {
                        pascal(&operation)
                    };
                    actions.push(format!("{service}:{action}"));
                }
            }
        }
        if source.contains("\"start-session\"") {
            actions.push("ssm:StartSession".into());
        }
        if source.contains("auth_token::") {
            actions.push("rds-db:connect".into());
        }
    }
    actions.sort();
    actions.dedup();
    actions
}

/// docs/iam.md names every AWS action the code calls, so a user's policy built from it works; a new call fails
/// here until it is documented
#[test]
fn the_iam_page_names_every_action_the_code_calls() {
    let page = std::fs::read_to_string(workspace_root().join("docs/iam.md")).expect("docs/iam.md");
    let actions = actions_the_code_calls();
    for expected in [
        "ec2:DescribeInstances",
        "ec2:StartInstances",
        "rds:DescribeDBClusters",
        "secretsmanager:GetSecretValue",
        "ssm:StartSession",
        "rds-db:connect",
    ] {
        assert!(
            actions.iter().any(|action| action == expected),
            "the scan of the code misses {expected}: {actions:?}"
        );
    }
    let missing: Vec<&String> = actions
        .iter()
        .filter(|action| !page.contains(&format!("`{action}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/iam.md does not name {missing:?}; the code calls {actions:?}"
    );
}
