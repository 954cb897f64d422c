use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

use declastruct_aws::ContextAwsApi;
use declastruct_aws::internal::utils::TunnelFiles;

use crate::args::{Cli, LogsArgs};
use crate::commands::{EXIT_FAILURE, after_output, report};
use crate::manifest::tunnel_address;

/// .what = `declastruct logs ADDRESS [--follow]`: prints an open tunnel's log
/// .why = what the session said: connections, restarts, and why it failed
pub fn run(_cli: &Cli, args: &LogsArgs) -> ExitCode {
    let recorded = ContextAwsApi::default_state_dir()
        .map(|state| state.join("tunnels"))
        .and_then(|tunnels_dir| Ok((TunnelFiles::recorded_in(&tunnels_dir)?, tunnels_dir)));
    let (recorded, tunnels_dir) = match recorded {
        Ok(recorded) => recorded,
        Err(error) => {
            report(error);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut known = Vec::new();
    let mut found = None;
    for (files, meta) in recorded {
        let Ok(meta) = meta else {
            continue;
        };
        let slug = tunnel_address(&meta.tunnel.via, &meta.tunnel.into, &meta.tunnel.from).slug;
        if slug == args.address {
            found = Some(files.log_path());
        }
        known.push(slug);
    }
    let Some(log_path) = found else {
        eprintln!("error: no open tunnel has the address `{}`", args.address);
        if known.is_empty() {
            eprintln!(
                "  help: no tunnel is open in {}; `declastruct status` lists the declared ones",
                tunnels_dir.display()
            );
        } else {
            eprintln!("  help: open tunnels: {}", known.join(", "));
        }
        return ExitCode::from(EXIT_FAILURE);
    };
    let Ok(mut file) = std::fs::File::open(&log_path) else {
        eprintln!("error: cannot read {}", log_path.display());
        return ExitCode::from(EXIT_FAILURE);
    };
    let mut stdout = std::io::stdout();
    let mut buffer = Vec::new();
    if file.read_to_end(&mut buffer).is_err() {
        eprintln!("error: cannot read {}", log_path.display());
        return ExitCode::from(EXIT_FAILURE);
    }
    if let Err(error) = stdout.write_all(&buffer) {
        return after_output(Err(error), ExitCode::SUCCESS);
    }
    let _ = stdout.flush();
    if !args.follow {
        return ExitCode::SUCCESS;
    }
    let mut position = buffer.len() as u64;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(length) = std::fs::metadata(&log_path).map(|metadata| metadata.len()) else {
            // the tunnel was closed and its files removed
            return ExitCode::SUCCESS;
        };
        if length < position {
            position = 0;
        }
        if length > position && file.seek(SeekFrom::Start(position)).is_ok() {
            let mut more = Vec::new();
            if file.read_to_end(&mut more).is_ok() {
                position += more.len() as u64;
                if stdout
                    .write_all(&more)
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return ExitCode::SUCCESS;
                }
            }
        }
    }
}
