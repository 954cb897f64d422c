//! .what = how plans, summaries and diagnostics look to a person
//! .why = one place for symbols and colours; colour only on a terminal, never with NO_COLOR or --no-color

use std::io::Write;

use anstyle::{AnsiColor, Style};
use declastruct_engine::{Action, Plan};

fn style(action: Action) -> Style {
    let color = match action {
        Action::Keep | Action::Omit => AnsiColor::BrightBlack,
        Action::Create => AnsiColor::Green,
        Action::Update => AnsiColor::Yellow,
        Action::Destroy => AnsiColor::Red,
        Action::Replace => AnsiColor::Magenta,
    };
    Style::new().fg_color(Some(color.into()))
}

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Keep => "=",
        Action::Create => "+",
        Action::Update => "~",
        Action::Destroy => "-",
        Action::Replace => "±",
        Action::Omit => " ",
    }
}

fn diff_line_style(line: &str) -> Style {
    match line.chars().next() {
        Some('+') if !line.starts_with("+++") => {
            Style::new().fg_color(Some(AnsiColor::Green.into()))
        }
        Some('-') if !line.starts_with("---") => Style::new().fg_color(Some(AnsiColor::Red.into())),
        Some('@') => Style::new().fg_color(Some(AnsiColor::Cyan.into())),
        _ => Style::new(),
    }
}

/// .what = the plan as a person reads it: each change with its action and diff, then a summary line
/// .why = `plan` and `apply` show exactly what will happen before it happens
pub fn render_plan(plan: &Plan, show_unchanged: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let bold = Style::new().bold();
    writeln!(
        out,
        "{bold}Plan for {}{bold:#}",
        display_path(&plan.wish.uri)
    )?;
    if !plan.wish.vars.is_empty() {
        writeln!(out, "vars: {}", variables_line(&plan.wish.vars))?;
    }
    writeln!(out)?;
    // like Terraform, what does not change is counted, not listed, unless asked for (`-v`) or it carries a note
    let shown = |change: &&declastruct_engine::Change| {
        show_unchanged || change.action.is_change() || change.note.is_some()
    };
    for change in plan.changes.iter().filter(shown) {
        let action_style = style(change.action);
        writeln!(
            out,
            "  {action_style}{} {:<7}{action_style:#} {} {bold}{}{bold:#}",
            symbol(change.action),
            change.action.as_str(),
            change.for_resource.class,
            change.for_resource.slug,
        )?;
        if let Some(note) = &change.note {
            writeln!(out, "      ({note})")?;
            if change.state.difference.is_none() {
                writeln!(out)?;
            }
        }
        if let Some(difference) = &change.state.difference {
            for line in difference.lines() {
                let line_style = diff_line_style(line);
                writeln!(out, "      {line_style}{line}{line_style:#}")?;
            }
            writeln!(out)?;
        }
    }
    if plan
        .changes
        .iter()
        .rfind(shown)
        .is_none_or(|change| change.state.difference.is_none() && change.note.is_none())
    {
        writeln!(out)?;
    }
    writeln!(out, "{}", summary_line(plan))
}

/// .what = "Plan: 1 to update, 2 to keep." or "No changes."
/// .why = the line a person and a CI log look for
pub fn summary_line(plan: &Plan) -> String {
    if !plan.has_changes() {
        return format!(
            "No changes: the live world matches {}.",
            display_path(&plan.wish.uri)
        );
    }
    let count = |action: Action| {
        plan.changes
            .iter()
            .filter(|change| change.action == action)
            .count()
    };
    let parts: Vec<String> = [
        (Action::Create, "to create"),
        (Action::Update, "to update"),
        (Action::Replace, "to replace"),
        (Action::Destroy, "to destroy"),
        (Action::Keep, "to keep"),
        (Action::Omit, "to omit"),
    ]
    .iter()
    .filter_map(|(action, words)| {
        let number = count(*action);
        (number > 0).then(|| format!("{number} {words}"))
    })
    .collect();
    format!("Plan: {}.", parts.join(", "))
}

/// .what = `env=prod, port=7776`: the variables a plan was made with
/// .why = the plan header and the stale-plan message name them the same way
pub fn variables_line(vars: &std::collections::BTreeMap<String, String>) -> String {
    if vars.is_empty() {
        return "none".into();
    }
    vars.iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// .what = a path as a person reads it: relative to the current folder when it lies inside it
/// .why = plan headers name the manifest as the user would type it, while the plan document keeps it absolute
pub fn display_path(path: &str) -> String {
    let path = std::path::Path::new(path);
    let Ok(current) = std::env::current_dir() else {
        return path.display().to_string();
    };
    if let Ok(relative) = path.strip_prefix(&current) {
        return relative.display().to_string();
    }
    // a manifest found in a parent folder: `../declastruct.yml`, as the user would reach it from here
    let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
        return path.display().to_string();
    };
    current
        .ancestors()
        .skip(1)
        .position(|ancestor| ancestor == folder)
        .map_or_else(
            || path.display().to_string(),
            |depth| {
                let mut relative = "../".repeat(depth + 1);
                relative.push_str(&name.to_string_lossy());
                relative
            },
        )
}

/// .what = `--target A --target B --force-close ` (each followed by a space), or nothing when the plan covers the
/// whole manifest
/// .why = the commands a hint suggests select what the plan was made for
pub fn selection_arguments(targets: &[String], force_close: bool) -> String {
    let mut arguments: String = targets
        .iter()
        .map(|target| format!("--target {} ", shell_word(target)))
        .collect();
    if force_close {
        arguments.push_str("--force-close ");
    }
    arguments
}

/// .what = `word` as a shell reads it back: as it is when it holds only characters no shell treats specially,
/// else in single quotes
/// .why = a command a hint suggests must work when pasted, whatever the path or value in it
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "-_./:=,+@%".contains(character));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
