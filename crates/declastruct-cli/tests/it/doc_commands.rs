//! Every command line in README.md and docs/*.md, run by the real binary: a ```console block's commands on a
//! terminal, compared line by line with the output the doc shows (after normalising what changes from run to
//! run); the lines of ```sh blocks and the `run:` steps of docs/ci.md through bash, checked to parse and to end
//! as the doc says. A command the test cannot run faithfully is in `HANDLED` with the reason; a command line
//! that is in no entry fails the test, so a new one cannot reach the docs unchecked, and neither can a doc that
//! drifts from what the binary prints.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use declastruct_test_support::{Moto, Postgres, free_port};

use crate::support::{REGION, Sandbox, terminal_lines, workspace_root};

/// the port the docs' manifests use; a test's own free port is shown as this one before comparing
const DOCUMENTED_PORT: u16 = 7775;

/// the kind of fenced block a command line was found in
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// ```console: `$ command` lines, each followed by the output it shows
    Console,
    /// ```sh, ```bash, ```shell: every line is a command
    Shell,
    /// a `run:` step of a GitHub Actions workflow in docs/ci.md, or a comment there that names a command
    CiStep,
}

/// .what = one command line of the docs, where it is, and what the doc says it prints
/// .why = the unit the test runs and reports
#[derive(Debug, Clone)]
struct DocCommand {
    doc: String,
    line: usize,
    block: Block,
    /// what `HANDLED` knows it by: the line (placeholders filled, comment removed), or, for a run step of several
    /// lines, its first line that invokes declastruct (else its first line)
    command: String,
    /// what bash runs: the command, or the whole run step
    script: String,
    /// a console block's documented output, one entry per line
    output: Vec<String>,
}

impl DocCommand {
    fn at(&self) -> String {
        format!("{}:{}", self.doc, self.line)
    }
}

/// where a command runs: each scenario is a sandbox of its own, prepared as the doc's text assumes
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// the README's manifest (its port a free one), a stopped bastion and a cluster in moto
    Readme,
    /// the README's manifest with `port: 7775432`, and no AWS at all
    BadManifest,
    /// examples/basic.yml (its port a free one) in moto, with `$GITHUB_OUTPUT`: the jobs of docs/ci.md
    Ci,
    /// examples/environments.yml in moto with the dev and prod bastions, clusters and profiles, `PORT` free
    Environments,
}

/// a check of what a command did beyond its exit status: what it printed or the files it wrote
type Check = fn(&Ran) -> Result<(), String>;

