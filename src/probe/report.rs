//! The probe's report: one line per broker and address a person can read, or JSON.

use super::BrokerReport;

/// Prints the reports; `true` when every broker is usable from here.
pub fn write_reports(
    reports: &[BrokerReport],
    json: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<bool> {
    let healthy = reports.iter().all(|r| r.faults.is_empty());
    if json {
        serde_json::to_writer_pretty(
            &mut *out,
            &serde_json::json!({"healthy": healthy, "brokers": reports}),
        )?;
        writeln!(out)?;
        return Ok(healthy);
    }
    for report in reports {
        let addresses: Vec<String> = report
            .addresses
            .iter()
            .map(|a| {
                let tls = a.tls_name.as_deref().map_or_else(String::new, |name| {
                    format!(", TLS certificate valid for {name}")
                });
                match (a.connect_ms, a.answers_as) {
                    (Some(ms), Some(id)) => format!(
                        "{} (connect {ms:.1} ms{tls}, answers as broker {id})",
                        a.address
                    ),
                    (Some(ms), None) => format!("{} (connect {ms:.1} ms{tls})", a.address),
                    _ => format!("{} (unreachable)", a.address),
                }
            })
            .collect();
        let verdict = if report.faults.is_empty() {
            "ok"
        } else {
            "FAULT"
        };
        let rack = report
            .rack
            .as_deref()
            .map_or_else(String::new, |rack| format!(" (rack {rack:?})"));
        writeln!(
            out,
            "broker {}{rack} {} -> {}: {verdict}",
            report.node_id,
            report.advertised,
            if addresses.is_empty() {
                "-".to_owned()
            } else {
                addresses.join(", ")
            }
        )?;
        for fault in &report.faults {
            writeln!(out, "  {fault}")?;
        }
        for note in &report.notes {
            writeln!(out, "  note: {note}")?;
        }
    }
    let faulty = reports.iter().filter(|r| !r.faults.is_empty()).count();
    writeln!(
        out,
        "{} brokers, {faulty} a client here cannot use",
        reports.len()
    )?;
    Ok(healthy)
}
