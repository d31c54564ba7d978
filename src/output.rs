//! How the offline commands that print Kubernetes objects (`services`, `policy`) write them.

use std::io::Write;

use serde::Serialize;

/// The output format of a command that prints objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML documents, for `kubectl apply -f -`.
    Yaml,
    /// One JSON `List`.
    Json,
}

/// Writes `objects` in `format`.
pub fn write_objects<T: Serialize>(
    format: Format,
    objects: &[T],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match format {
        Format::Yaml => {
            for object in objects {
                writeln!(out, "---")?;
                serde_norway::to_writer(&mut *out, object)?;
            }
        }
        Format::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
            serde_json::to_writer_pretty(&mut *out, &list)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