/// what the test knows about one command line
#[derive(Debug, Clone, Copy)]
enum How {
    /// run in `scenario`; it must exit `exit` and pass `check`
    Run {
        scenario: Scenario,
        exit: i32,
        check: Option<Check>,
    },
    /// not run, for the reason given
    AllowListed(&'static str),
}

struct Handled {
    doc: &'static str,
    command: &'static str,
    how: How,
}

const fn run(scenario: Scenario, exit: i32) -> How {
    How::Run {
        scenario,
        exit,
        check: None,
    }
}

const fn run_and_check(scenario: Scenario, exit: i32, check: Check) -> How {
    How::Run {
        scenario,
        exit,
        check: Some(check),
    }
}

/// every command line of the docs, and how the test handles it (commands run in the order of the docs)
const HANDLED: &[Handled] = &[
    // docs/iam.md
    Handled {
        doc: "docs/iam.md",
        command: "aws ec2 create-tags --resources i-0abc1234 --tags Key=exid,Value=vpc-main-bastion",
        how: How::AllowListed(
            "the AWS CLI against a real account's instance; moto-seeded bastions are tagged by the tests' own \
             fixture (Moto::seed_bastion), and the lookup by tag is what plan.rs exercises",
        ),
    },
    // README.md
    Handled {
        doc: "README.md",
        command: "cargo install --path crates/declastruct-cli",
        how: How::AllowListed(
            "builds and installs into ~/.cargo/bin; the test runs the binary cargo built for it",
        ),
    },
    Handled {
        doc: "README.md",
        command: "declastruct plan",
        how: run(Scenario::Readme, 0),
    },
    Handled {
        doc: "README.md",
        command: "declastruct apply",
        how: run(Scenario::Readme, 0),
    },
    Handled {
        doc: "README.md",
        command: "psql -h localhost -p 7775 -U app appdb",
        how: How::AllowListed(
            "an interactive psql as the README's user on the README's port; the test's tunnel listens on a free \
             port in front of a PostgreSQL without that user. `apply`'s Connect line is compared above, and \
             apply.rs runs `select 1` through a tunnel",
        ),
    },
    Handled {
        doc: "README.md",
        command: "declastruct validate",
        how: run(Scenario::BadManifest, 1),
    },
    Handled {
        doc: "README.md",
        command: "cargo run --example sdk_tunnel",
        how: How::AllowListed(
            "builds and runs the SDK example; sdk.rs runs it against moto and PostgreSQL",
        ),
    },
    // docs/ci.md, the plan and apply jobs
    Handled {
        doc: "docs/ci.md",
        command: "cargo install --locked --path crates/declastruct-cli",
        how: How::AllowListed(
            "builds and installs into ~/.cargo/bin; the test runs the binary cargo built for it",
        ),
    },
    Handled {
        doc: "docs/ci.md",
        command: "declastruct validate",
        how: run(Scenario::Ci, 0),
    },
    Handled {
        doc: "docs/ci.md",
        command: "number=$(gh api \"repos/example/declastruct/commits/0123456789abcdef0123456789abcdef01234567/pulls\" --jq '.[0].number')",
        how: How::AllowListed(
            "asks GitHub's API which pull request a pushed commit merged; needs a repository on GitHub and its token",
        ),
    },
    Handled {
        doc: "docs/ci.md",
        command: "declastruct plan --detailed-exitcode --out plan.json",
        how: run_and_check(Scenario::Ci, 0, |ran| {
            let outputs = ran.file("github_output");
            if !outputs.contains("exitcode=2") {
                return Err(format!(
                    "$GITHUB_OUTPUT should say exitcode=2 (changes): {outputs:?}"
                ));
            }
            json_file(ran, "plan.json").map(|_| ())
        }),
    },
    Handled {
        doc: "docs/ci.md",
        command: "echo \"::notice::declastruct plan has changes; review plan.json\"",
        how: How::AllowListed("a GitHub Actions annotation: no declastruct in it"),
    },
    Handled {
        doc: "docs/ci.md",
        command: "declastruct show plan.json",
        how: run_and_check(Scenario::Ci, 0, |ran| {
            expect_contains(&ran.stdout, "~ UPDATE  DeclaredAwsVpcTunnel")
        }),
    },
    Handled {
        doc: "docs/ci.md",
        command: "declastruct apply --plan plan.json --json > apply.json",
        how: run_and_check(Scenario::Ci, 0, |ran| {
            let document = json_file(ran, "apply.json")?;
            if document["summary"]["failed"] != 0 || document["summary"]["applied"] == 0 {
                return Err(format!("apply.json: {document}"));
            }
            Ok(())
        }),
    },
    // docs/ci.md, the matrix (`${{ matrix.env }}` is `dev`)
    Handled {
        doc: "docs/ci.md",
        command: "declastruct apply --auto-approve --target vpc-main-bastion",
        // the CI scenario's bastion has no idleStop: nothing to stop, and exit 0
        how: run_and_check(Scenario::Ci, 0, |ran| {
            expect_contains(&ran.stdout, "Plan for declastruct.yml")
        }),
    },
    Handled {
        doc: "docs/ci.md",
        command: "declastruct validate --var env=dev",
        how: run(Scenario::Environments, 0),
    },
    Handled {
        doc: "docs/ci.md",
        command: "declastruct plan --var env=dev --out plan-dev.json",
        how: run_and_check(Scenario::Environments, 0, |ran| {
            let document = json_file(ran, "plan-dev.json")?;
            if document["wish"]["vars"]["ENV"] != "dev" {
                return Err(format!("plan-dev.json should record ENV=dev: {document}"));
            }
            Ok(())
        }),
    },
    Handled {
        doc: "docs/ci.md",
        command: "declastruct apply --var env=dev --plan plan-dev.json",
        how: run_and_check(Scenario::Environments, 0, |ran| {
            expect_contains(&ran.stdout, "Apply complete: ")
        }),
    },
    // docs/manifest.md
    Handled {
        doc: "docs/manifest.md",
        command: "declastruct plan",
        how: run_and_check(Scenario::Environments, 0, |ran| {
            expect_contains(&ran.stdout, "ENV=dev")
        }),
    },
    Handled {
        doc: "docs/manifest.md",
        command: "declastruct plan --var env=prod",
        how: run_and_check(Scenario::Environments, 0, |ran| {
            expect_contains(&ran.stdout, "ENV=prod")?;
            expect_contains(&ran.stdout, "appdb-prod")
        }),
    },
    Handled {
        doc: "docs/manifest.md",
        command: "declastruct plan --var-file prod.env",
        how: run_and_check(Scenario::Environments, 0, |ran| {
            expect_contains(&ran.stdout, "ENV=prod")?;
            expect_contains(&ran.stdout, "appdb-prod")
        }),
    },
    Handled {
        doc: "docs/manifest.md",
        command: "declastruct plan --var-file prod.env --var env=dev",
        how: run_and_check(Scenario::Environments, 0, |ran| {
            expect_contains(&ran.stdout, "vars: ENV=dev,")
        }),
    },
    Handled {
        doc: "docs/manifest.md",
        command: "ENV=prod declastruct plan",
        how: run_and_check(Scenario::Environments, 0, |ran| {
            expect_contains(&ran.stdout, "ENV=prod")?;
            expect_contains(&ran.stdout, "appdb-prod")
        }),
    },
    // docs/performance.md
    Handled {
        doc: "docs/performance.md",
        command: "scripts/bench",
        how: How::AllowListed(
            "builds release binaries and measures for minutes; run by hand to refresh docs/performance.md",
        ),
    },
    Handled {
        doc: "docs/performance.md",
        command: "scripts/bench-transports",
        how: How::AllowListed(
            "builds release binaries and moves 50 MB per client and mode through the simulator for minutes; run by hand to refresh docs/performance.md",
        ),
    },
    Handled {
        doc: "docs/performance.md",
        command: "scripts/bench-transports --bridge-forward PATH",
        how: How::AllowListed(
            "builds release binaries and moves 50 MB per client and mode through the simulator for minutes; run by hand to refresh docs/performance.md",
        ),
    },
    Handled {
        doc: "docs/performance.md",
        command: "scripts/bench-native-supervisor",
        how: How::AllowListed(
            "builds the release binary and holds a tunnel open for over a minute to measure its memory; run by hand to refresh docs/performance.md",
        ),
    },
    Handled {
        doc: "docs/performance.md",
        command: "scripts/bench-transports --megabytes 5 --modes mux --opens 3 --clients native,aws-cli",
        how: How::AllowListed(
            "builds release binaries and moves 50 MB per client and mode through the simulator for minutes; run by hand to refresh docs/performance.md",
        ),
    },
];

fn expect_contains(text: &str, needle: &str) -> Result<(), String> {
    if text.contains(needle) {
        Ok(())
    } else {
        Err(format!("expected {needle:?} in:\n{text}"))
    }
}

fn json_file(ran: &Ran, name: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(&ran.file(name)).map_err(|error| format!("{name} is not JSON: {error}"))
}

// ---------------------------------------------------------------------------------------------------------------
// reading the docs

fn documents() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_string()];
    let mut pages: Vec<String> = std::fs::read_dir(workspace_root().join("docs"))
        .expect("docs/")
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    pages.sort();
    names.extend(pages);
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(workspace_root().join(&name))
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            (name, text)
        })
        .collect()
}

