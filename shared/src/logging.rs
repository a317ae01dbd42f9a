//! Logging set-up shared by the binaries: `tracing` to stderr, level from `RUST_LOG` (default
//! `info`), colours only when stderr is a terminal (Slurm log files stay plain text).

/// Install the global subscriber; call once at the start of `main`.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
