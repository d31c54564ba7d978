//! `services`: one Service per broker.

use std::io::Write;

use crate::cli::ServicesArgs;

pub fn run(_args: &ServicesArgs, _out: &mut impl Write) -> anyhow::Result<()> {
    anyhow::bail!("services is not built yet")
}