/// a fenced block: its info string, the line of its first content line, and its lines without the fence's
/// indentation
struct Fenced {
    info: String,
    first_line: usize,
    lines: Vec<String>,
}

fn fenced_blocks(text: &str) -> Vec<Fenced> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let mut content = Vec::new();
        for (_, inner) in lines.by_ref() {
            if inner.trim() == "```" {
                break;
            }
            let cut = inner.len() - inner.trim_start().len();
            content.push(inner[cut.min(indent)..].to_string());
        }
        blocks.push(Fenced {
            info: info.trim().to_string(),
            first_line: index + 2,
            lines: content,
        });
    }
    blocks
}

/// `text` without a trailing `# comment` (a `#` after a space, outside quotes)
fn without_comment(text: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (position, character) in text.char_indices() {
        match (quote, character) {
            (None, '\'' | '"') => quote = Some(character),
            (Some(open), _) if open == character => quote = None,
            (None, '#') if previous.is_whitespace() => return text[..position].trim_end(),
            _ => {}
        }
        previous = character;
    }
    text.trim_end()
}

/// whether a shell line runs declastruct: as the command of one of its parts (`|`, `;`, `&&`, `$(`), after any
/// `NAME=value` assignments or `eval`/`exec`
fn invokes_declastruct(line: &str) -> bool {
    let line = without_comment(line);
    line.split(['|', ';', '&', '`'])
        .flat_map(|part| part.split("$("))
        .any(|part| {
            part.split_whitespace()
                .map(|word| word.trim_start_matches(['"', '\'', '(']))
                .find(|word| {
                    !(word.is_empty()
                        || *word == "eval"
                        || *word == "exec"
                        || (word.contains('=') && !word.starts_with('-')))
                })
                == Some("declastruct")
        })
}

/// GitHub Actions expressions in a run step, filled with the first value their matrix names
fn fill_placeholders(text: &str) -> Result<String, String> {
    let filled = text
        .replace("${{ matrix.env }}", "dev")
        .replace("${{ github.repository }}", "example/declastruct")
        .replace(
            "${{ github.sha }}",
            "0123456789abcdef0123456789abcdef01234567",
        );
    if filled.contains("${{") {
        return Err(format!(
            "an unknown `${{{{ ... }}}}` placeholder in {text:?}: give it a value in fill_placeholders"
        ));
    }
    Ok(filled)
}

fn console_commands(doc: &str, block: &Fenced, problems: &mut Vec<String>) -> Vec<DocCommand> {
    let mut commands: Vec<DocCommand> = Vec::new();
    for (offset, line) in block.lines.iter().enumerate() {
        if let Some(command) = line.strip_prefix("$ ") {
            commands.push(DocCommand {
                doc: doc.to_string(),
                line: block.first_line + offset,
                block: Block::Console,
                command: command.trim().to_string(),
                script: command.trim().to_string(),
                output: Vec::new(),
            });
        } else if let Some(current) = commands.last_mut() {
            current.output.push(line.clone());
        } else if !line.trim().is_empty() {
            problems.push(format!(
                "{doc}:{}: a console block's first line must be a `$ ` command",
                block.first_line + offset
            ));
        }
    }
    for command in &mut commands {
        while command
            .output
            .last()
            .is_some_and(|line| line.trim().is_empty())
        {
            command.output.pop();
        }
    }
    commands
}

fn shell_commands(doc: &str, block: &Fenced) -> Vec<DocCommand> {
    let mut commands = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (offset, line) in block.lines.iter().enumerate() {
        if pending.is_empty() {
            start = block.first_line + offset;
        }
        let line = without_comment(line);
        if let Some(continued) = line.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let command = pending.split_whitespace().collect::<Vec<_>>().join(" ");
        pending.clear();
        if !command.is_empty() {
            commands.push(DocCommand {
                doc: doc.to_string(),
                line: start,
                block: Block::Shell,
                command: command.clone(),
                script: command,
                output: Vec::new(),
            });
        }
    }
    commands
}

