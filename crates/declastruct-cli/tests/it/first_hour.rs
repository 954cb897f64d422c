//! "A new user's first hour and second day": what a new user meets first, tested where they meet it (a pipe
//! for CI, a shell for completions, a subfolder of the project).

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use declastruct_test_support::Moto;

use crate::apply::{World, assert_success};
use crate::support::{REGION, Sandbox, complete_words, manifest, stderr, stdout};

/// runs declastruct with a stdout whose reader is already gone, as `declastruct plan | head -0` leaves it
fn with_closed_stdout(mut command: Command) -> std::process::Output {
    let (reader, writer): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    command
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run declastruct")
}

/// a closed stdout ends every command quietly with its own exit status: never "Broken pipe", a panic, or 1
#[test]
fn a_closed_stdout_ends_quietly_with_the_commands_own_status() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    for (args, expected) in [
        (vec!["plan", "--detailed-exitcode"], 2),
        (vec!["plan"], 0),
        (vec!["plan", "--json"], 0),
        (vec!["schema"], 0),
        (vec!["completions", "bash"], 0),
        (vec!["validate"], 0),
        (vec!["status"], 0),
    ] {
        let output = with_closed_stdout(world.sandbox.command(&args));
        assert_eq!(
            output.status.code(),
            Some(expected),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{args:?}: nothing on stderr");
    }
}

/// without `-f`, the manifest is looked for in the current folder and then its parents, and the plan's header
/// says which was used
#[test]
fn the_manifest_is_found_in_a_parent_folder_and_named() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    let deeper = world.sandbox.path("services/api");
    std::fs::create_dir_all(&deeper).expect("subfolder");
    let mut plan = world.sandbox.command(&["plan"]);
    plan.current_dir(&deeper);
    let output = plan.output().expect("plan");
    assert_success(&output);
    assert!(
        stdout(&output).starts_with("Plan for ../../declastruct.yml\n"),
        "{}",
        stdout(&output)
    );
    let mut validate = world.sandbox.command(&["validate"]);
    validate.current_dir(&deeper);
    let output = validate.output().expect("validate");
    assert_eq!(
        stdout(&output),
        "../../declastruct.yml is valid: 3 resources.\n"
    );
    // none anywhere up the tree: the usual message about ./declastruct.yml
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let mut lost = world.sandbox.command(&["validate"]);
    lost.current_dir(elsewhere.path());
    let output = lost.output().expect("validate");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("declastruct.yml"),
        "{}",
        stderr(&output)
    );
}

/// "The second day", item 8: `--var <TAB>` offers the variables the manifest refers to, as `NAME=`, even when the
/// manifest does not load without them; with `-f`, that manifest's
#[test]
fn var_completes_the_manifests_variables() {
    let sandbox = Sandbox::new(None);
    let text = manifest("running", "OPEN", 7775)
        .replace("port: 7775", "port: ${PORT:-7775}")
        .replace("exid: vpc-main-bastion }", "exid: ${env}-bastion }");
    sandbox.write("declastruct.yml", &text);
    let offered = complete_words(&sandbox, "declastruct plan --var ''");
    assert_eq!(offered, vec!["env=".to_string(), "PORT=".to_string()]);
    let offered = complete_words(&sandbox, "declastruct exec --var P");
    assert_eq!(offered, vec!["PORT=".to_string()]);

    // with `-f`, that manifest's variables and addresses, not the folder's
    let other = manifest("running", "OPEN", 7776)
        .replace("port: 7776", "port: ${OTHER_PORT:-7776}")
        .replace(
            "  - kind: DeclaredAwsVpcTunnel\n",
            "  - kind: DeclaredAwsVpcTunnel\n    name: elsewhere\n",
        );
    sandbox.write("other.yml", &other);
    for words in [
        "declastruct plan -f other.yml --var ''",
        "declastruct --file=other.yml plan --var ''",
    ] {
        assert_eq!(
            complete_words(&sandbox, words),
            vec!["OTHER_PORT=".to_string()],
            "{words}"
        );
    }
    let offered = complete_words(&sandbox, "declastruct exec -f other.yml ''");
    assert!(offered.contains(&"elsewhere".to_string()), "{offered:?}");
    assert!(
        !offered
            .iter()
            .any(|word| word.starts_with("vpc-main-bastion.")),
        "{offered:?}"
    );
}

