//! Integration tests: the real `declastruct` binary, in a temporary folder with its own DECLASTRUCT_HOME,
//! against a moto server of its own.

mod apply;
mod connect;
mod doc_commands;
mod docs;
mod experience;
mod faithful;
mod first_hour;
mod healing;
mod holders;
mod hostile_inputs;
mod idle;
mod lifecycle;
mod manifest_errors;
mod names;
mod output;
mod plan;
mod real_chain;
mod schema;
mod scripts;
mod sdk;
mod state_safety;
mod support;
mod targets;
mod transport;
mod trust;
mod variables;