/// the `run:` steps of a workflow, and comments that name a declastruct command ("the apply job ... runs:")
fn ci_commands(doc: &str, block: &Fenced, problems: &mut Vec<String>) -> Vec<DocCommand> {
    let mut commands = Vec::new();
    let mut index = 0;
    while index < block.lines.len() {
        let line = &block.lines[index];
        let trimmed = line.trim_start();
        let at = block.first_line + index;
        index += 1;
        if let Some(comment) = trimmed.strip_prefix('#') {
            if invokes_declastruct(comment.trim()) {
                match fill_placeholders(comment.trim()) {
                    Ok(command) => commands.push(DocCommand {
                        doc: doc.to_string(),
                        line: at,
                        block: Block::CiStep,
                        command: command.clone(),
                        script: command,
                        output: Vec::new(),
                    }),
                    Err(problem) => problems.push(format!("{doc}:{at}: {problem}")),
                }
            }
            continue;
        }
        let key = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let Some(value) = key.strip_prefix("run:") else {
            continue;
        };
        let key_indent = line.len() - key.len();
        let value = value.trim();
        let script = if value.starts_with('|') || value.starts_with('>') {
            let mut lines = Vec::new();
            while index < block.lines.len() {
                let next = &block.lines[index];
                let indent = next.len() - next.trim_start().len();
                if !next.trim().is_empty() && indent <= key_indent {
                    break;
                }
                lines.push(next.trim().to_string());
                index += 1;
            }
            lines.join("\n")
        } else {
            value.to_string()
        };
        let script = match fill_placeholders(&script) {
            Ok(script) => script,
            Err(problem) => {
                problems.push(format!("{doc}:{at}: {problem}"));
                continue;
            }
        };
        let command = script
            .lines()
            .find(|line| invokes_declastruct(line))
            .or_else(|| script.lines().find(|line| !line.trim().is_empty()))
            .unwrap_or_default()
            .trim()
            .to_string();
        commands.push(DocCommand {
            doc: doc.to_string(),
            line: at,
            block: Block::CiStep,
            command,
            script,
            output: Vec::new(),
        });
    }
    commands
}

/// .what = every command line of README.md and docs/*.md, and the problems found while reading them
/// .why = what the tests below run
fn doc_commands() -> (Vec<DocCommand>, Vec<String>) {
    let mut commands = Vec::new();
    let mut problems = Vec::new();
    for (doc, text) in documents() {
        for block in fenced_blocks(&text) {
            let language = block.info.split_whitespace().next().unwrap_or("");
            match language {
                "console" => commands.extend(console_commands(&doc, &block, &mut problems)),
                "sh" | "bash" | "shell" => commands.extend(shell_commands(&doc, &block)),
                "yaml" | "yml" if doc == "docs/ci.md" => {
                    commands.extend(ci_commands(&doc, &block, &mut problems));
                }
                _ => {
                    // a command line where the test does not look for one would go unchecked
                    for (offset, line) in block.lines.iter().enumerate() {
                        let text = line.trim_start();
                        let text = text
                            .strip_prefix("$ ")
                            .or_else(|| text.strip_prefix('#'))
                            .unwrap_or(text);
                        if invokes_declastruct(text.trim()) {
                            problems.push(format!(
                                "{doc}:{}: a declastruct command in a ```{} block, where this test does not run \
                                 it: put it in a ```console or ```sh block",
                                block.first_line + offset,
                                block.info
                            ));
                        }
                    }
                }
            }
        }
    }
    (commands, problems)
}

fn handling(command: &DocCommand) -> Option<&'static Handled> {
    HANDLED
        .iter()
        .find(|handled| handled.doc == command.doc && handled.command == command.command)
}

