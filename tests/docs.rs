//! The docs cannot drift from the binary: every `console` block in the README, ARCHITECTURE.md
//! and docs/ is run with the built binary and compared with what it prints, and every `--flag`
//! the pages name is checked against the command line's definition.
//!
//! `UPDATE_DOCS=1 cargo test --test docs` rewrites the blocks from the binary's output, for a
//! change that alters an output on purpose (review the diff).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use kafka_listener_injector::cli::{Cli, InjectionArgs};

const BINARY: &str = env!("CARGO_BIN_EXE_kafka-listener-injector");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// One `$ command` of a console block and the output shown under it (lines `[start, end)`).
struct Shown {
    command: String,
    start: usize,
    end: usize,
}

/// The commands of every ```console block of `text`, with the line span of their shown output.
fn console_blocks(text: &str) -> Vec<Shown> {
    let lines: Vec<&str> = text.lines().collect();
    let mut shown = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```console" {
            i += 1;
            continue;
        }
        i += 1;
        while i < lines.len() && lines[i].trim_end() != "```" {
            let Some(first) = lines[i].strip_prefix("$ ") else {
                panic!("a console block's line {} is not a `$ ` command", i + 1);
            };
            let mut command = first.to_owned();
            while command.ends_with('\\') {
                command.pop();
                i += 1;
                command.push_str(lines[i].trim_start());
            }
            i += 1;
            let start = i;
            while i < lines.len() && lines[i].trim_end() != "```" && !lines[i].starts_with("$ ") {
                i += 1;
            }
            shown.push(Shown {
                command,
                start,
                end: i,
            });
        }
        i += 1;
    }
    shown
}

/// What the command prints, stdout and stderr in one stream as a terminal shows them, run from
/// the repository's root with the built binary first on the PATH.
fn run(command: &str) -> String {
    let bin_dir = Path::new(BINARY).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("{command} 2>&1"))
        .current_dir(root())
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .output()
        .expect("bash runs");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn every_console_block_shows_what_the_binary_prints() {
    let update = std::env::var_os("UPDATE_DOCS").is_some();
    let mut stale = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        // From the last block up, so that rewriting one keeps the others' line numbers.
        for shown in console_blocks(&text).into_iter().rev() {
            assert!(
                shown.command.starts_with("kafka-listener-injector "),
                "{}: a console block runs `{}`; console blocks are for this binary's commands \
                 (show other tools' transcripts in a `text` block)",
                page.display(),
                shown.command
            );
            checked += 1;
            let actual = run(&shown.command);
            let expected = lines[shown.start..shown.end].join("\n");
            if actual.trim_end() != expected.trim_end() {
                if update {
                    lines.splice(
                        shown.start..shown.end,
                        actual.trim_end().lines().map(str::to_owned),
                    );
                } else {
                    stale.push(format!(
                        "{}: `{}`\n--- shown\n{expected}\n--- printed\n{actual}",
                        page.display(),
                        shown.command
                    ));
                }
            }
        }
        if update {
            std::fs::write(&page, lines.join("\n") + "\n").unwrap();
        }
    }
    assert!(checked >= 2, "the docs show at least two checked outputs");
    assert!(
        stale.is_empty(),
        "outputs in the docs differ from the binary's (UPDATE_DOCS=1 rewrites them):\n{}",
        stale.join("\n")
    );
}

/// Every long flag of every command.
fn defined_flags() -> BTreeSet<String> {
    fn walk(command: &clap::Command, flags: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                flags.insert(format!("--{long}"));
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, flags);
        }
    }
    let mut flags = BTreeSet::from(["--help".to_owned(), "--version".to_owned()]);
    walk(&Cli::command(), &mut flags);
    flags
}

/// Flags of other tools that the pages quote (helm, kubectl, curl, cargo, external-dns, Kafka,
/// cosign, krew, kube-apiserver).
const OTHER_TOOLS: &[&str] = &[
    "--type",
    "--plain-http",
    "--verify",
    "--keyring",
    "--sign",
    "--insecure-ignore-tlog",
    "--certificate-identity-regexp",
    "--certificate-oidc-issuer",
    "--manifest",
    "--archive",
    "--set",
    "--cascade",
    "--create-namespace",
    "--cacert",
    "--data",
    "--reuse-values",
    "--override",
    "--dry-run",
    "--wait",
    "--cert",
    "--key",
    "--policy",
    "--test",
    "--service-node-port-range",
];

/// `--flag` tokens inside backticks, and on command lines of this binary.
fn named_flags(text: &str) -> BTreeSet<String> {
    let flag = |word: &str| -> Option<String> {
        let word = word.trim_matches(|c: char| "`'\"(),.;:".contains(c));
        let name: String = word
            .strip_prefix("--")?
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        (name.len() > 1 && name.chars().next()?.is_ascii_lowercase()).then(|| format!("--{name}"))
    };
    let mut flags = BTreeSet::new();
    for (i, part) in text.split('`').enumerate() {
        let in_backticks = i % 2 == 1;
        let command_line = part.contains("kafka-listener-injector ");
        if in_backticks || command_line {
            flags.extend(part.split_whitespace().filter_map(flag));
        }
    }
    flags
}

#[test]
fn every_flag_the_docs_name_exists() {
    let defined = defined_flags();
    let mut unknown = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for flag in named_flags(&text) {
            if !defined.contains(&flag) && !OTHER_TOOLS.contains(&flag.as_str()) {
                unknown.push(format!("{}: {flag}", page.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the docs name flags no command defines:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn every_injection_flag_is_in_the_settings_reference() {
    let reference = std::fs::read_to_string(root().join("docs/settings.md")).unwrap();
    let documented = named_flags(&reference);
    let command = clap::Command::new("injection");
    let command = <InjectionArgs as clap::Args>::augment_args(command);
    let missing: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .map(|long| format!("--{long}"))
        .filter(|flag| !documented.contains(flag))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/settings.md does not document {missing:?}"
    );
}