/// "The second day", item 8: every command's `--help` is laid out alike (one line per option, as `-h, --help
/// Print help`), its lines fit 100 columns, and its prose wraps evenly (a line is cut only when it is full)
#[test]
fn every_help_is_laid_out_alike_and_wraps_evenly() {
    let sandbox = Sandbox::new(None);
    for command in [
        "validate",
        "plan",
        "apply",
        "show",
        "status",
        "logs",
        "exec",
        "env",
        "connect",
        "init",
        "schema",
        "completions",
    ] {
        let help = stdout(&sandbox.run(&[command, "--help"]));
        let lines: Vec<&str> = help.lines().collect();
        assert!(
            lines
                .iter()
                .any(|line| line.trim_start().starts_with("-h, --help")
                    && line.trim_end().ends_with("Print help")),
            "{command}: the short layout, one line per option:\n{help}"
        );
        for (index, line) in lines.iter().enumerate() {
            assert!(
                line.chars().count() <= 100,
                "{command}: wider than 100 columns: {line:?}"
            );
            // a prose line (not indented, not a heading) followed by more prose is a full line
            let next = lines.get(index + 1).copied().unwrap_or_default();
            let prose =
                |line: &str| !line.is_empty() && !line.starts_with(' ') && !line.ends_with(':');
            if prose(line) && prose(next) && !line.starts_with("Usage") {
                assert!(
                    line.chars().count() >= 70,
                    "{command}: a ragged line, cut before it was full: {line:?}\n{help}"
                );
            }
        }
    }
}

/// `-f` and `--var` are offered by the commands that read a manifest only; `--help` groups the global options
/// apart and lists the environment variables the command honours
#[test]
fn help_offers_manifest_options_only_where_they_mean_something() {
    let sandbox = Sandbox::new(None);
    for command in ["validate", "plan", "apply", "status", "logs", "exec", "env"] {
        let help = stdout(&sandbox.run(&[command, "--help"]));
        assert!(
            help.contains("Manifest options:\n  -f, --file <PATH>"),
            "{command}:\n{help}"
        );
        assert!(help.contains("--var <NAME=VALUE>"), "{command}:\n{help}");
        assert!(
            help.contains("Global options:\n  -v, --verbose"),
            "{command}:\n{help}"
        );
        assert!(help.contains("Environment:\n"), "{command}:\n{help}");
        assert!(help.contains("NO_COLOR"), "{command}:\n{help}");
        // validate reads no state folder; every other of these does
        assert_eq!(
            help.contains("DECLASTRUCT_HOME"),
            command != "validate",
            "{command}:\n{help}"
        );
    }
    for command in ["plan", "apply", "status"] {
        let help = stdout(&sandbox.run(&[command, "--help"]));
        for variable in ["AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL", "NO_COLOR"] {
            assert!(
                help.contains(variable),
                "{command} names {variable}:\n{help}"
            );
        }
    }
    let apply = stdout(&sandbox.run(&["apply", "--help"]));
    assert!(apply.contains("DECLASTRUCT_AWS_CLI"), "{apply}");
    for command in ["schema", "show", "completions"] {
        let help = stdout(&sandbox.run(&[command, "--help"]));
        assert!(
            !help.contains("--file"),
            "{command} reads no manifest:\n{help}"
        );
        assert!(help.contains("Global options:"), "{command}:\n{help}");
    }
    // after the command, clap refuses it; before it, declastruct does, naming the command
    let after = sandbox.run(&["schema", "-f", "x.yml"]);
    assert_eq!(after.status.code(), Some(2));
    let before = sandbox.run(&["-f", "x.yml", "schema"]);
    assert_eq!(before.status.code(), Some(2));
    assert!(
        stderr(&before).contains(
            "`-f`, `--var` and `--var-file` are for commands that read a manifest; `schema` reads none"
        ),
        "{}",
        stderr(&before)
    );
    let top = stdout(&sandbox.run(&["--help"]));
    assert!(top.contains("Manifest options:"), "{top}");
    assert!(top.contains("Global options:"), "{top}");
}

/// the bastion-not-found message suggests the closest `exid`s, as the cluster one does
#[test]
fn a_misspelt_bastion_suggests_the_closest_exid() {
    let moto = Moto::start();
    moto.seed_bastion(REGION, "vpc-main-bastion", true);
    moto.seed_cluster(REGION, "ahbodedb");
    let sandbox = Sandbox::new(Some(&moto));
    sandbox.write(
        "declastruct.yml",
        &manifest("running", "OPEN", 7775).replace("vpc-main-bastion", "vpc-mian-bastion"),
    );
    let output = sandbox.run(&["plan"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("bastion { exid: vpc-mian-bastion } was not found"),
        "{message}"
    );
    assert!(
        message.contains("did you mean `vpc-main-bastion`?"),
        "{message}"
    );
}

/// completions offer the manifest's addresses: tunnels for `logs`, `env`, `exec` and `--replace`, every resource
/// for `--target`, through the script `completions bash` prints, in a real bash
#[test]
fn completions_offer_the_manifests_addresses() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    let complete = |words: &str| complete_words(&world.sandbox, words);
    let tunnel = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    for words in [
        "declastruct logs ''",
        "declastruct env ''",
        "declastruct exec ''",
        "declastruct apply --replace ''",
    ] {
        let offered = complete(words);
        assert!(offered.contains(&tunnel), "{words}: {offered:?}");
        assert!(
            !offered.contains(&"ahbodedb".to_string()),
            "{words}: tunnels only: {offered:?}"
        );
    }
    let targets = complete("declastruct plan --target ''");
    for address in [tunnel.as_str(), "vpc-main-bastion", "ahbodedb"] {
        assert!(targets.contains(&address.to_string()), "{targets:?}");
    }
    let prefixed = complete("declastruct logs vpc-");
    assert_eq!(prefixed, std::slice::from_ref(&tunnel));
}