/// every command line of the docs is handled, and every entry of `HANDLED` still names one
#[test]
fn every_doc_command_line_is_run_or_allow_listed() {
    let (commands, mut problems) = doc_commands();
    assert!(
        commands.len() >= 15,
        "the docs' command lines were not found: {commands:#?}"
    );
    for command in &commands {
        if handling(command).is_none() {
            problems.push(format!(
                "{}: `{}` is a new command line: add it to HANDLED in doc_commands.rs, to be run (with the \
                 scenario it needs and the exit it should have) or allow-listed with the reason",
                command.at(),
                command.command
            ));
        }
        if let Some(Handled {
            how: How::AllowListed(reason),
            ..
        }) = handling(command)
        {
            if invokes_declastruct(&command.script) {
                problems.push(format!(
                    "{}: `{}` runs declastruct: run it instead of allow-listing it",
                    command.at(),
                    command.command
                ));
            }
            if reason.split_whitespace().count() < 5 {
                problems.push(format!(
                    "{}: `{}` is allow-listed without a reason",
                    command.at(),
                    command.command
                ));
            }
        }
    }
    for handled in HANDLED {
        let found = commands
            .iter()
            .any(|command| command.doc == handled.doc && command.command == handled.command);
        if !found {
            problems.push(format!(
                "HANDLED names `{}` in {}, which is no longer there: remove or update the entry",
                handled.command, handled.doc
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------------------------
// running them

/// .what = what one command line did
/// .why = what the checks read
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// the terminal's lines, for a command run on one
    screen: Vec<String>,
    folder: PathBuf,
}

impl Ran {
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.folder.join(name)).unwrap_or_default()
    }

    fn shown(&self) -> String {
        if self.screen.is_empty() {
            format!(
                "exit {:?}\nstdout:\n{}\nstderr:\n{}",
                self.code, self.stdout, self.stderr
            )
        } else {
            format!(
                "exit {:?}\nterminal:\n{}",
                self.code,
                self.screen.join("\n")
            )
        }
    }
}

/// a scenario's sandbox, and the free ports that stand for the documented one in its output
struct Prepared {
    sandbox: Sandbox,
    ports: Vec<u16>,
}

/// moto with the bastions and clusters every scenario needs, and the PostgreSQL behind every cluster
struct DocWorld {
    moto: Moto,
    _postgres: Postgres,
    sim: declastruct_test_support::ssm_sim::SsmSimulator,
}

impl DocWorld {
    fn start() -> Self {
        let postgres = std::thread::spawn(Postgres::start);
        let moto = Moto::start();
        moto.seed_bastion(REGION, "vpc-main-bastion", false);
        let mut clusters = vec![moto.seed_cluster(REGION, "ahbodedb")];
        for env in ["dev", "prod"] {
            moto.seed_bastion(REGION, &format!("{env}-bastion"), true);
            clusters.push(moto.seed_cluster(REGION, &format!("appdb-{env}")));
        }
        let postgres = postgres.join().expect("PostgreSQL started");
        let routes: Vec<(String, u16)> = clusters
            .iter()
            .map(|(writer, port)| (format!("{writer}:{port}"), postgres.port))
            .collect();
        let routes: Vec<(&str, u16)> = routes
            .iter()
            .map(|(destination, port)| (destination.as_str(), *port))
            .collect();
        let sim = crate::support::simulator(&moto, &routes);
        Self {
            moto,
            _postgres: postgres,
            sim,
        }
    }

    /// a sandbox against this moto whose sessions reach the PostgreSQL
    fn sandbox(&self) -> Sandbox {
        let mut sandbox = Sandbox::new(Some(&self.moto));
        sandbox.use_real_chain(&self.sim.endpoint());
        sandbox
    }
}

/// the README's first manifest, with its port replaced
fn readme_manifest(port: &str) -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let block = fenced_blocks(&readme)
        .into_iter()
        .find(|block| block.info == "yaml")
        .expect("the README's manifest");
    let text = format!("{}\n", block.lines.join("\n"));
    let documented = format!("port: {DOCUMENTED_PORT} ");
    assert!(
        text.contains(&documented),
        "the README's manifest declares `{documented}`"
    );
    text.replace(&documented, &format!("port: {port} "))
}

fn example(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("examples").join(name)).expect("the example")
}

fn prepare(scenario: Scenario, world: &DocWorld) -> Prepared {
    match scenario {
        Scenario::Readme => {
            let port = free_port();
            let sandbox = world.sandbox();
            sandbox.write("declastruct.yml", &readme_manifest(&port.to_string()));
            Prepared {
                sandbox,
                ports: vec![port],
            }
        }
        Scenario::BadManifest => {
            let sandbox = Sandbox::new(None);
            sandbox.write("declastruct.yml", &readme_manifest("7775432"));
            Prepared {
                sandbox,
                ports: Vec::new(),
            }
        }
        Scenario::Ci => {
            let port = free_port();
            let mut sandbox = world.sandbox();
            let manifest = example("basic.yml").replace(
                &format!("port: {DOCUMENTED_PORT}\n"),
                &format!("port: {port}\n"),
            );
            sandbox.write("declastruct.yml", &manifest);
            let outputs = sandbox.path("github_output");
            sandbox.set_env("GITHUB_OUTPUT", &outputs.display().to_string());
            Prepared {
                sandbox,
                ports: vec![port],
            }
        }
        Scenario::Environments => {
            let port = free_port();
            let mut sandbox = world.sandbox();
            // credentials only in the profiles the manifest names, as on a developer's machine
            for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                sandbox.remove_env(key);
            }
            let aws = sandbox.path(".aws");
            std::fs::create_dir_all(&aws).expect("~/.aws");
            std::fs::write(
                aws.join("credentials"),
                "[dev]\naws_access_key_id = testing\naws_secret_access_key = testing\n\
                 [prod]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
            )
            .expect("credentials");
            sandbox.write("declastruct.yml", &example("environments.yml"));
            sandbox.write("prod.env", &example("prod.env"));
            // the manifest's own knob for its local port: never the documented one, which may be taken here
            sandbox.set_env("PORT", &port.to_string());
            Prepared {
                sandbox,
                ports: vec![port],
            }
        }
    }
}

/// the sandbox's environment, with `declastruct` on PATH as the binary under test
fn shell_environment(sandbox: &Sandbox) -> Vec<(OsString, OsString)> {
    let bin = sandbox.path("bin");
    if !bin.exists() {
        std::fs::create_dir_all(&bin).expect("bin folder");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_declastruct"), bin.join("declastruct"))
            .expect("declastruct on PATH");
    }
    let base = sandbox.command(&[]);
    let mut environment: Vec<(OsString, OsString)> = base
        .get_envs()
        .filter_map(|(key, value)| value.map(|value| (key.to_owned(), value.to_owned())))
        .filter(|(key, _)| key != "PATH")
        .collect();
    let mut path = OsString::from(bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    environment.push(("PATH".into(), path));
    environment
}

/// runs `script` with bash as GitHub Actions runs a step (`bash --noprofile --norc -eo pipefail`), stdin closed
fn run_in_bash(sandbox: &Sandbox, script: &str) -> Ran {
    let output = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .current_dir(sandbox.dir.path())
        .env_clear()
        .envs(shell_environment(sandbox))
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        screen: Vec::new(),
        folder: sandbox.dir.path().to_path_buf(),
    }
}

