//! `--config mcstore.toml`: settings kept in a file.
//!
//! Keys are the long flags' names (`listen`, `data-dir`, `max-item-size`,
//! `verbose = 2`, ...); values are strings or numbers, read by the same
//! parsers as the flags. Precedence: command line, then `MCSTORE_*`
//! variables, then the file, then the defaults. An unknown key, a value of
//! the wrong kind or an invalid value is an error naming the file and key.
//!
//! The file is read with the `toml` crate (the toml-rs project's, the
//! reference TOML implementation for Rust, used by Cargo itself, TOML 1.0
//! compliant, kept up to date). It is merged by turning each setting the
//! command line and environment left at its default into a flag in front of
//! the real ones, so that clap checks and reports everything in one way.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use crate::config::Config;

/// Flags a config file may not set.
const NOT_IN_FILE: &[&str] = &["config", "help", "version", "generate-man"];

/// Why the configuration could not be read.
#[derive(Debug)]
pub enum LoadError {
    /// The command line or environment is wrong (clap prints it and exits 2).
    Usage(clap::Error),
    /// The config file is unreadable or wrong.
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Usage(err) => write!(f, "{err}"),
            LoadError::File { path, message } => {
                write!(f, "config file {}: {message}", path.display())
            }
        }
    }
}

/// Reads the command line `args` (program name first), the environment and
/// the config file it names, if any.
pub fn load<I, T>(args: I) -> Result<Config, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Config::command();
    let matches = command
        .try_get_matches_from_mut(&args)
        .map_err(LoadError::Usage)?;
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
        return Config::from_arg_matches(&matches).map_err(LoadError::Usage);
    };
    let file_error = |message: String| LoadError::File {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|err| file_error(err.to_string()))?;
    let file_args = flags_from_file(&command, &matches, &text).map_err(file_error)?;
    let mut merged = Vec::with_capacity(args.len() + file_args.len());
    merged.extend(args.first().cloned());
    merged.extend(file_args.into_iter().map(OsString::from));
    merged.extend(args.iter().skip(1).cloned());
    Config::command()
        .try_get_matches_from(merged)
        .and_then(|matches| Config::from_arg_matches(&matches))
        .map_err(LoadError::Usage)
}

/// The file's settings as flags, leaving out those the command line or the
/// environment set; every value is checked by its flag's parser here, so an
/// error can name the key.
fn flags_from_file(
    command: &clap::Command,
    matches: &clap::ArgMatches,
    text: &str,
) -> Result<Vec<String>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|err: toml::de::Error| format!("not valid TOML: {}", err.message()))?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        let arg = command
            .get_arguments()
            .find(|arg| {
                arg.get_long() == Some(key.as_str()) && !NOT_IN_FILE.contains(&key.as_str())
            })
            .ok_or_else(|| {
                format!(
                    "unknown key `{key}` (keys are the long flags' names: {})",
                    known_keys(command)
                )
            })?;
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let as_text = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(format!("`{key}` must be a string or a number")),
        };
        if matches!(arg.get_action(), ArgAction::Count) {
            let count: u8 = as_text
                .parse()
                .ok()
                .filter(|&n: &u8| n <= 8)
                .ok_or_else(|| format!("`{key}` must be a number from 0 to 8"))?;
            flags.extend((0..count).map(|_| format!("--{key}")));
            continue;
        }
        let flag = format!("--{key}={as_text}");
        if let Err(err) = Config::command().try_get_matches_from(["mcstore", flag.as_str()]) {
            return Err(format!("`{key}`: {}", first_line(&err.to_string())));
        }
        flags.push(flag);
    }
    Ok(flags)
}

fn known_keys(command: &clap::Command) -> String {
    command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| arg.get_long())
        .filter(|long| !NOT_IN_FILE.contains(long))
        .collect::<Vec<_>>()
        .join(", ")
}

fn first_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str, args: &[&str]) -> Result<Config, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcstore.toml");
        std::fs::write(&path, text).unwrap();
        let mut argv = vec!["mcstore".to_owned(), "--config".to_owned()];
        argv.push(path.display().to_string());
        argv.extend(args.iter().map(|s| s.to_string()));
        load(argv)
    }

    #[test]
    fn file_sets_what_flags_leave_at_default() {
        let config = with_file(
            "listen = \"0.0.0.0:11311\"\nthreads = 3\nmax-item-size = \"2m\"\nverbose = 2\n",
            &["--threads", "5"],
        )
        .unwrap();
        assert_eq!(config.listen_spec().to_string(), "0.0.0.0:11311");
        assert_eq!(config.threads, Some(5), "the command line wins");
        assert_eq!(config.max_item_size, 2 << 20);
        assert_eq!(config.verbose, 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let message = |text| match with_file(text, &[]) {
            Err(err @ LoadError::File { .. }) => err.to_string(),
            Err(other) => panic!("{text:?}: not a file error: {other}"),
            Ok(_) => panic!("{text:?} was accepted"),
        };
        assert!(message("max_item_size = \"2m\"").contains("unknown key `max_item_size`"));
        assert!(message("threads = 0").contains("`threads`"));
        assert!(message("max-item-size = \"2g\"").contains("over 1g"));
        assert!(message("listen = [1]").contains("string or a number"));
        assert!(message("threads = ").contains("not valid TOML"));
        assert!(message("config = \"x\"").contains("unknown key"));
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = load(["mcstore", "--config", "/nonexistent/mcstore.toml"]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/mcstore.toml"));
    }
}
