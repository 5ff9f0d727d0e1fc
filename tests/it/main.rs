//! Integration tests: the real binaries' code against moto's server through
//! the real AWS SDK clients.

mod audit;
mod checkpoint_conformance;
mod deploy;
mod dynamodb;
mod efs;
mod faults;
mod image;
mod lambda_logs;
mod metrics;
mod moto;
mod poll;
mod readme;
mod rig;
mod shipper;
mod shipper_bad_input;
mod shipper_cli;
mod shipper_exact;
mod shipper_faults;
mod shipper_memory;
mod shipper_reliability;
mod shipper_segments;
mod sidecar;
mod sidecar_faults;
mod sidecar_passes;
mod sidecar_proxy;
mod sidecar_rig;
mod sidecar_segments;
mod template;
mod tomcat;