/// runs `command` on a pseudo-terminal (120 columns) as a console block shows it, without colour (the docs show
/// none); when `answer` is given, types it once the prompt `Enter a value:` is on the screen
fn run_on_terminal(sandbox: &Sandbox, command: &str, answer: Option<&str>) -> Ran {
    let script = format!("stty cols 120 rows 50; {command}");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(
            "import os, pty, sys; status = pty.spawn(sys.argv[1:]); \
             sys.exit(os.waitstatus_to_exitcode(status))",
        )
        .args(["bash", "--noprofile", "--norc", "-c", &script])
        .current_dir(sandbox.dir.path())
        .env_clear()
        .envs(shell_environment(sandbox))
        .env("TERM", "xterm-256color")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 pty");
    let screen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let reader = {
        let screen = Arc::clone(&screen);
        let mut stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut buffer = [0_u8; 4096];
            while let Ok(count) = stdout.read(&mut buffer) {
                if count == 0 {
                    break;
                }
                screen
                    .lock()
                    .expect("screen")
                    .extend_from_slice(&buffer[..count]);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut stdin = child.stdin.take();
    if let Some(answer) = answer {
        while Instant::now() < deadline {
            let shown = String::from_utf8_lossy(&screen.lock().expect("screen")).into_owned();
            if shown.contains("Enter a value:") {
                break;
            }
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(input) = stdin.as_mut() {
            let _ = input.write_all(format!("{answer}\n").as_bytes());
            let _ = input.flush();
        }
    }
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let _ = reader.join();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let bytes = screen.lock().expect("screen").clone();
    Ran {
        code: status.and_then(|status| status.code()),
        stdout: String::new(),
        stderr,
        screen: terminal_lines(&bytes),
        folder: sandbox.dir.path().to_path_buf(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// comparing

/// `length` when the first `length` bytes of `text` end a word (no letter, digit or `_` follows)
fn whole_word(text: &str, length: usize) -> Option<usize> {
    let after = text[length..].chars().next();
    (!after.is_some_and(|character| character.is_ascii_alphanumeric() || character == '_'))
        .then_some(length)
}

fn digits(text: &str) -> usize {
    text.bytes().take_while(u8::is_ascii_digit).count()
}

/// an instance id: `i-` and hexadecimal digits
fn instance_id(text: &str) -> Option<usize> {
    let rest = text.strip_prefix("i-")?;
    let length = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
    (length >= 3).then_some(())?;
    whole_word(text, 2 + length)
}

/// the generated part of an RDS endpoint's name: `cluster-` (or `cluster-ro-`) and 12 letters or digits
fn cluster_id(text: &str) -> Option<usize> {
    let prefix = ["cluster-ro-", "cluster-"]
        .into_iter()
        .find(|prefix| text.starts_with(prefix))?;
    let length = text[prefix.len()..]
        .bytes()
        .take_while(u8::is_ascii_alphanumeric)
        .count();
    (length == 12).then_some(())?;
    whole_word(text, prefix.len() + length)
}

/// a tunnel identity (16 hexadecimal digits) or a sha256 (64)
fn hash(text: &str) -> Option<usize> {
    let length = text
        .bytes()
        .take_while(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte))
        .count();
    [16, 64].contains(&length).then_some(())?;
    whole_word(text, length)
}

/// `31.4 s`, `2 s`, `120 ms`, `0.5s`
fn duration(text: &str) -> Option<usize> {
    let mut length = digits(text);
    (length > 0).then_some(())?;
    if text[length..].starts_with('.') && digits(&text[length + 1..]) > 0 {
        length += 1 + digits(&text[length + 1..]);
    }
    if text[length..].starts_with(' ') {
        length += 1;
    }
    let unit = ["ms", "s"]
        .into_iter()
        .find(|unit| text[length..].starts_with(unit))?;
    whole_word(text, length + unit.len())
}

/// `2026-11-27T03:00:00Z`, with or without fractions of a second
fn timestamp(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    (bytes.len() >= shape.len()).then_some(())?;
    let fits = shape.iter().zip(bytes).all(|(expected, byte)| {
        if *expected == b'd' {
            byte.is_ascii_digit()
        } else {
            expected == byte
        }
    });
    fits.then_some(())?;
    let mut length = shape.len();
    if bytes.get(length) == Some(&b'.') {
        length += 1 + digits(&text[length + 1..]);
    }
    (bytes.get(length) == Some(&b'Z')).then_some(length + 1)
}

/// `pid 12345`
fn pid(text: &str) -> Option<usize> {
    let rest = text.strip_prefix("pid ")?;
    let length = digits(rest);
    (length > 0).then_some(())?;
    whole_word(text, 4 + length)
}

/// `text` with every whole-word match of `pattern` replaced by `replacement`
fn replace_words(text: &str, pattern: impl Fn(&str) -> Option<usize>, replacement: &str) -> String {
    let mut result = String::new();
    let mut rest = text;
    let mut previous: Option<char> = None;
    while let Some(character) = rest.chars().next() {
        let at_word_start =
            !previous.is_some_and(|before| before.is_ascii_alphanumeric() || before == '_');
        if let Some(length) = at_word_start.then(|| pattern(rest)).flatten() {
            result.push_str(replacement);
            previous = rest[..length].chars().last();
            rest = &rest[length..];
            continue;
        }
        result.push(character);
        previous = Some(character);
        rest = &rest[character.len_utf8()..];
    }
    result
}

/// .what = a line with what legitimately changes from run to run replaced by a placeholder
/// .why = the documented and the real output are compared in their shape, not in their ids and times
fn normalise(line: &str) -> String {
    let mut line = line.trim_end().to_string();
    for (pattern, replacement) in [
        (timestamp as fn(&str) -> Option<usize>, "[TIME]"),
        (instance_id, "i-[ID]"),
        (cluster_id, "cluster-[ID]"),
        (hash, "[HASH]"),
        (duration, "[DURATION]"),
        (pid, "pid [PID]"),
    ] {
        line = replace_words(&line, pattern, replacement);
    }
    line
}

/// the real output with the scenario's own ports shown as the documented one, and its folder as `[SANDBOX]`
fn as_documented(line: &str, ports: &[u16], folder: &Path) -> String {
    let mut line = line.replace(&folder.display().to_string(), "[SANDBOX]");
    for port in ports {
        let own = port.to_string();
        line = replace_words(
            &line,
            |text| {
                text.starts_with(&own)
                    .then(|| whole_word(text, own.len()))
                    .flatten()
            },
            &DOCUMENTED_PORT.to_string(),
        );
    }
    line
}

/// whether `actual` has the documented lines' shape: equal lines, where a documented `...` stands for any
/// number of lines
fn shape_matches(documented: &[String], actual: &[String]) -> bool {
    match documented.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=actual.len()).any(|skipped| shape_matches(rest, &actual[skipped..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, others)| line == first && shape_matches(rest, others)),
    }
}

/// a clap usage error: the command line does not parse
fn is_usage_error(ran: &Ran) -> bool {
    let text = format!("{}{}{}", ran.stdout, ran.stderr, ran.screen.join("\n"));
    text.contains("For more information, try '--help'")
        || text.contains("\nUsage: declastruct")
        || text.starts_with("error: unexpected argument")
}

/// runs `command` as `how` says and returns what differs from the doc
fn check(
    command: &DocCommand,
    prepared: &Prepared,
    exit: i32,
    extra: Option<Check>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let ran = match command.block {
        Block::Console => {
            let answer = command.output.iter().find_map(|line| {
                line.split_once("Enter a value: ")
                    .map(|(_, answer)| answer.trim())
            });
            run_on_terminal(&prepared.sandbox, &command.script, answer)
        }
        Block::Shell | Block::CiStep => run_in_bash(&prepared.sandbox, &command.script),
    };
    let at = format!("{}: `{}`", command.at(), command.command);
    if is_usage_error(&ran) {
        problems.push(format!("{at} does not parse:\n{}", ran.shown()));
        return problems;
    }
    if ran.code != Some(exit) {
        problems.push(format!(
            "{at} should exit {exit}, as the doc implies:\n{}",
            ran.shown()
        ));
    }
    if command.block == Block::Console {
        let documented: Vec<String> = command.output.iter().map(|line| normalise(line)).collect();
        let actual: Vec<String> = ran
            .screen
            .iter()
            .map(|line| {
                normalise(&as_documented(
                    line,
                    &prepared.ports,
                    prepared.sandbox.dir.path(),
                ))
            })
            .collect();
        if !shape_matches(&documented, &actual) {
            problems.push(format!(
                "{at}: the output differs from the doc's (both normalised; `...` stands for any lines)\n\
                 --- documented\n{}\n--- printed\n{}\n---",
                documented.join("\n"),
                actual.join("\n")
            ));
        }
    }
    if let Some(Err(problem)) = extra.map(|extra| extra(&ran)) {
        problems.push(format!("{at}: {problem}\n{}", ran.shown()));
    }
    problems
}

/// every command line of the docs that runs declastruct, run in its scenario, in the docs' order
#[test]
fn doc_command_lines_do_what_the_docs_show() {
    let started = Instant::now();
    let (commands, reading_problems) = doc_commands();
    assert!(
        reading_problems.is_empty(),
        "{}",
        reading_problems.join("\n")
    );
    let world = DocWorld::start();
    let mut prepared: Vec<(Scenario, Prepared)> = Vec::new();
    let mut problems = Vec::new();
    let mut ran = 0;
    for command in &commands {
        let Some(Handled {
            how:
                How::Run {
                    scenario,
                    exit,
                    check: extra,
                },
            ..
        }) = handling(command)
        else {
            continue;
        };
        if !prepared.iter().any(|(existing, _)| existing == scenario) {
            prepared.push((*scenario, prepare(*scenario, &world)));
        }
        let (_, sandbox) = prepared
            .iter()
            .find(|(existing, _)| existing == scenario)
            .expect("prepared");
        problems.extend(check(command, sandbox, *exit, *extra));
        ran += 1;
    }
    assert!(ran >= 10, "only {ran} command lines ran");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the doc commands took {:?}",
        started.elapsed()
    );
}

/// the inline code spans of `text` outside fenced blocks, with the line each is on; `\|` (a table's escaped bar)
/// read as `|`
fn inline_spans(text: &str) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(span), Some(_)) = (parts.next(), parts.next()) {
            spans.push((index + 1, span.replace("\\|", "|")));
        }
    }
    spans
}

