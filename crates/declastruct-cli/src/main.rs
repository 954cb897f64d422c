//! .what = the `declastruct` binary
//! .why = only calls the library's `run`, so everything else is testable; the same binary is each tunnel's
//! supervisor, which must be dispatched before anything else starts

/// mimalloc: planning allocates and frees many small JSON values; glibc's malloc spent a fifth of the engine
/// benchmark consolidating and unlinking chunks (docs/performance.md)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    declastruct_aws::run_supervisor_if_requested();
    declastruct_cli::run()
}
