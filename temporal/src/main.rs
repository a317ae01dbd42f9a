use clap::Parser;
use temporal::cli::Cli;

fn main() -> std::process::ExitCode {
    shared::logging::init();
    let cli = Cli::parse();
    match cli.command.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
