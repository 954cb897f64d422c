use std::io::Write;
use std::process::ExitCode;

use declastruct_aws::ContextAwsApi;
use declastruct_aws::internal::{VpcTunnelObservation, inspect_local_tunnel};
use declastruct_manifest::kinds::vpc_tunnel::tunnel_fields;
use declastruct_manifest::kinds::{
    ResourceDeclaration, VpcTunnelDeclaration, noun_of, record_address,
};
use declastruct_manifest::manifest::Manifest;
use declastruct_manifest::resources::{Observed, with_address};
use declastruct_tunnel::{TunnelFiles, TunnelId, TunnelProcesses};
use serde_json::{Value, json};

use crate::args::{Cli, StatusArgs};
use crate::commands::{
    EXIT_FAILURE, after_output, load_or_report, manifest_holder, observe_with_progress, report,
};
use crate::progress::Progress;

/// .what = `declastruct status`: the live state of every declared resource; tunnels with pid, port, uptime, health
/// .why = one look tells whether the database is reachable, and if not, why; what runs on this machine is shown
/// even when AWS cannot be read, with the AWS reads that failed named
pub async fn run(cli: &Cli, args: &StatusArgs) -> ExitCode {
    if args.all {
        return match all_rows().await {
            Ok(rows) => print(
                &rows,
                args.json,
                cli.quiet,
                args.wide,
                if args.wide {
                    &ALL_WIDE_COLUMNS
                } else {
                    &ALL_COLUMNS
                },
            ),
            Err(error) => {
                report(error);
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    let Some(manifest) = load_or_report(cli) else {
        return ExitCode::from(EXIT_FAILURE);
    };
    let progress = Progress::for_terminal(!args.json && !cli.quiet);
    let observed = match ContextAwsApi::load(&manifest.aws).await {
        Ok(mut context) => {
            context.holder = manifest_holder(&manifest, &context);
            observe_with_progress(&manifest, &context, &progress).await
        }
        Err(error) => Err(vec![miette::Report::new(error)]),
    };
    let rows: Vec<Value> = match observed {
        Ok(resources) => resources.iter().map(Observed::status_row).collect(),
        Err(errors) => {
            for error in errors {
                eprintln!("{error:?}");
            }
            match local_rows(&manifest).await {
                Ok(rows) => {
                    eprintln!(
                        "warning: AWS could not be read (above); bastions and clusters are unknown, tunnels are shown from this machine"
                    );
                    rows
                }
                Err(error) => {
                    report(error);
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        }
    };
    print(
        &rows,
        args.json,
        cli.quiet,
        args.wide,
        if args.wide { &WIDE_COLUMNS } else { &COLUMNS },
    )
}

/// a column of the status table: its header and how a row's JSON becomes its cell
type Column = (&'static str, fn(&Value) -> String);

/// the width `status` fits by default; `--wide` shows every column whole
const TABLE_WIDTH: usize = 100;

/// the columns whose cells are shortened (at a word, with `…`) to fit `TABLE_WIDTH`, widest first
const SHORTENABLE: [&str; 4] = ["HEALTH", "HELD BY", "MANIFEST", "FAR END"];

/// a resource as the narrow table names it: its kind in a word, then its address
fn resource_cell(row: &Value) -> String {
    let class = row["class"].as_str().unwrap_or_default();
    let kind = noun_of(class).unwrap_or(class);
    format!("{kind} {}", text(&row["slug"]))
}

/// healthy, unhealthy or `-`: the reason goes below the narrow table
fn health_word(row: &Value) -> String {
    match &row["healthy"] {
        Value::Bool(true) => "healthy".into(),
        Value::Bool(false) => "unhealthy".into(),
        _ => "-".into(),
    }
}

/// the holders in few words: a manifest by its file name, a command by what it runs
fn holders_short(row: &Value) -> String {
    match row["holders"].as_array() {
        Some(holders) if !holders.is_empty() => holders
            .iter()
            .map(|holder| {
                let holder = text(holder);
                match holder.strip_prefix("manifest ") {
                    Some(rest) => {
                        let path = rest.split(" (").next().unwrap_or(rest);
                        std::path::Path::new(path).file_name().map_or_else(
                            || path.to_string(),
                            |name| name.to_string_lossy().into_owned(),
                        )
                    }
                    None => holder,
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".into(),
    }
}

/// the restart count alone: the cause goes below the narrow table
fn restarts_count(row: &Value) -> String {
    text(&row["restarts"])
}

/// .what = the lines below the narrow table: per resource, what its cells leave out (a health reason, the last
/// restart's cause), whole
/// .why = the table fits 100 columns and nothing is cut mid-word; `--wide` shows them in the table instead
fn details(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .filter_map(|row| {
            let mut parts = Vec::new();
            if let Some(reason) = row["healthReason"].as_str() {
                parts.push(reason.to_string());
            }
            if let (Some(count), Some(cause)) =
                (row["restarts"].as_u64(), row["lastRestart"].as_str())
                && count > 0
                && !cause.is_empty()
            {
                parts.push(format!("{count} (last: {cause})"));
            }
            (!parts.is_empty())
                .then(|| format!("  {}: {}", text(&row["slug"]), parts.join("; restarts ")))
        })
        .collect()
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn health_cell(row: &Value) -> String {
    match (&row["healthy"], &row["healthReason"]) {
        (Value::Bool(true), Value::String(note)) => format!("healthy ({note})"),
        (Value::Bool(true), _) => "healthy".into(),
        (Value::Bool(false), reason) => format!("unhealthy: {}", text(reason)),
        (_, Value::String(note)) => note.clone(),
        _ => "-".into(),
    }
}

/// the count, and beside it why the session last restarted, whole (`--wide` cuts nothing): "2 (last: the session
/// ended (exit status: 0): ...)"
fn restarts_cell(row: &Value) -> String {
    match (&row["restarts"], row["lastRestart"].as_str()) {
        (Value::Number(count), Some(cause))
            if count.as_u64().unwrap_or(0) > 0 && !cause.is_empty() =>
        {
            format!("{count} (last: {cause})")
        }
        (count, _) => text(count),
    }
}

/// .what = `text` in at most `width` characters: whole words, then `…` where it was cut
/// .why = a cause or a health reason is shortened to fit the table, never cut mid-word
fn cut_at_word(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let room = width.saturating_sub(1);
    let head: String = text.chars().take(room).collect();
    // the last space in the second half of what fits; a single long word is cut where it must be
    let cut = head
        .char_indices()
        .rev()
        .find(|(index, character)| character.is_whitespace() && *index >= room / 2)
        .map(|(index, _)| index)
        .map_or(head.as_str(), |index| &head[..index]);
    format!("{}…", cut.trim_end_matches([' ', ',', ';', ':', '(']))
}

fn uptime_cell(row: &Value) -> String {
    row["uptimeSeconds"]
        .as_i64()
        .map_or("-".into(), format_uptime)
}

const COLUMNS: [Column; 7] = [
    ("RESOURCE", resource_cell),
    ("STATUS", |row| text(&row["status"])),
    ("PORT", |row| text(&row["port"])),
    ("UPTIME", uptime_cell),
    ("RESTARTS", restarts_count),
    ("HELD BY", holders_short),
    ("HEALTH", health_word),
];

const WIDE_COLUMNS: [Column; 9] = [
    ("RESOURCE", |row| {
        format!("{} {}", text(&row["class"]), text(&row["slug"]))
    }),
    ("STATUS", |row| text(&row["status"])),
    ("PID", |row| text(&row["pid"])),
    ("PORT", |row| text(&row["port"])),
    ("UPTIME", uptime_cell),
    ("RESTARTS", restarts_cell),
    ("HELD BY", holders_cell),
    ("TRANSPORT", |row| text(&row["transport"])),
    ("HEALTH", health_cell),
];

const ALL_COLUMNS: [Column; 8] = [
    ("TUNNEL", |row| text(&row["slug"])),
    ("MANIFEST", |row| text(&row["manifest"])),
    ("STATUS", |row| text(&row["status"])),
    ("PORT", |row| text(&row["port"])),
    ("UPTIME", uptime_cell),
    ("RESTARTS", restarts_count),
    ("HELD BY", holders_short),
    ("HEALTH", health_word),
];

const ALL_WIDE_COLUMNS: [Column; 11] = [
    ("TUNNEL", |row| text(&row["slug"])),
    ("MANIFEST", |row| text(&row["manifest"])),
    ("STATUS", |row| text(&row["status"])),
    ("PORT", |row| text(&row["port"])),
    ("FAR END", |row| text(&row["farEnd"])),
    ("PID", |row| text(&row["pid"])),
    ("UPTIME", uptime_cell),
    ("RESTARTS", restarts_cell),
    ("HELD BY", holders_cell),
    ("TRANSPORT", |row| text(&row["transport"])),
    ("HEALTH", health_cell),
];

/// the rows as JSON, or as a table whose last column is not padded, followed (unless `quiet`) by how to connect
fn print(rows: &[Value], json: bool, quiet: bool, wide: bool, columns: &[Column]) -> ExitCode {
    after_output(
        write_rows(rows, json, quiet, wide, columns),
        ExitCode::SUCCESS,
    )
}

/// .what = shortens the cells of the shortenable columns, the widest column first, until every line fits `limit`
/// .why = `status` reads on a 100-column terminal without wrapping; `--wide` shows everything
fn fit(headers: &[String], table: &mut [Vec<String>], limit: usize) {
    const NARROWEST: usize = 12;
    let width_of = |table: &[Vec<String>], column: usize| {
        std::iter::once(headers)
            .chain(table.iter().map(Vec::as_slice))
            .map(|line| line[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    for _ in 0..headers.len() * 4 {
        let total: usize = (0..headers.len())
            .map(|column| width_of(table, column))
            .sum::<usize>()
            + 2 * headers.len().saturating_sub(1);
        if total <= limit {
            return;
        }
        let Some((column, width)) = (0..headers.len())
            .filter(|column| SHORTENABLE.contains(&headers[*column].as_str()))
            .map(|column| (column, width_of(table, column)))
            .filter(|(_, width)| *width > NARROWEST)
            .max_by_key(|(_, width)| *width)
        else {
            return;
        };
        let target = width.saturating_sub(total - limit).max(NARROWEST);
        for line in table.iter_mut() {
            line[column] = cut_at_word(&line[column], target);
        }
    }
}

/// `print`'s writing, whose failure (`> /dev/full`) is an error
fn write_rows(
    rows: &[Value],
    json: bool,
    quiet: bool,
    wide: bool,
    columns: &[Column],
) -> std::io::Result<()> {
    let mut stdout = anstream::stdout().lock();
    if json {
        writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(rows).unwrap_or_default()
        )?;
        return stdout.flush();
    }
    if rows.is_empty() {
        // `status --all` on a machine without tunnels: a sentence, not a lone header
        writeln!(
            stdout,
            "No tunnel on this machine: none is open, and none has a record in the state folder."
        )?;
        return stdout.flush();
    }
    let headers: Vec<String> = columns
        .iter()
        .map(|(name, _)| (*name).to_string())
        .collect();
    let mut table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|(_, cell)| cell(row)).collect())
        .collect();
    let width_of = |table: &[Vec<String>], column: usize| {
        std::iter::once(&headers)
            .chain(table)
            .map(|line| line[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    if !wide {
        fit(&headers, &mut table, TABLE_WIDTH);
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|column| width_of(&table, column))
        .collect();
    let last = columns.len() - 1;
    for line in std::iter::once(&headers).chain(&table) {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(column, cell)| {
                if column == last {
                    cell.clone()
                } else {
                    let padding = widths[column].saturating_sub(cell.chars().count());
                    format!("{cell}{}", " ".repeat(padding))
                }
            })
            .collect();
        writeln!(stdout, "{}", cells.join("  ").trim_end())?;
    }
    let connections: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            Some(format!(
                "  {}: {}",
                row["connection"].as_str()?,
                row["client"].as_str()?
            ))
        })
        .collect();
    let details = if wide { Vec::new() } else { details(rows) };
    if !details.is_empty() && !quiet {
        writeln!(stdout, "\nDetails:\n{}", details.join("\n"))?;
    }
    if !connections.is_empty() && !quiet {
        writeln!(stdout, "\nConnect:\n{}", connections.join("\n"))?;
    }
    stdout.flush()
}

/// .what = every tunnel of this machine's state folder: recorded ones, and those only their processes show
/// .why = `status --all`: a tunnel whose manifest was deleted or moved is found here, with no manifest and no AWS
async fn all_rows() -> Result<Vec<Value>, declastruct_aws::AwsError> {
    let tunnels_dir = ContextAwsApi::default_tunnels_dir()?;
    let recorded = TunnelFiles::recorded_in::<declastruct_aws::DeclaredAwsVpcTunnel>(&tunnels_dir)?;
    let processes = TunnelProcesses::scan(&tunnels_dir);
    let mut hashes: Vec<TunnelId> = recorded
        .iter()
        .map(|(files, _)| files.id.clone())
        .chain(processes.ids().cloned())
        .collect();
    hashes.sort();
    hashes.dedup();
    // concurrently: each live tunnel's health probe may take its whole deadline
    let mut rows = futures::future::join_all(
        hashes
            .iter()
            .map(|hash| tunnel_row(hash, &tunnels_dir, &processes)),
    )
    .await;
    // the idle timers of bastions with `idleStop`, waiting to look again
    let state_dir = ContextAwsApi::default_state_dir()?;
    for (timer, alive) in declastruct_aws::recorded_idle_timers(&state_dir) {
        rows.push(json!({
            "slug": format!("idle timer of {}", timer.instance_id),
            "status": if alive { "WAITING" } else { "GONE" },
            "pid": timer.pid,
            "healthReason": if alive {
                format!("stops {} at {} if it is still idle (idleStop {} s)", timer.instance_id, timer.due_at, timer.idle_stop_seconds)
            } else {
                "its process ended without removing its record".to_string()
            },
            "holders": [],
        }));
    }
    Ok(rows)
}

/// .what = one tunnel of the state folder as a `status --all` row: from its record, or from its processes alone
/// when the record is missing or damaged
/// .why = every tunnel is listed, whatever is left of its record
async fn tunnel_row(
    hash: &TunnelId,
    tunnels_dir: &std::path::Path,
    processes: &TunnelProcesses,
) -> Value {
    let files = TunnelFiles::new(tunnels_dir, hash.clone());
    match files.read_meta::<declastruct_aws::DeclaredAwsVpcTunnel>() {
        Ok(Some(meta)) => {
            let observation =
                inspect_local_tunnel(&meta.tunnel, &files, processes, meta.engine.as_deref()).await;
            let mut row = tunnel_fields(&observation);
            let extra = json!({
                "slug": record_address(&meta.tunnel).slug,
                "manifest": meta.manifest,
                "farEnd": format!("{}:{} via {}", meta.remote_host, meta.remote_port, meta.instance_id),
                "region": meta.region,
            });
            if let (Value::Object(row), Value::Object(extra)) = (&mut row, extra) {
                row.extend(extra);
            }
            row
        }
        damaged => {
            let live = processes.of(hash);
            let pid = live
                .iter()
                .find(|process| process.is_supervisor())
                .or(live.first())
                .map(|process| process.pid);
            let reason = match damaged {
                Err(damage) => format!("its record is damaged: {damage}"),
                _ => "its record is missing".to_string(),
            };
            // the session's own command line still names the local port
            let port = live.iter().find_map(local_port_of);
            json!({
                "slug": hash,
                "hash": hash,
                "manifest": null,
                "status": if live.is_empty() { "CLOSED" } else { "OPEN (unhealthy)" },
                "pid": pid,
                "port": port,
                "healthy": if live.is_empty() { Value::Null } else { Value::Bool(false) },
                "healthReason": reason,
            })
        }
    }
}

fn format_uptime(seconds: i64) -> String {
    match seconds {
        seconds if seconds < 60 => format!("{seconds}s"),
        seconds if seconds < 3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        seconds => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// the holders, or `-`
fn holders_cell(row: &Value) -> String {
    match row["holders"].as_array() {
        Some(holders) if !holders.is_empty() => {
            holders.iter().map(text).collect::<Vec<_>>().join(", ")
        }
        _ => "-".into(),
    }
}

/// .what = the rows `status` can give without AWS: each declared tunnel from its record or its processes on this
/// machine, bastions and clusters as unknown
/// .why = AWS down, expired credentials or a wrong endpoint never hide a tunnel that serves a port here
async fn local_rows(manifest: &Manifest) -> Result<Vec<Value>, declastruct_aws::AwsError> {
    let tunnels_dir = ContextAwsApi::default_tunnels_dir()?;
    let recorded = TunnelFiles::recorded_in::<declastruct_aws::DeclaredAwsVpcTunnel>(&tunnels_dir)?;
    let processes = TunnelProcesses::scan(&tunnels_dir);
    // concurrently: each live tunnel's health probe may take its whole deadline
    let rows = futures::future::join_all(manifest.resources.iter().map(|declared| {
        let (tunnels_dir, recorded, processes) = (&tunnels_dir, &recorded, &processes);
        async move {
            let address = declared.declaration.address();
            let ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) = &declared.declaration else {
                return with_address(
                    &address,
                    json!({"status": "unknown: AWS could not be read"}),
                );
            };
            let observation = match local_hash_of(tunnel, recorded, processes) {
                Some(hash) => {
                    let files = TunnelFiles::new(tunnels_dir, hash);
                    let engine = files
                        .read_meta::<declastruct_aws::DeclaredAwsVpcTunnel>()
                        .ok()
                        .flatten()
                        .and_then(|meta| meta.engine);
                    inspect_local_tunnel(&tunnel.to_domain(), &files, processes, engine.as_deref())
                        .await
                }
                None => VpcTunnelObservation::closed(&tunnel.to_domain(), None),
            };
            with_address(&address, tunnel_fields(&observation))
        }
    }))
    .await;
    Ok(rows)
}

/// the tunnel on this machine that serves `tunnel`: by its record, else by a process whose session command
/// names the tunnel's local port
fn local_hash_of(
    tunnel: &VpcTunnelDeclaration,
    recorded: &[declastruct_tunnel::RecordedTunnel<declastruct_aws::DeclaredAwsVpcTunnel>],
    processes: &TunnelProcesses,
) -> Option<TunnelId> {
    let by_record = recorded.iter().find_map(|(files, meta)| {
        let meta = meta.as_ref().ok()?;
        (meta.tunnel.via == tunnel.via
            && meta.tunnel.into == tunnel.into
            && meta.tunnel.from == tunnel.from)
            .then(|| files.id.clone())
    });
    by_record.or_else(|| {
        processes.ids().find_map(|id| {
            processes
                .of(id)
                .iter()
                .any(|process| local_port_of(process) == Some(tunnel.from.port))
                .then(|| id.clone())
        })
    })
}

/// .what = the local port a session process forwards, read from its command line (`"localPortNumber":["N"]` in
/// `--parameters`), `None` for a process whose command names none (the supervisor)
/// .why = a tunnel whose record is missing or damaged is still known by the port its session serves
fn local_port_of(process: &declastruct_tunnel::ProcessInfo) -> Option<u16> {
    process.command.iter().find_map(|word| {
        let rest = word.split_once("\"localPortNumber\":[\"")?.1;
        rest.split('"').next()?.parse::<u16>().ok()
    })
}

#[cfg(test)]
mod width_tests {
    use super::*;

    #[test]
    fn a_cut_ends_at_a_word_with_an_ellipsis() {
        assert_eq!(cut_at_word("short", 10), "short");
        assert_eq!(
            cut_at_word(
                "the session ended (exit status: 0): Session: abc timed out.",
                30
            ),
            "the session ended (exit…"
        );
        assert_eq!(cut_at_word("averyveryverylongword", 8), "averyve…");
    }

    /// `--wide` shows every cell whole: a long restart cause is not cut
    #[test]
    fn the_wide_restart_cell_is_whole() {
        let cause = "the session ended (exit status: 0): SessionId: testing-0123456789abcdef0 : Session timed out after the idle timeout of 20 minutes";
        let row = serde_json::json!({"restarts": 2, "lastRestart": cause});
        assert_eq!(restarts_cell(&row), format!("2 (last: {cause})"));
    }

    #[test]
    fn a_table_is_fitted_by_its_shortenable_columns() {
        let headers: Vec<String> = ["RESOURCE", "STATUS", "HEALTH"].map(String::from).to_vec();
        let mut table = vec![vec![
            "DeclaredAwsVpcTunnel vpc-main-bastion.ahbodedb.7775".to_string(),
            "OPEN".to_string(),
            "unhealthy (the database does not answer through it: connection refused by the far end)"
                .to_string(),
        ]];
        fit(&headers, &mut table, 100);
        let width: usize = table[0]
            .iter()
            .map(|cell| cell.chars().count())
            .sum::<usize>()
            + 4;
        assert!(width <= 100, "{table:?}");
        assert!(
            table[0][2].ends_with('…') && !table[0][2].ends_with(" …"),
            "{table:?}"
        );
    }
}
