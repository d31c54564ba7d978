//! Stamps the binary with the source revision and the build date that `--version` prints, the
//! image labels carry and the provenance statement records (tests/image/build.sh passes the same
//! values in, so all three agree).
//!
//! - `KLI_REVISION`: taken from the environment when set, else `git rev-parse HEAD`, else
//!   `unknown` (a source tarball without `.git`).
//! - `KLI_BUILD_DATE`: RFC 3339 UTC, from `SOURCE_DATE_EPOCH` when set (reproducible builds),
//!   else the time this script ran.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KLI_REVISION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let revision = std::env::var("KLI_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned());
    // A new commit or checkout moves HEAD or the branch it names: rebuild the stamp then.
    for path in git_state_files() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let seconds = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("SOURCE_DATE_EPOCH={text:?} is not a count of seconds")),
        _ => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    println!("cargo:rustc-env=KLI_REVISION={revision}");
    println!("cargo:rustc-env=KLI_BUILD_DATE={}", rfc3339(seconds));
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

fn git_revision() -> Option<String> {
    git(&["rev-parse", "HEAD"])
}

/// HEAD, its reflog (written by every commit, checkout and reset, even when the branch's ref is
/// packed), the ref it points to and packed-refs. In a worktree, HEAD and its reflog live in the
/// worktree's git directory, the refs in the common one.
fn git_state_files() -> Vec<PathBuf> {
    let (Some(dir), Some(common)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) else {
        return Vec::new();
    };
    let (dir, mut common) = (PathBuf::from(dir), PathBuf::from(common));
    if common.is_relative() {
        common = std::env::current_dir().unwrap_or_default().join(common);
    }
    let mut files = vec![
        dir.join("HEAD"),
        dir.join("logs/HEAD"),
        common.join("packed-refs"),
    ];
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        files.push(common.join(Path::new(&reference)));
    }
    files.into_iter().filter(|f| f.exists()).collect()
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (the civil-from-days algorithm, so the
/// build needs no date crate).
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}
