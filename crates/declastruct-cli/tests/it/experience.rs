use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::apply::{World, assert_success};
use crate::support::{Sandbox, stderr, stdout};

/// runs declastruct on a pseudo-terminal (stdin, stdout and stderr), feeding `input`, and returns what the
/// terminal showed
fn on_terminal(sandbox: &Sandbox, args: &[&str], input: &str) -> (Option<i32>, String) {
    let command: Command = sandbox.command(args);
    let program = command.get_program().to_owned();
    let mut wrapper = Command::new("python3");
    wrapper
        .arg("-c")
        .arg("import os, pty, sys; status = pty.spawn(sys.argv[1:]); sys.exit(os.waitstatus_to_exitcode(status))")
        // a terminal 200 columns wide, so that a spinner's whole line fits
        .args(["sh", "-c", "stty cols 200 rows 50; exec \"$@\"", "sh"])
        .arg(program)
        .args(command.get_args())
        .current_dir(sandbox.dir.path())
        .env_clear()
        .envs(command.get_envs().filter_map(|(key, value)| value.map(|value| (key, value))))
        .env("TERM", "xterm-256color")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = wrapper.spawn().expect("python3 pty");
    // what the terminal shows, read as it comes: the input is typed once the prompt is on the screen
    let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = child.stdout.take().map(|mut stdout| {
        let shown = std::sync::Arc::clone(&shown);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buffer = [0u8; 4096];
            while let Ok(count) = stdout.read(&mut buffer) {
                if count == 0 {
                    break;
                }
                if let Ok(mut shown) = shown.lock() {
                    shown.extend_from_slice(&buffer[..count]);
                }
            }
        })
    });
    if let Some(mut stdin) = child.stdin.take() {
        if !input.is_empty() {
            let prompted = crate::support::wait_for(Duration::from_secs(60), || {
                shown
                    .lock()
                    .is_ok_and(|shown| String::from_utf8_lossy(&shown).contains("Enter a value:"))
                    || matches!(child.try_wait(), Ok(Some(_)))
            });
            assert!(prompted, "no prompt within 60 s");
            let _ = stdin.write_all(input.as_bytes());
        }
        drop(stdin);
    }
    let status = child.wait().expect("wait");
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    let screen = shown.lock().map(|shown| shown.clone()).unwrap_or_default();
    (status.code(), String::from_utf8_lossy(&screen).into_owned())
}

#[test]
fn progress_shows_on_a_terminal_and_never_when_piped_or_json() {
    let mut world = World::new(false);
    let counter = world.refuse_first_sessions(1);
    world.declare("running", "OPEN");

    let (code, screen) = on_terminal(&world.sandbox, &["apply", "--auto-approve"], "");
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("waiting for the bastion's SSM agent to connect"),
        "{screen}"
    );
    assert!(
        screen.contains("[00:00:0"),
        "a spinner with elapsed time:\n{screen}"
    );
    assert!(screen.contains("starting instance"), "{screen}");

    // the same waits, piped: no progress at all
    world.declare("running", "CLOSED");
    assert_success(&world.apply());
    std::fs::remove_file(&counter).expect("reset counter");
    world.declare("running", "OPEN");
    let piped = world.apply();
    assert_success(&piped);
    for text in [stdout(&piped), stderr(&piped)] {
        assert!(!text.contains("waiting for the bastion"), "{text}");
        assert!(!text.contains("[00:00:0"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "no control codes when piped: {text:?}"
        );
    }

    // --json on a terminal: only JSON, no progress
    world.declare("running", "CLOSED");
    let (code, screen) = on_terminal(&world.sandbox, &["apply", "--auto-approve", "--json"], "");
    assert_eq!(code, Some(0), "{screen}");
    assert!(!screen.contains("[00:00:0"), "{screen}");
    let document: serde_json::Value =
        serde_json::from_str(screen.trim()).expect("only JSON on the terminal");
    assert_eq!(document["summary"]["applied"], 1);
}

