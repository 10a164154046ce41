fn main() -> std::process::ExitCode {
    pzdns::cli::main()
}
