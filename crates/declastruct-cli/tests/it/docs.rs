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
        serde_json::from_str(&declastruct_cli::manifest::manifest_schema()).expect("schema");
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
                    .join("crates/declastruct-cli/src/manifest")
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
