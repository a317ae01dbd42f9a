use clap::Parser;
use extractor::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    shared::logging::init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::SampleData(args) => extractor::sample_data::run(args),
        Command::Extract(args) => extractor::extract::run(args),
        Command::Faces(args) => extractor::faces::command::run(args),
        Command::Inspect(args) => extractor::inspect::run(args),
        Command::Bench(args) => extractor::bench::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
