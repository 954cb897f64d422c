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
            insta::assert_snapshot!(name.trim_end_matches(".yml").to_string(), diagnostic)
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
