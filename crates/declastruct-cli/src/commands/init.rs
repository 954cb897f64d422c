use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use declastruct_manifest::manifest::{manifest_schema, parse_manifest};

use crate::args::InitArgs;
use crate::commands::{EXIT_FAILURE, report};

/// the manifest `init` writes, and the schema file beside it that its `$schema` line names
const MANIFEST: &str = "declastruct.yml";
const SCHEMA: &str = "declastruct.schema.json";

/// .what = `declastruct init`: writes a starter `declastruct.yml` (one bastion, one cluster, one tunnel) from the
/// flags, and `declastruct.schema.json` beside it for editors; refuses to overwrite a manifest
/// .why = the first minute without copying YAML from the docs; the `$schema` line names a file that is there,
/// wherever the manifest lives, so editors validate it outside this repository too
pub fn run(args: &InitArgs) -> ExitCode {
    let text = starter(&args.bastion, &args.cluster, args.port);
    // what init writes must validate: a flag's value that the manifest refuses is said before anything is written
    if let Err(errors) = parse_manifest(MANIFEST, text.clone()) {
        for error in errors {
            report(error);
        }
        eprintln!("error: declastruct init wrote nothing: fix the flags above and run it again");
        return ExitCode::from(EXIT_FAILURE);
    }
    let manifest = Path::new(MANIFEST);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(manifest)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {MANIFEST} exists here already: declastruct init never overwrites a manifest\n  help: edit it, or run init in another folder"
            );
            return ExitCode::from(EXIT_FAILURE);
        }
        Err(error) => {
            eprintln!("error: cannot write {MANIFEST}: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    // the schema is generated: written when absent, left alone when present (it may be the user's own copy)
    let schema_note = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(SCHEMA)
        .and_then(|mut file| file.write_all(manifest_schema().as_bytes()))
    {
        Ok(()) => format!(" and {SCHEMA} (its JSON Schema, for editors)"),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            format!("; {SCHEMA} was there already and is left as it is")
        }
        Err(error) => format!("; {SCHEMA} could not be written ({error})"),
    };
    println!(
        "wrote {MANIFEST}{schema_note}\n\nnext:\n  declastruct validate   # offline\n  declastruct plan       # what apply would do\n  declastruct apply      # open localhost:{} into {}",
        args.port, args.cluster
    );
    ExitCode::SUCCESS
}

/// the starter manifest
fn starter(bastion: &str, cluster: &str, port: u16) -> String {
    format!(
        "# yaml-language-server: $schema=./{SCHEMA}
# Written by `declastruct init`: one bastion, one cluster, one tunnel from localhost:{port} into the cluster's writer.
# `declastruct validate` checks it offline; `declastruct plan` shows what `declastruct apply` would do.
resources:
  - kind: DeclaredAwsEc2Instance
    exid: {bastion}   # the bastion's `exid` tag (or `instanceId: i-...` instead)
    status: running
  - kind: DeclaredAwsRdsCluster
    name: {cluster}   # the cluster identifier
  - kind: DeclaredAwsVpcTunnel
    via:
      mechanism: aws.ssm
      bastion: {{ exid: {bastion} }}
    into:
      cluster: {{ name: {cluster} }}
    from:
      host: localhost
      port: {port}
    status: OPEN
"
    )
}
