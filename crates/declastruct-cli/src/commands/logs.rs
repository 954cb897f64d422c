use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

use declastruct_aws::ContextAwsApi;
use declastruct_manifest::kinds::record_address;
use declastruct_tunnel::{LOG_READ_LIMIT, TunnelFiles, open_for_reading, read_tail};

use crate::args::{Cli, LogsArgs};
use crate::commands::{EXIT_FAILURE, after_output, report};

/// .what = `declastruct logs ADDRESS [--follow]`: prints an open tunnel's log
/// .why = what the session said: connections, restarts, and why it failed
pub fn run(_cli: &Cli, args: &LogsArgs) -> ExitCode {
    let recorded = ContextAwsApi::default_tunnels_dir().and_then(|tunnels_dir| {
        Ok((
            TunnelFiles::recorded_in::<declastruct_aws::DeclaredAwsVpcTunnel>(&tunnels_dir)?,
            tunnels_dir,
        ))
    });
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
        let slug = record_address(&meta.tunnel).slug;
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
    // never through a link, never a device, and from the tail: a log is bounded, but what lies at its name may
    // not be
    let opened = open_for_reading(&log_path)
        .ok()
        .filter(|file| file.metadata().is_ok_and(|metadata| metadata.is_file()));
    let Some(mut file) = opened else {
        eprintln!(
            "error: cannot read {} (missing, a symbolic link, or not a regular file)",
            log_path.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    };
    let mut stdout = std::io::stdout();
    let mut buffer = read_tail(&log_path, LOG_READ_LIMIT);
    if let Ok(length) = file.metadata().map(|metadata| metadata.len()) {
        // the next read follows on from what the tail read
        buffer.truncate(
            usize::try_from(length)
                .unwrap_or(usize::MAX)
                .min(buffer.len()),
        );
        let _ = file.seek(SeekFrom::Start(length));
    }
    if let Err(error) = stdout.write_all(&buffer) {
        return after_output(Err(error), ExitCode::SUCCESS);
    }
    let _ = stdout.flush();
    if !args.follow {
        return ExitCode::SUCCESS;
    }
    let mut position = file.stream_position().unwrap_or(0);
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
            if (&mut file)
                .take(LOG_READ_LIMIT)
                .read_to_end(&mut more)
                .is_ok()
            {
                position += more.len() as u64;
                if let Err(error) = stdout.write_all(&more).and_then(|()| stdout.flush()) {
                    // a reader that went away ends `--follow` quietly; a full disk is said
                    return after_output(Err(error), ExitCode::SUCCESS);
                }
            }
        }
    }
}