/// "The second day", item 3: a slow apply of two tunnels through a bastion that starts, on a terminal. What the
/// AWS crate reports (the agent not yet connected) is the detail of the line of the change it belongs to, never
/// an unlabelled line; no spinner line stays on the screen; every change gets exactly one outcome line, in colour;
/// each line has one clock
#[test]
fn a_slow_apply_on_a_terminal_labels_every_wait_and_ends_every_change_once() {
    let mut world = World::new(false);
    world.refuse_first_sessions(2);
    let second = declastruct_test_support::free_port();
    world.sandbox.write(
        "declastruct.yml",
        &crate::support::manifest_with_ports("running", "OPEN", &[world.port, second]),
    );
    let (code, raw) = on_terminal(&world.sandbox, &["apply", "--auto-approve"], "");
    assert_eq!(code, Some(0), "{raw}");
    let screen = crate::support::terminal_lines_of_width(raw.as_bytes(), 200);
    let text = screen.join("\n");
    let addresses = [
        "DeclaredAwsEc2Instance vpc-main-bastion".to_string(),
        format!(
            "DeclaredAwsVpcTunnel vpc-main-bastion.ahbodedb.{}",
            world.port
        ),
        format!("DeclaredAwsVpcTunnel vpc-main-bastion.ahbodedb.{second}"),
    ];
    for address in &addresses {
        let done = screen
            .iter()
            .filter(|line| line.starts_with(&format!("UPDATE {address}: done after ")))
            .count();
        assert_eq!(done, 1, "one outcome line for {address}:\n{text}");
    }
    assert!(
        text.contains("Apply complete: 3 applied, 1 unchanged, 0 failed, 0 skipped."),
        "{text}"
    );
    // what is left on the screen: the plan, the outcomes, the summary; no spinner, no unlabelled message
    for line in &screen {
        assert!(
            !line.contains("[00:0"),
            "a spinner stayed: {line:?}\n{text}"
        );
        assert!(
            !line.trim_start().starts_with('…'),
            "an unlabelled progress line stayed: {line:?}\n{text}"
        );
    }
    // the agent's wait was shown on its tunnel's line, with the line's clock only
    assert!(
        addresses[1..].iter().any(|address| raw.contains(&format!(
            "{address} (waiting for the bastion's SSM agent to connect: TargetNotConnected, attempt"
        ))),
        "{raw:?}"
    );
    assert!(!raw.contains(" s of "), "two clocks on a line: {raw:?}");
    // outcomes in colour
    assert!(raw.contains("mdone\u{1b}[0m"), "{raw:?}");
    assert!(raw.contains("mcomplete\u{1b}[0m"), "{raw:?}");
}

#[test]
fn apply_on_a_terminal_asks_for_exactly_yes() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    let (code, screen) = on_terminal(&world.sandbox, &["apply"], "y\n");
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains("Only 'yes' will be accepted"), "{screen}");
    assert!(screen.contains("Apply cancelled"), "{screen}");
    assert!(world.metas().is_empty());

    let (code, screen) = on_terminal(&world.sandbox, &["apply"], "yes\n");
    assert_eq!(code, Some(0), "{screen}");
    let lines = crate::support::terminal_lines_of_width(screen.as_bytes(), 200);
    assert!(
        lines.iter().any(|line| line.starts_with("Apply complete")),
        "{screen}"
    );
    assert_eq!(world.metas().len(), 1);
}

