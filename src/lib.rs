//! kafka-listener-injector: a Kubernetes mutating admission webhook that gives every Kafka broker
//! pod the advertised listeners naming its own DNS name.

pub mod admission;
pub mod certs;
pub mod cli;
pub mod deadline;
pub mod inject;
pub mod log_format;
pub mod log_writer;
pub mod manifests;
pub mod outcome;
pub mod output;
pub mod policy;
pub mod preview;
pub mod probe;
pub mod reconcile;
pub mod scram;
pub mod server;
pub mod services;
pub mod telemetry;
pub mod tls;
