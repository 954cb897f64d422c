//! .what = the native transport against the workspace's SSM simulator, the one the real session-manager-plugin
//! is tested against (`declastruct-test-support`)
//! .why = one stand-in for the service and the agent, checked against the real plugin, rather than a fake of
//! this crate's own

mod simulator;