/// `-q` prints only the essential result on every command; `-v` adds detail (the plan's unchanged resources, what
/// apply does, on stderr) and `-vv` the AWS calls
#[test]
fn quiet_prints_only_the_essential_result() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    let validate = world.sandbox.run(&["validate", "-q"]);
    assert_success(&validate);
    assert_eq!(stdout(&validate), "");
    let plan = world.sandbox.run(&["plan", "-q"]);
    assert_success(&plan);
    assert_eq!(
        stdout(&plan).lines().count(),
        1,
        "one summary line: {}",
        stdout(&plan)
    );
    assert!(stdout(&plan).contains("to update"), "{}", stdout(&plan));
    let detailed = world.sandbox.run(&["plan", "-vv"]);
    assert_success(&detailed);
    assert!(
        stderr(&detailed).contains("ec2:DescribeInstances")
            || stderr(&detailed).contains("DescribeInstances"),
        "-vv names the AWS calls: {}",
        stderr(&detailed)
    );
    assert!(
        !stderr(&world.sandbox.run(&["plan"])).contains("DescribeInstances"),
        "not without -v"
    );
    let told = world.sandbox.run(&["apply", "--auto-approve", "-v"]);
    assert_success(&told);
    assert!(
        stderr(&told).contains("starting the tunnel"),
        "-v says what apply does: {}",
        stderr(&told)
    );
    world.declare("running", "CLOSED");
    let closed = world.sandbox.run(&["apply", "--auto-approve", "-q"]);
    assert_success(&closed);
    world.declare("running", "OPEN");
    let apply = world.sandbox.run(&["apply", "--auto-approve", "-q"]);
    assert_success(&apply);
    assert!(!stdout(&apply).contains("Connect:"), "{}", stdout(&apply));
    let status = world.sandbox.run(&["status", "-q"]);
    assert_success(&status);
    assert!(
        stdout(&status).contains("RESOURCE"),
        "the table is the result"
    );
    assert!(!stdout(&status).contains("Connect:"), "{}", stdout(&status));
    let loud = world.sandbox.run(&["status"]);
    assert!(stdout(&loud).contains("Connect:"), "{}", stdout(&loud));
}

/// a CI log (stderr not a terminal) gets a plain progress line every few seconds of a long wait, with what is
/// waited for and for how long, and no control codes; a short wait prints nothing
#[test]
fn a_long_wait_in_ci_prints_plain_progress_lines() {
    let mut world = World::new(true);
    world.declare("running", "OPEN");
    // the bastion's agent refuses the first sessions: the open waits while the session restarts
    world.refuse_first_sessions(4);
    let output = world.apply();
    assert_success(&output);
    let log = stderr(&output);
    assert!(
        log.contains(&format!(
            "… UPDATE DeclaredAwsVpcTunnel vpc-main-bastion.ahbodedb.{}: still waiting after 5 s",
            world.port
        )),
        "{log}"
    );
    assert!(
        log.contains("SSM agent"),
        "the latest reason rides along:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "no control codes: {log:?}");
    // a quick run prints none
    world.declare("running", "CLOSED");
    let quick = world.apply();
    assert_success(&quick);
    assert!(
        !stderr(&quick).contains("still waiting"),
        "{}",
        stderr(&quick)
    );
}

/// `init` writes a starter manifest that validates, with a `$schema` line naming the schema it writes beside it
/// (so editors validate it outside this repository), and never overwrites a manifest
#[test]
fn init_writes_a_starter_manifest_that_validates_and_never_overwrites() {
    let sandbox = Sandbox::new(None);
    let written = sandbox.run(&[
        "init",
        "--bastion",
        "vpc-main-bastion",
        "--cluster",
        "ahbodedb",
        "--port",
        "7776",
    ]);
    assert_eq!(written.status.code(), Some(0), "{}", stderr(&written));
    let text = std::fs::read_to_string(sandbox.path("declastruct.yml")).expect("the manifest");
    assert!(
        text.starts_with("# yaml-language-server: $schema=./declastruct.schema.json\n"),
        "{text}"
    );
    let schema =
        std::fs::read_to_string(sandbox.path("declastruct.schema.json")).expect("the schema");
    let schema_out = sandbox.run(&["schema"]);
    assert_eq!(
        schema,
        stdout(&schema_out),
        "the schema beside it is declastruct's"
    );
    assert!(text.contains("port: 7776") && text.contains("exid: vpc-main-bastion"));
    let valid = sandbox.run(&["validate"]);
    assert_eq!(valid.status.code(), Some(0), "{}", stderr(&valid));

    std::fs::write(sandbox.path("declastruct.yml"), "# mine\n").expect("write");
    let again = sandbox.run(&["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("declastruct.yml exists here already"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.path("declastruct.yml")).expect("kept"),
        "# mine\n"
    );
    let refused = sandbox.run(&["init", "--port", "7775432"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
}
