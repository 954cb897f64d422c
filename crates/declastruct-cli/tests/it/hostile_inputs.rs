//! Inputs and output streams that must not be turned against the user (issue 21): files that never end, a plan
//! written over a manifest, secrets without a password or out of reach, output to a full disk or a closed stream,
//! progress on a dumb terminal and in a CI log, an endpoint without a scheme, and saved plans made with
//! `--target`. Each through the real binary.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::apply::{World, assert_success};
use crate::support::{Sandbox, manifest, shown};

/// the memory limit the issue observed the failures under (`ulimit -v 2000000`, in KiB)
const MEMORY_LIMIT_KIB: &str = "2000000";

/// runs the binary with `args` under the address-space limit, with stdout and stderr captured; the time it took
fn run_under_memory_limit(sandbox: &Sandbox, args: &[&str]) -> (Output, Duration) {
    let command = sandbox.command(&[]);
    let program = command.get_program().to_owned();
    let mut limited = Command::new("bash");
    limited
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_LIMIT_KIB}; exec \"$0\" \"$@\""))
        .arg(program)
        .args(args)
        .current_dir(sandbox.dir.path())
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned()))),
        )
        .stdin(Stdio::null());
    let started = Instant::now();
    let output = limited.output().expect("bash");
    (output, started.elapsed())
}

/// item 2: a manifest or a saved plan that never ends (`/dev/zero`), or a saved plan that is a 2 GB sparse file,
/// is refused with the file and the limit named, in well under a second and under a 2 GB memory limit
#[test]
fn a_manifest_or_saved_plan_that_never_ends_is_refused_at_its_limit() {
    let sandbox = Sandbox::new(None);
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", 7775));
    let sparse = std::fs::File::create(sandbox.path("sparse-plan.json")).expect("create");
    sparse.set_len(2 * 1024 * 1024 * 1024).expect("a sparse 2 GB file");
    let cases: [&[&str]; 5] = [
        &["validate", "-f", "/dev/zero"],
        &["plan", "-f", "/dev/zero"],
        &["show", "/dev/zero"],
        &["show", "sparse-plan.json"],
        &["apply", "--plan", "sparse-plan.json"],
    ];
    let mut everything = String::new();
    for args in cases {
        let (output, took) = run_under_memory_limit(&sandbox, args);
        assert!(
            took < Duration::from_secs(1),
            "{args:?} took {took:?}:\n{}",
            shown(&output)
        );
        everything.push_str(&format!(
            "$ declastruct {}\n{}\n",
            args.join(" "),
            shown(&output)
        ));
    }
    crate::support::stable_settings().bind(|| {
        insta::assert_snapshot!("refused_at_their_limit", everything);
    });
}

/// item 6: stdout on a full disk is exit 1 with a message on stderr for every command that prints; a closed
/// stdout is quiet with the command's own status; a full stderr is never a panic
#[test]
fn output_that_cannot_be_written() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    assert_success(&world.sandbox.run(&["plan", "--out", "plan.json"]));
    let address = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    let commands: [&[&str]; 6] = [
        &["validate"],
        &["plan"],
        &["show", "plan.json"],
        &["env", &address],
        &["logs", &address],
        &["status"],
    ];
    let mut everything = String::new();
    for args in commands {
        let output = world
            .sandbox
            .command(args)
            .stdout(dev_full())
            .output()
            .expect("run");
        everything.push_str(&format!(
            "$ declastruct {} > /dev/full\n{}\n",
            args.join(" "),
            shown(&output)
        ));
        let closed = closed_stdout(&world.sandbox, args);
        everything.push_str(&format!(
            "$ declastruct {} >&-\n{}\n",
            args.join(" "),
            shown(&closed)
        ));
    }
    world.sandbox.write("broken.yml", "resources:\n  - kind: Nothing\n");
    let full_stderr = world
        .sandbox
        .command(&["validate", "-f", "broken.yml"])
        .stderr(dev_full())
        .output()
        .expect("run");
    everything.push_str(&format!(
        "$ declastruct validate -f broken.yml 2> /dev/full\n{}\n",
        shown(&full_stderr)
    ));
    crate::support::settings_for_ports(&[world.port]).bind(|| {
        insta::assert_snapshot!("output_that_cannot_be_written", everything);
    });
}

/// /dev/full, opened for writing: every write fails with "No space left on device"
fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full")
}

/// the binary run with its stdout closed (`>&-`), through bash
fn closed_stdout(sandbox: &Sandbox, args: &[&str]) -> Output {
    let command = sandbox.command(&[]);
    Command::new("bash")
        .arg("-c")
        .arg("exec >&-; exec \"$0\" \"$@\"")
        .arg(command.get_program())
        .args(args)
        .current_dir(sandbox.dir.path())
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned()))),
        )
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .expect("bash")
}
