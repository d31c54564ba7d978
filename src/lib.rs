//! kafka-listener-injector: a Kubernetes mutating admission webhook that gives every Kafka broker
//! pod the advertised listeners naming its own DNS name.
//!
//! `inject` is the pure core; every other module is one command's edge around it, or plumbing
//! that several commands share (`telemetry`, `output`, `outcome`). ARCHITECTURE.md has the map.

pub mod certs;
pub mod cli;
pub mod dns;
pub mod inject;
pub mod outcome;
pub mod output;
pub mod policy;
pub mod preview;
pub mod probe;
pub mod reconcile;
pub mod roll;
pub mod services;
pub mod telemetry;
pub mod version;
pub mod wait_for_name;
pub mod webhook;
