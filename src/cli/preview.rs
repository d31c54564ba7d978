//! `preview`: which manifests to read and how to print the result.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::InjectionArgs;
use crate::preview;
use crate::preview::manifests::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PreviewOutput {
    /// One line per pod: outcome and injected value, warning, skip reason or denial.
    Summary,
    /// Per injected pod, the JSON patch `serve` returns, one per line.
    Patch,
    /// One JSON object per pod: outcome, containers, env, warnings or the denial.
    Json,
    /// The pods as they would be stored, as YAML documents.
    Yaml,
}

/// Where `preview` and `services` read pods from, and how StatefulSets are expanded.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Manifest files (YAML or JSON, multi-document, List, helm template output); - for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        env = "KLI_FILENAME",
        required = true,
        value_delimiter = ','
    )]
    pub files: Vec<PathBuf>,
    /// Expand StatefulSets to this many pods instead of spec.replicas.
    #[arg(long, env = "KLI_REPLICAS")]
    pub replicas: Option<u32>,
    /// Namespace of objects that name none.
    #[arg(short = 'n', long, env = "KLI_NAMESPACE", default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub manifests: ManifestArgs,
    #[arg(short = 'o', long, env = "KLI_OUTPUT", value_enum, default_value_t = PreviewOutput::Summary)]
    pub output: PreviewOutput,
    #[command(flatten)]
    pub injection: InjectionArgs,
}

impl ManifestArgs {
    pub(super) fn source(&self) -> Source {
        Source {
            files: self.files.clone(),
            replicas: self.replicas,
            namespace: self.namespace.clone(),
        }
    }
}

impl PreviewArgs {
    pub fn config(&self) -> anyhow::Result<preview::Config> {
        Ok(preview::Config {
            source: self.manifests.source(),
            output: match self.output {
                PreviewOutput::Summary => preview::Output::Summary,
                PreviewOutput::Patch => preview::Output::Patch,
                PreviewOutput::Yaml => preview::Output::Yaml,
                PreviewOutput::Json => preview::Output::Json,
            },
            defaults: self.injection.defaults()?,
        })
    }
}
