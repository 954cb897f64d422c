use std::process::ExitCode;

use declastruct_aws::VpcTunnelStatus;
use declastruct_manifest::kinds::Kind;
use declastruct_manifest::resources::Observed;

use crate::args::{Cli, EnvArgs, EnvFormat};
use crate::commands::{EXIT_FAILURE, after_output, observe_or_report, report, write_stdout};
use crate::connect::variables_of;

/// .what = `declastruct env ADDRESS [--format shell|dotenv|json]`: the connection variables of an open tunnel
/// .why = `eval "$(declastruct env db)"` or a `.env` file; the one place a secret is printed, because the user
/// asked for it
pub async fn run(cli: &Cli, args: &EnvArgs) -> ExitCode {
    let (_manifest, context, resources) =
        match observe_or_report(cli, &cli.manifest_path(), false).await {
            Ok(observed) => observed,
            Err(code) => return code,
        };
    let tunnels: Vec<_> = resources
        .iter()
        .filter_map(|resource| match resource {
            Observed::Tunnel(tunnel) => Some(tunnel.as_ref()),
            _ => None,
        })
        .collect();
    let Some(tunnel) = tunnels
        .iter()
        .find(|tunnel| tunnel.declaration.address().slug == args.address)
    else {
        let known: Vec<String> = tunnels
            .iter()
            .map(|tunnel| tunnel.declaration.address().slug)
            .collect();
        eprintln!(
            "error: no tunnel of this manifest has the address `{}`\n  help: its tunnels are: {}",
            args.address,
            known.join(", ")
        );
        return ExitCode::from(EXIT_FAILURE);
    };
    if tunnel.observation.tunnel.status != Some(VpcTunnelStatus::Open) {
        eprintln!(
            "error: the tunnel {} is not open\n  help: open it with `declastruct apply`, or run your command with `declastruct exec {} -- COMMAND`, which opens it for the command",
            args.address, args.address
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let variables = match variables_of(&[tunnel], &context).await {
        Ok(variables) => variables,
        Err(error) => {
            report(error);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let text = match args.format {
        EnvFormat::Shell => variables
            .iter()
            .map(|(name, value)| format!("export {name}='{}'\n", value.replace('\'', "'\\''")))
            .collect::<String>(),
        EnvFormat::Dotenv => variables
            .iter()
            .map(|(name, value)| {
                let value = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("{name}=\"{value}\"\n")
            })
            .collect::<String>(),
        EnvFormat::Json => {
            let object: serde_json::Map<String, serde_json::Value> = variables
                .into_iter()
                .map(|(name, value)| (name, serde_json::Value::String(value)))
                .collect();
            serde_json::to_string_pretty(&object).unwrap_or_default() + "\n"
        }
    };
    after_output(write_stdout(&text), ExitCode::SUCCESS)
}