/// .what = the command and the options an inline span names: `declastruct plan --json ...` (also inside
/// `eval "$(...)"`), or `plan --json` (a command's name and at least one option); `None` for any other span
/// .why = prose and tables name commands and options that must exist
fn named_command(span: &str) -> Option<(String, Vec<String>)> {
    let invoked = span
        .strip_prefix("declastruct ")
        .or_else(|| span.split_once("$(declastruct ").map(|(_, rest)| rest));
    let words: Vec<&str> = match invoked {
        Some(rest) => rest.split_whitespace().collect(),
        None => {
            let words: Vec<&str> = span.split_whitespace().collect();
            if !words.iter().skip(1).any(|word| word.starts_with('-')) {
                return None;
            }
            words
        }
    };
    let (command, rest) = words.split_first()?;
    let options = rest
        .iter()
        .take_while(|word| **word != "--")
        .map(|word| word.trim_matches(|character| matches!(character, '[' | ']' | '(' | ')' | '"')))
        .map(|word| word.trim_end_matches("..."))
        .filter(|word| word.starts_with('-') && word.len() > 1)
        .map(|word| word.split('=').next().unwrap_or(word).to_string())
        .collect();
    Some(((*command).to_string(), options))
}

/// every `declastruct COMMAND --option` that README.md and docs/ name in their prose and tables is a command of
/// the binary, and each option is one `declastruct COMMAND --help` lists
#[test]
fn inline_commands_name_real_commands_and_options() {
    let sandbox = Sandbox::new(None);
    let help = |args: &[&str]| -> String {
        let output = sandbox.run(args);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let top = help(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(commands.len() >= 10, "the commands of --help: {top}");
    let mut problems = Vec::new();
    let mut checked = 0;
    for (doc, text) in documents() {
        for (line, span) in inline_spans(&text) {
            let Some((command, options)) = named_command(&span) else {
                continue;
            };
            let explicit = span.starts_with("declastruct ") || span.contains("$(declastruct ");
            if !commands.contains(&command) {
                if explicit {
                    problems.push(format!(
                        "{doc}:{line}: `{span}` names `{command}`, which is no command of declastruct"
                    ));
                }
                continue;
            }
            let listed = help(&[command.as_str(), "--help"]);
            for option in options {
                let known = listed.match_indices(&option).any(|(start, _)| {
                    let before = listed[..start].chars().next_back();
                    let after = listed[start + option.len()..].chars().next();
                    before.is_some_and(char::is_whitespace)
                        && !after.is_some_and(|character| {
                            character.is_ascii_alphanumeric() || character == '-'
                        })
                });
                if !known {
                    problems.push(format!(
                        "{doc}:{line}: `{span}`: `declastruct {command} --help` lists no `{option}`"
                    ));
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} inline commands found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_normalisation_keeps_the_shape_and_hides_what_varies() {
    assert_eq!(
        normalise("UPDATE DeclaredAwsEc2Instance vpc-main-bastion: done after 31.4 s"),
        "UPDATE DeclaredAwsEc2Instance vpc-main-bastion: done after [DURATION]"
    );
    assert_eq!(
        normalise(
            "  localhost:7775 -> ahbodedb (writer) via i-0abc1234: psql -h 127.0.0.1 -p 7775"
        ),
        "  localhost:7775 -> ahbodedb (writer) via i-[ID]: psql -h 127.0.0.1 -p 7775"
    );
    assert_eq!(
        normalise("    ,-[declastruct.yml:11:36]"),
        "    ,-[declastruct.yml:11:36]"
    );
    assert_eq!(
        normalise("Apply complete: 2 applied, 1 unchanged, 0 failed, 0 skipped."),
        "Apply complete: 2 applied, 1 unchanged, 0 failed, 0 skipped."
    );
    assert_eq!(
        normalise("at 2026-11-27T03:00:00Z, 0123456789abcdef"),
        "at [TIME], [HASH]"
    );
    assert_eq!(
        as_documented(
            "port: 41234, 141234, 412345",
            &[41234],
            Path::new("/nowhere")
        ),
        "port: 7775, 141234, 412345"
    );
    let documented = ["a", "...", "c"].map(String::from);
    assert!(shape_matches(&documented, &["a", "c"].map(String::from)));
    assert!(shape_matches(
        &documented,
        &["a", "b", "b", "c"].map(String::from)
    ));
    assert!(!shape_matches(&documented, &["a", "b"].map(String::from)));
    assert_eq!(
        terminal_lines(b"plan\r\n\x1b[2K\rspinner\r\x1b[2Kdone\r\n"),
        vec!["plan", "done"]
    );
    assert_eq!(
        named_command("declastruct env ADDRESS [--format shell|dotenv|json]"),
        Some(("env".to_string(), vec!["--format".to_string()]))
    );
    assert_eq!(
        named_command("eval \"$(declastruct env ADDRESS)\""),
        Some(("env".to_string(), Vec::new()))
    );
    assert_eq!(
        named_command("apply -f"),
        Some(("apply".to_string(), vec!["-f".to_string()]))
    );
    assert_eq!(
        named_command("in use by another declastruct tunnel (pid P)"),
        None
    );
    assert!(invokes_declastruct("ENV=prod declastruct plan"));
    assert!(invokes_declastruct("eval \"$(declastruct env db)\""));
    assert!(invokes_declastruct(
        "declastruct apply --plan plan.json --json > apply.json"
    ));
    assert!(!invokes_declastruct(
        "echo \"::notice::declastruct plan has changes\""
    ));
    assert!(!invokes_declastruct(
        "cargo install --path crates/declastruct-cli"
    ));
}
