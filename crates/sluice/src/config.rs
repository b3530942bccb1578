//! Settings from a TOML file, the environment and the command line, in rising precedence.
//!
//! Every command-line option is also a config key: `--read-timeout 30` is `read_timeout = 30`
//! in the section its option belongs to: `[network]` for the peer-network options every
//! command shares (`loopback_only`, `encryption`, `tracker`, ...), and `[serve]`,
//! `[download]` or `[seed]` for a command's own. A file value is used only where neither the
//! command line nor an environment variable gave one, and it goes through the same parser as
//! the option, so a bad value gets the option's own error. A key no command knows is an
//! error naming the valid keys; keys of another command's section are ignored (one file
//! serves every command).
//!
//! The file is `--config FILE` (or `$SLUICE_CONFIG`). `--print-config` prints the settings the
//! command would run with, as TOML, each with where it came from, and exits.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches};

use crate::{Cli, NetArgs};

/// Largest config file read.
const MAX_FILE: u64 = 1024 * 1024;

/// The command line after the config file filled what it left unset, and what to do with it.
pub(crate) struct Parsed {
    pub(crate) cli: Cli,
    /// `--print-config`: the settings, rendered.
    pub(crate) print: Option<String>,
}

/// Parses `argv` (clap prints its own errors and exits, as `Cli::parse` does); a bad config
/// file is an error.
pub(crate) fn parse(argv: Vec<OsString>) -> anyhow::Result<Parsed> {
    let command = Cli::command();
    let first = command.clone().get_matches_from(argv.clone());
    let (name, sub) = first.subcommand().context("no command given")?;
    let file = first.get_one::<PathBuf>("config").cloned();
    let mut argv = argv;
    let mut from_file = Vec::new();
    if let Some(path) = &file {
        let table = read(path)?;
        let sub_command = command.find_subcommand(name).context("unknown command")?.clone();
        let net = net_ids();
        for (section, values) in &table {
            let Some(values) = values.as_table() else {
                bail!("{}: `{section}` must be a [section] of keys", path.display());
            };
            for (key, value) in values {
                let id = key.as_str();
                let known = match section.as_str() {
                    "network" => net.iter().any(|n| n == id),
                    s if s == name => {
                        sub_command.get_arguments().any(|a| a.get_id() == id) && !net.iter().any(|n| n == id)
                    }
                    s if command.find_subcommand(s).is_some() => {
                        // Another command's section: checked for that command, skipped here.
                        continue;
                    }
                    _ => bail!("{}: unknown section [{section}] (sections: network, {})", path.display(), commands()),
                };
                if !known {
                    bail!(
                        "{}: unknown key `{key}` in [{section}] (keys: {})",
                        path.display(),
                        keys(section, &sub_command)
                    );
                }
                let Some(arg) = sub_command.get_arguments().find(|a| a.get_id() == id) else {
                    // A [network] key, and this command (e.g. `ls`) has no network options.
                    continue;
                };
                if !matches!(sub.value_source(id), None | Some(ValueSource::DefaultValue)) {
                    continue;
                }
                argv.extend(as_args(arg, value).with_context(|| format!("{}: [{section}] {key}", path.display()))?);
                from_file.push(id.to_owned());
            }
        }
    }
    let matches = command.get_matches_from(argv);
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let (crate::Command::Serve(args), Some((_, sub))) = (&mut cli.command, matches.subcommand()) {
        args.explicit = explicit(sub, &from_file);
    }
    let print = matches.get_flag("print_config").then(|| render(&matches, file.as_deref(), &from_file)).transpose()?;
    Ok(Parsed { cli, print })
}

/// The options of a command given by the command line, the environment or the config file
/// (not left at their defaults), with where each came from.
fn explicit(sub: &ArgMatches, from_file: &[String]) -> Vec<(String, &'static str)> {
    sub.ids()
        .filter_map(|id| {
            let source = match sub.value_source(id.as_str()) {
                _ if from_file.iter().any(|f| f == id.as_str()) => "config file",
                Some(ValueSource::CommandLine) => "command line",
                Some(ValueSource::EnvVariable) => "environment",
                _ => return None,
            };
            Some((id.to_string(), source))
        })
        .collect()
}

