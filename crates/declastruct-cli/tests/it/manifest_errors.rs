use declastruct_test_support::Moto;

use crate::support::{Sandbox, stable_settings, stderr, workspace_root};

/// every file in tests/bad-manifests is a broken manifest: `validate` and `plan` exit 1 with a diagnostic that
/// names the file with line and column (except an empty file, which has none), and `plan` makes no AWS request
#[test]
fn every_bad_manifest_is_rejected_offline_with_a_located_diagnostic() {
    let moto = Moto::start();
    let sandbox = Sandbox::new(Some(&moto));
    let corpus = workspace_root().join("crates/declastruct-cli/tests/bad-manifests");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .map(|entry| entry.expect("entry").path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "the corpus has {} cases", cases.len());

    for case in cases {
        let name = case
            .file_name()
            .and_then(|name| name.to_str())
            .expect("name")
            .to_string();
        std::fs::copy(&case, sandbox.path(&name)).expect("copy");

        let validate = sandbox.run(&["validate", "-f", &name]);
        assert_eq!(
            validate.status.code(),
            Some(1),
            "{name}: validate should exit 1"
        );

        moto.start_counting();
        let plan = sandbox.run(&["plan", "-f", &name]);
        assert_eq!(plan.status.code(), Some(1), "{name}: plan should exit 1");
        assert_eq!(
            moto.counted_requests(),
            Vec::<String>::new(),
            "{name}: no AWS request for a bad manifest"
        );

        let diagnostic = stderr(&plan);
        assert_eq!(
            diagnostic,
            stderr(&validate),
            "{name}: plan and validate report the same"
        );
        if name != "empty.yml" {
            let located = regex_like_location(&diagnostic, &name);
            assert!(
                located,
                "{name}: the diagnostic names no line and column:\n{diagnostic}"
            );
        }
        assert!(
            diagnostic.contains("help:"),
            "{name}: the diagnostic says what to do:\n{diagnostic}"
        );
        stable_settings().bind(|| {
            insta::assert_snapshot!(name.trim_end_matches(".yml").to_string(), diagnostic);
        });
    }
}

/// `[name:LINE:COLUMN]` as miette prints it
fn regex_like_location(diagnostic: &str, name: &str) -> bool {
    let marker = format!("[{name}:");
    diagnostic.match_indices(&marker).any(|(start, _)| {
        let rest = &diagnostic[start + marker.len()..];
        let end = rest.find(']').unwrap_or(0);
        let mut parts = rest[..end].split(':');
        matches!((parts.next(), parts.next()), (Some(line), Some(column))
            if line.parse::<u32>().is_ok() && column.parse::<u32>().is_ok())
    })
}

/// a YAML "billion laughs" (401 bytes that expand to a billion values) is refused, located, without expanding it:
/// the check runs under an address-space limit of 256 MiB, which expanding it would exceed many times over
#[test]
fn an_alias_bomb_is_refused_without_expanding_it() {
    use std::os::unix::process::CommandExt;
    let sandbox = Sandbox::new(None);
    let bomb = std::fs::read_to_string(
        workspace_root().join("crates/declastruct-cli/tests/bad-manifests/alias-bomb.yml"),
    )
    .expect("the bomb");
    sandbox.write("declastruct.yml", &bomb);
    let mut command = sandbox.command(&["validate"]);
    // SAFETY: setrlimit is async-signal-safe and the only call made between fork and exec
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_AS,
                256 * 1024 * 1024,
                256 * 1024 * 1024,
            )
            .map_err(std::io::Error::from)
        });
    }
    let started = std::time::Instant::now();
    let output = command.output().expect("validate");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let message = stderr(&output);
    assert!(
        message.contains("declastruct::manifest::alias_expansion"),
        "{message}"
    );
    assert!(
        message.contains("[declastruct.yml:5:8]"),
        "located at the alias that crosses the limit: {message}"
    );
}

/// a byte-order mark before the document is allowed, and the YAML merge key `<<` merges
#[test]
fn a_byte_order_mark_and_merge_keys_are_read_as_yaml_says() {
    let sandbox = Sandbox::new(None);
    let inline = "\u{feff}resources:\n  - &first\n    kind: DeclaredAwsVpcTunnel\n    via: { mechanism: aws.ssm, bastion: { exid: b } }\n    into: { cluster: { name: c } }\n    from: { host: localhost, port: 7775 }\n    status: OPEN\n  - <<: *first\n    from: { host: localhost, port: 7776 }\n";
    sandbox.write("declastruct.yml", inline);
    let output = sandbox.run(&["validate"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(crate::support::stdout(&output).contains("valid: 2 resources"));
}

#[test]
fn a_missing_manifest_says_how_to_make_one() {
    let output = Sandbox::new(None).run(&["validate"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot read the manifest declastruct.yml"));
}

#[test]
fn usage_errors_exit_2() {
    let output = Sandbox::new(None).run(&["plan", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn file_flag_works_before_and_after_the_subcommand() {
    let sandbox = Sandbox::new(None);
    sandbox.write(
        "other.yml",
        &crate::support::manifest("running", "OPEN", 7775),
    );
    assert!(
        sandbox
            .run(&["-f", "other.yml", "validate"])
            .status
            .success()
    );
    assert!(
        sandbox
            .run(&["validate", "--file", "other.yml"])
            .status
            .success()
    );
}

/// several mistakes in one resource are all reported in one run (not the first of each resource), each at its
/// place; a misspelt field is read under the name it was meant to have, so it does not also count as missing
#[test]
fn several_problems_in_one_resource_are_reported_at_once() {
    let sandbox = Sandbox::new(None);
    let name = "several-per-resource.yml";
    std::fs::copy(
        workspace_root()
            .join("crates/declastruct-cli/tests/bad-manifests")
            .join(name),
        sandbox.path(name),
    )
    .expect("copy");
    for command in ["validate", "plan"] {
        let output = sandbox.run(&[command, "-f", name]);
        assert_eq!(output.status.code(), Some(1), "{command}");
        let diagnostic = stderr(&output);
        let located: Vec<&str> = diagnostic
            .lines()
            .filter_map(|line| line.split_once(&format!("[{name}:")))
            .map(|(_, place)| place.trim_end_matches(']'))
            .collect();
        assert_eq!(
            located,
            ["5:13", "6:5", "9:24", "10:19", "10:38", "11:5"],
            "{command}: every problem, in order:\n{diagnostic}"
        );
        assert!(diagnostic.contains("did you mean `name`?"), "{diagnostic}");
        assert!(
            diagnostic.contains("did you mean `status`?"),
            "{diagnostic}"
        );
        assert!(!diagnostic.contains("missing field"), "{diagnostic}");
        assert!(diagnostic.contains("6 problems in"), "{diagnostic}");
    }
}
