use crate::support::{Sandbox, stdout, workspace_root};

#[test]
fn checked_in_schema_matches_the_code() {
    let generated = declastruct_manifest::manifest::manifest_schema();
    let path = workspace_root().join("schemas/declastruct.schema.json");
    if std::env::var_os("DECLASTRUCT_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schemas/declastruct.schema.json differs from what the code generates; regenerate it with\n  cargo run -p declastruct-cli -- schema > schemas/declastruct.schema.json"
    );
}

#[test]
fn schema_command_prints_the_checked_in_schema() {
    let output = Sandbox::new(None).run(&["schema"]);
    assert!(output.status.success());
    let checked_in =
        std::fs::read_to_string(workspace_root().join("schemas/declastruct.schema.json"))
            .expect("schema");
    assert_eq!(stdout(&output), checked_in);
}

#[test]
fn every_example_validates_against_the_schema_and_the_loader() {
    let schema: serde_json::Value =
        serde_json::from_str(&declastruct_manifest::manifest::manifest_schema())
            .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace_root().join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|extension| extension.to_str()) != Some("yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read example");
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/declastruct.schema.json"),
            "{} must start with the yaml-language-server schema line",
            path.display()
        );
        let manifest = declastruct_manifest::manifest::parse_manifest("example.yml", text.clone())
            .unwrap_or_else(|errors| panic!("{} does not load: {errors:?}", path.display()));
        let document = serde_json::to_value(declastruct_manifest::manifest::ManifestDocument {
            aws: Some(manifest.aws.clone())
                .filter(|aws| aws.region.is_some() || aws.profile.is_some()),
            resources: manifest
                .resources
                .iter()
                .map(|resource| resource.declaration.clone())
                .collect(),
        })
        .expect("to JSON");
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|error| error.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{} breaks the schema: {errors:?}",
            path.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected examples in examples/, found {checked}"
    );
}

#[test]
fn schema_rejects_what_the_loader_rejects() {
    let schema: serde_json::Value =
        serde_json::from_str(&declastruct_manifest::manifest::manifest_schema())
            .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let tunnel = |port: serde_json::Value, host: &str| {
        serde_json::json!({"resources": [{"kind": "DeclaredAwsVpcTunnel",
            "via": {"mechanism": "aws.ssm", "bastion": {"exid": "b"}},
            "into": {"cluster": {"name": "c"}},
            "from": {"host": host, "port": port}, "status": "OPEN"}]})
    };
    assert!(validator.is_valid(&tunnel(7775.into(), "localhost")));
    assert!(!validator.is_valid(&tunnel(7_775_432.into(), "localhost")));
    assert!(!validator.is_valid(&tunnel(0.into(), "localhost")));
    assert!(!validator.is_valid(&tunnel(7775.into(), "db.internal")));
    // beyond loopback only with `expose: true`, as the loader says
    assert!(!validator.is_valid(&tunnel(7775.into(), "0.0.0.0")));
    let mut exposed = tunnel(7775.into(), "0.0.0.0");
    exposed["resources"][0]["from"]["expose"] = true.into();
    assert!(validator.is_valid(&exposed));
    assert!(!validator.is_valid(&serde_json::json!({"resources": [{"kind": "Nope"}]})));
    assert!(!validator.is_valid(&serde_json::json!({"resources": [], "extra": 1})));
}