#[test]
fn colour_only_on_a_terminal_without_no_color() {
    let world = World::new(false);
    world.declare("running", "OPEN");
    // colour is a Select Graphic Rendition sequence (ESC [ ... m); a spinner's cursor moves are not colour
    let has_colour = |text: &str| {
        text.match_indices("\u{1b}[").any(|(start, _)| {
            text[start + 2..]
                .chars()
                .find(|character| !character.is_ascii_digit() && *character != ';')
                == Some('m')
        })
    };
    let (_, coloured) = on_terminal(&world.sandbox, &["plan"], "");
    assert!(has_colour(&coloured), "colour on a terminal: {coloured:?}");
    let (_, plain) = on_terminal(&world.sandbox, &["plan", "--no-color"], "");
    assert!(!has_colour(&plain), "--no-color: {plain:?}");
    // no-color.org: any value but the empty string turns colour off, "0" and "false" included
    for (value, coloured) in [("1", false), ("0", false), ("false", false), ("", true)] {
        let mut no_color = Sandbox::new(Some(&world.moto));
        no_color.set_env("NO_COLOR", value);
        std::fs::copy(
            world.sandbox.path("declastruct.yml"),
            no_color.path("declastruct.yml"),
        )
        .expect("copy");
        let (_, output) = on_terminal(&no_color, &["plan"], "");
        assert_eq!(
            has_colour(&output),
            coloured,
            "NO_COLOR={value:?}: {output:?}"
        );
    }
    assert!(
        !stdout(&world.sandbox.run(&["plan"])).contains('\u{1b}'),
        "piped"
    );
}

#[test]
fn logs_follow_prints_what_is_appended_until_the_tunnel_closes() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let address = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    let mut follow = world
        .sandbox
        .command(&["logs", &address, "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs --follow");
    let reader = BufReader::new(follow.stdout.take().expect("stdout"));
    let (lines_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let _ = lines_sender.send(line);
        }
    });
    // a session that ends is restarted: the supervisor's stamped line and the new session's output are appended
    let session = crate::support::children_of(world.only_meta().pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(session[0]).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the session");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let appended = |seen: &[String]| {
        seen.iter().any(|line| line.contains("Z] restart 1 in"))
            && seen
                .iter()
                .filter(|line| line.starts_with("Starting session with SessionId: "))
                .count()
                >= 2
    };
    while std::time::Instant::now() < deadline && !appended(&seen) {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    assert!(
        appended(&seen),
        "the first session's output, the restart, and the second session's: {seen:?}"
    );
    world.declare("running", "CLOSED");
    assert_success(&world.apply());
    let ended = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        follow.try_wait().ok().flatten().is_some()
    });
    let _ = follow.kill();
    assert!(ended, "--follow ends when the tunnel is closed");

    let unknown = world.sandbox.run(&["logs", "nothing.here.1"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("no open tunnel has the address `nothing.here.1`"));
}

#[test]
fn completions_and_help() {
    let sandbox = Sandbox::new(None);
    // each script asks `declastruct` itself for candidates (`COMPLETE=SHELL declastruct -- WORDS`), so the
    // manifest's addresses complete too (`first_hour::completions_offer_the_manifests_addresses`)
    for (shell, marker) in [
        ("bash", "_clap_complete_declastruct()"),
        ("zsh", "#compdef declastruct"),
        (
            "fish",
            "complete --keep-order --exclusive --command declastruct",
        ),
        ("elvish", "arg-completer[declastruct]"),
        (
            "powershell",
            "Register-ArgumentCompleter -Native -CommandName declastruct",
        ),
    ] {
        let output: Output = sandbox.run(&["completions", shell]);
        assert_success(&output);
        assert!(stdout(&output).contains(marker), "{shell}");
        assert!(stdout(&output).contains("COMPLETE"), "{shell}");
    }
    for command in [
        "validate",
        "plan",
        "apply",
        "status",
        "schema",
        "logs",
        "completions",
    ] {
        let output = sandbox.run(&[command, "--help"]);
        assert_success(&output);
        assert!(
            stdout(&output).contains("Example"),
            "`{command} --help` shows an example"
        );
    }
}

#[test]
fn verbose_logs_the_aws_calls() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    let output = world.sandbox.run(&["plan", "-vv"]);
    assert_success(&output);
    assert!(
        stderr(&output).contains("ec2:DescribeInstances"),
        "{}",
        stderr(&output)
    );
    let quiet = world.sandbox.run(&["plan", "-q"]);
    assert_success(&quiet);
    assert_eq!(stdout(&quiet).trim(), "Plan: 1 to update, 2 to keep.");
    assert_eq!(stderr(&quiet), "");
}
