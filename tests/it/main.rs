//! Integration tests: the real binaries' code against moto's server through
//! the real AWS SDK clients.

mod checkpoint_conformance;
mod dynamodb;
mod moto;
mod rig;
mod shipper;
mod shipper_bad_input;
mod shipper_cli;
mod sidecar;
mod sidecar_rig;
