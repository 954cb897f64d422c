//! "One manifest, many environments": `${NAME}` variables from `--var` and the environment, through the real
//! binary against moto.

use declastruct_test_support::{Moto, Postgres, free_port};

use crate::apply::assert_success;
use crate::assert_shown;
use crate::support::{REGION, Sandbox, stderr, stdout, workspace_root};

/// moto with a dev and a prod bastion and cluster, credentials only in the `dev` and `prod` profiles, and the
/// environments example as the manifest
fn two_environments() -> (Moto, Sandbox) {
    let moto = Moto::start();
    for env in ["dev", "prod"] {
        moto.seed_bastion(REGION, &format!("{env}-bastion"), true);
        moto.seed_cluster(REGION, &format!("appdb-{env}"));
    }
    let mut sandbox = Sandbox::new(Some(&moto));
    for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        sandbox.remove_env(key);
    }
    let aws = sandbox.dir.path().join(".aws");
    std::fs::create_dir_all(&aws).expect("~/.aws");
    std::fs::write(
        aws.join("credentials"),
        "[dev]\naws_access_key_id = testing\naws_secret_access_key = testing\n[prod]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .expect("credentials");
    let example = std::fs::read_to_string(workspace_root().join("examples/environments.yml"))
        .expect("the example");
    sandbox.write("declastruct.yml", &example);
    (moto, sandbox)
}