fn read(path: &Path) -> anyhow::Result<toml::Table> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("reading config {}", path.display()))?;
    let mut text = String::new();
    f.take(MAX_FILE + 1).read_to_string(&mut text).with_context(|| format!("reading config {}", path.display()))?;
    if text.len() as u64 > MAX_FILE {
        bail!("config {} is larger than {} KiB", path.display(), MAX_FILE >> 10);
    }
    text.parse::<toml::Table>().with_context(|| format!("config {} is not valid TOML", path.display()))
}

/// Ids of the options every command shares ([`NetArgs`]).
fn net_ids() -> Vec<String> {
    NetArgs::augment_args(clap::Command::new("net")).get_arguments().map(|a| a.get_id().to_string()).collect()
}

fn commands() -> String {
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .filter(|n| n != "help")
        .collect::<Vec<_>>()
        .join(", ")
}

fn keys(section: &str, sub: &clap::Command) -> String {
    let net = net_ids();
    let ids: Vec<String> = if section == "network" {
        net
    } else {
        sub.get_arguments()
            .filter(|a| !a.is_positional() && a.get_long().is_some())
            .map(|a| a.get_id().to_string())
            .filter(|id| !net.contains(id) && id != "config" && id != "print_config")
            .collect()
    };
    ids.join(", ")
}

/// The command-line words a config value stands for.
fn as_args(arg: &clap::Arg, value: &toml::Value) -> anyhow::Result<Vec<OsString>> {
    let long = arg.get_long().context("not an option")?;
    let flag = OsString::from(format!("--{long}"));
    let takes_value = !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count)
        && arg.get_num_args().is_none_or(|n| n.max_values() > 0);
    match value {
        toml::Value::Boolean(b) if !takes_value || arg.get_num_args().is_some_and(|n| n.min_values() == 0) => {
            Ok(if *b { vec![flag] } else { Vec::new() })
        }
        toml::Value::Array(items) if takes_value => {
            let mut out = Vec::new();
            for item in items {
                out.push(flag.clone());
                out.push(scalar(item)?.into());
            }
            Ok(out)
        }
        v if takes_value => Ok(vec![flag, scalar(v)?.into()]),
        _ => bail!("expected true or false"),
    }
}

fn scalar(value: &toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        _ => bail!("expected a string, number or boolean"),
    })
}

/// The running command's settings as TOML, with each value's source.
fn render(matches: &ArgMatches, file: Option<&Path>, from_file: &[String]) -> anyhow::Result<String> {
    let (name, sub) = matches.subcommand().context("no command given")?;
    let command = Cli::command();
    let sub_command = command.find_subcommand(name).context("unknown command")?;
    let net = net_ids();
    let mut out = String::new();
    if let Some(f) = file {
        writeln!(out, "# config file: {}", f.display())?;
    }
    for (section, in_net) in [("network", true), (name, false)] {
        writeln!(out, "\n[{section}]")?;
        for arg in sub_command.get_arguments() {
            let id = arg.get_id().as_str();
            let meta = matches!(id, "help" | "config" | "print_config");
            if arg.is_positional() || meta || net.iter().any(|n| n == id) != in_net {
                continue;
            }
            let source = match sub.value_source(id) {
                _ if from_file.iter().any(|f| f == id) => "file",
                Some(ValueSource::CommandLine) => "command line",
                Some(ValueSource::EnvVariable) => "environment",
                Some(ValueSource::DefaultValue) => "default",
                _ => "unset",
            };
            let raw: Vec<String> = sub
                .get_raw(id)
                .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let value = if let Ok(Some(b)) = sub.try_get_one::<bool>(id) {
                // Parsed, so `SLUICE_LOOPBACK_ONLY=0` shows as false.
                b.to_string()
            } else if raw.is_empty() {
                format!("# {id} (unset)")
            } else if matches!(arg.get_action(), ArgAction::Append) {
                format!("[{}]", raw.iter().map(|v| toml_scalar(v)).collect::<Vec<_>>().join(", "))
            } else {
                toml_scalar(&raw[0])
            };
            if value.starts_with('#') {
                writeln!(out, "{value}")?;
            } else {
                writeln!(out, "{id} = {value}  # {source}")?;
            }
        }
    }
    Ok(out)
}

/// `v` as a TOML literal: booleans and integers bare, everything else quoted.
fn toml_scalar(v: &str) -> String {
    if v == "true" || v == "false" || v.parse::<i64>().is_ok() {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}
