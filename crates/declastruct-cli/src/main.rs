//! .what = the `declastruct` binary
//! .why = only calls the library's `run`, so everything else is testable; the same binary is each tunnel's
//! supervisor, which must be dispatched before anything else starts

fn main() -> std::process::ExitCode {
    declastruct_aws::run_supervisor_if_requested();
    declastruct_cli::run()
}
