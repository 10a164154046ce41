// Reloads build a whole snapshot beside the old one and free the old one:
// mimalloc returns that memory where glibc's malloc kept most of it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pzdns::cli::main()
}
