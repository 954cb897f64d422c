use declastruct_manifest::manifest::manifest_schema;
use std::process::ExitCode;

use crate::commands::{after_output, write_stdout};

/// .what = `declastruct schema`: prints the manifest's JSON Schema
/// .why = editors and CI validate manifests with it; identical to `schemas/declastruct.schema.json`
pub fn run() -> ExitCode {
    after_output(write_stdout(&manifest_schema()), ExitCode::SUCCESS)
}
