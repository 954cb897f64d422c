//! .what = the `declastruct` binary
//! .why = only calls the library's `run`, so everything else is testable

fn main() -> std::process::ExitCode {
    declastruct_cli::run()
}
