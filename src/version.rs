//! What this binary was built from: the crate version, the source revision and the build date
//! that build.rs stamps in. `--version` prints them; the image labels and the provenance
//! statement of `make image` carry the same values.

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from, or `unknown` when built outside a git checkout.
pub const REVISION: &str = env!("KLI_REVISION");

/// The build date, RFC 3339 UTC; `SOURCE_DATE_EPOCH` when the build set it (reproducible builds).
pub const BUILD_DATE: &str = env!("KLI_BUILD_DATE");

/// What `--version` prints after the program's name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nrevision: ",
    env!("KLI_REVISION"),
    "\nbuilt: ",
    env!("KLI_BUILD_DATE"),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_is_a_commit_or_unknown() {
        assert!(
            REVISION == "unknown"
                || (REVISION.len() == 40 && REVISION.bytes().all(|b| b.is_ascii_hexdigit())),
            "{REVISION:?}"
        );
    }

    #[test]
    fn build_date_is_rfc3339_utc() {
        let b = BUILD_DATE.as_bytes();
        assert_eq!(b.len(), 20, "{BUILD_DATE:?}");
        assert!(BUILD_DATE.ends_with('Z') && b[4] == b'-' && b[10] == b'T' && b[13] == b':');
        assert!(BUILD_DATE[..4].parse::<u32>().unwrap() >= 1970);
    }
}
