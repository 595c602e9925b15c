//! `cargo glci config --show`: every glci setting, its value and where it came from.

use std::process::ExitCode;

use glci_test::settings::schema::{Support, KEYS};
use glci_test::settings::{self, Settings};

pub fn show() -> ExitCode {
    // `main` checked the settings already; a failure here would have been reported there.
    match settings::check() {
        Ok(settings) => {
            print!("{}", render(settings));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: glci settings: {e}");
            ExitCode::from(2)
        }
    }
}

/// One line per key, `section.key = value  # origin`, in the schema's order; unset keys and
/// keys glci refuses as comments.
fn render(settings: &Settings) -> String {
    let mut out = String::from(
        "# glci settings; precedence: flags > environment > project file > global file > default\n",
    );
    for (scope, path, present) in &settings.files {
        let state = if *present { "" } else { " (not present)" };
        out.push_str(&format!(
            "# {} file: {}{state}\n",
            scope.word(),
            glci_test::printable::printable(&path.display().to_string())
        ));
    }
    let mut section = "";
    for key in KEYS {
        let this_section = key.name.split_once('.').map_or(key.name, |(s, _)| s);
        if this_section != section {
            out.push_str(&format!("\n[{this_section}]\n"));
            section = this_section;
        }
        match (settings.get(key.name), key.support) {
            (_, Support::Refused(_)) => {
                out.push_str(&format!("# {}: not supported\n", key.name));
            }
            (Some(setting), _) => {
                let line = format!("{} = {}", key.name, setting.value.shown());
                out.push_str(&format!("{line:<48}  # {}\n", setting.origin));
            }
            (None, _) => out.push_str(&format!("# {}: unset\n", key.name)),
        }
    }
    out
}
