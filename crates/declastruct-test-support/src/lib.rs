//! .what = test fixtures for declastruct: a moto server, a PostgreSQL server, an SSM service simulator, free ports
//! and the binary's environment
//! .why = integration tests use real parts where users have real parts, each started on loopback and cleaned up

mod manifests;
mod moto;
mod ports;
mod postgres;
pub mod ssm_sim;

pub use manifests::large_manifest;
pub use moto::{Moto, SeededBastion};
pub use ports::{free_port, wait_for_port};
pub use postgres::Postgres;