fn plan_json(sandbox: &Sandbox, args: &[&str]) -> serde_json::Value {
    let mut command = vec!["plan", "--json"];
    command.extend_from_slice(args);
    let output = sandbox.run(&command);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

fn cluster_of(document: &serde_json::Value) -> String {
    document["changes"]
        .as_array()
        .and_then(|changes| {
            changes.iter().find_map(|change| {
                change["state"]["desired"]["into"]["cluster"]["name"]
                    .as_str()
                    .map(str::to_string)
            })
        })
        .expect("a tunnel")
}

/// must-show 1: `--var env=prod` and `ENV=prod` read prod's cluster and profile; without them, the defaults
#[test]
fn one_manifest_plans_dev_by_default_and_prod_on_request() {
    let (_moto, mut sandbox) = two_environments();
    let dev = plan_json(&sandbox, &[]);
    assert_eq!(cluster_of(&dev), "appdb-dev");
    assert_eq!(dev["wish"]["vars"]["ENV"], "dev");
    let prod = plan_json(&sandbox, &["--var", "env=prod"]);
    assert_eq!(cluster_of(&prod), "appdb-prod");
    assert_eq!(prod["wish"]["vars"]["ENV"], "prod");
    sandbox.set_env("ENV", "prod");
    let from_environment = plan_json(&sandbox, &[]);
    assert_eq!(cluster_of(&from_environment), "appdb-prod");
    // `--var` wins over the environment
    let overridden = plan_json(&sandbox, &["--var", "ENV=dev"]);
    assert_eq!(cluster_of(&overridden), "appdb-dev");
    assert_eq!(overridden["wish"]["vars"]["ENV"], "dev");
    let header = sandbox.run(&["plan", "--var", "port=7776"]);
    assert!(
        stdout(&header).contains("vars: ENV=prod, PORT=7776, REGION=us-east-1"),
        "{}",
        stdout(&header)
    );
}

/// must-show 1, the profile: the session is started with prod's profile
#[test]
fn the_environments_profile_reaches_the_session() {
    let (moto, mut sandbox) = two_environments();
    let postgres = Postgres::start();
    let (writer, port) = {
        let rds = moto.rds(REGION);
        moto.block_on(async {
            let found = rds
                .describe_db_clusters()
                .db_cluster_identifier("appdb-prod")
                .send()
                .await
                .expect("describe");
            let cluster = &found.db_clusters()[0];
            (
                cluster.endpoint().unwrap_or_default().to_string(),
                cluster.port().unwrap_or(5432),
            )
        })
    };
    let sim = crate::support::simulator(&moto, &[(&format!("{writer}:{port}"), postgres.port)]);
    sandbox.use_real_chain(&sim.endpoint());
    let local = free_port();
    let applied = sandbox.run(&[
        "apply",
        "--auto-approve",
        "--var",
        "env=prod",
        "--var",
        &format!("PORT={local}"),
    ]);
    assert_success(&applied);
    assert_eq!(Postgres::psql(local, "select 1").as_deref(), Ok("1"));
    // the real AWS CLI serving the session was given the variables' profile
    let session = crate::support::session_command_line(local).expect("the session's AWS CLI");
    assert!(session.contains(" --profile prod"), "{session}");
}

/// must-show 2: every variable error exits 1, located at the variable, with no AWS call
#[test]
fn variable_errors_are_located_and_make_no_aws_call() {
    let (moto, sandbox) = two_environments();
    let example = std::fs::read_to_string(workspace_root().join("examples/environments.yml"))
        .expect("the example");
    let cases = [
        (
            "unset",
            example.replacen("${ENV:-dev}-bastion", "${BASTION}", 1),
            vec![],
        ),
        (
            "required",
            example.replacen(
                "${ENV:-dev}",
                "${ENV:?pick an environment with --var env=dev or --var env=prod}",
                1,
            ),
            vec![],
        ),
        ("wrong_type", example.clone(), vec!["--var", "PORT=seven"]),
        (
            "in_flow_mapping",
            example.replacen(
                "    from:\n      host: localhost\n      # a whole variable takes the type the field expects: this is a number\n      port: ${PORT:-7775}\n",
                "    from: { host: localhost, port: ${PORT:-7775} }\n",
                1,
            ),
            vec![],
        ),
        ("bad_var", example.clone(), vec!["--var", "env"]),
    ];
    for (name, text, extra) in cases {
        sandbox.write("declastruct.yml", &text);
        moto.start_counting();
        let mut args = vec!["plan"];
        args.extend(extra.iter().copied());
        let output = sandbox.run(&args);
        assert_eq!(output.status.code(), Some(1), "{name}");
        let mut validate = vec!["validate"];
        validate.extend(extra);
        assert_eq!(
            sandbox.run(&validate).status.code(),
            Some(1),
            "{name}: validate"
        );
        assert!(moto.counted_requests().is_empty(), "{name}: no AWS call");
        assert_shown!(format!("variable_error_{name}"), output);
    }
}

/// must-show 3: a plan saved with one set of values is stale with another
#[test]
fn a_plan_saved_for_dev_is_stale_for_prod() {
    let (_moto, sandbox) = two_environments();
    assert_success(&sandbox.run(&["plan", "--var", "env=dev", "--out", "plan.json"]));
    let refused = sandbox.run(&["apply", "--var", "env=prod", "--plan", "plan.json"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(message.contains("plan is stale"), "{message}");
    assert!(
        message.contains("ENV=dev") && message.contains("ENV=prod"),
        "{message}"
    );
    assert!(message.contains("--var ENV=dev"), "{message}");
}

/// must-show 4: a value holding YAML syntax stays a plain string: it is never read as YAML again
#[test]
fn a_value_with_yaml_syntax_stays_a_string() {
    let (_moto, mut sandbox) = two_environments();
    let example = std::fs::read_to_string(workspace_root().join("examples/environments.yml"))
        .expect("the example");
    sandbox.write(
        "declastruct.yml",
        &example.replace("${ENV:-dev}-bastion", "${BASTION}"),
    );
    sandbox.set_env("BASTION", "x: y\n[ {status: stopped} ]");
    let validate = sandbox.run(&["validate"]);
    assert_success(&validate);
    let plan = sandbox.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(1));
    // the whole value, newline and all, was looked up as the bastion's exid
    let message = stderr(&plan);
    assert!(
        message.contains("bastion { exid: x: y")
            && message.contains("[ {status: stopped} ] } was not found"),
        "{message}"
    );
}
