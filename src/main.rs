//! `adrec` command line: parses arguments and calls into the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use adrec::config::{Config, DEFAULT_CONFIG};
use adrec::{app, demo, telemetry};

/// Keeps "products that look like this ad" lists fresh as a catalogue changes.
///
/// Reads product and ad-creative events, embeds each image with an ONNX
/// image model, stores the vectors in Qdrant, and publishes every ad's ranked
/// list of visually similar products whenever it changes.
#[derive(Parser)]
#[command(name = "adrec", version, about, long_about)]
struct Cli {
    /// Config file; `ADREC_*` environment variables override its keys
    /// (nested keys with `__`, e.g. ADREC_FETCH__TIMEOUT_MS=2000).
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG, env = "ADREC_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the worker: consume events until the input ends (files) or SIGTERM.
    Run {
        /// Override `source.input` (directory with products.jsonl/ads.jsonl, a .jsonl file, or - for stdin).
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Print every ad's current list (top N) from the files sink.
    Lists {
        /// Items per ad to show.
        #[arg(long, default_value_t = 5)]
        top: usize,
    },
    /// Generate the demo catalogue: product and ad images plus their events.
    DemoData {
        /// Output directory (images/ and events/ are created inside).
        #[arg(long, default_value = "data/demo")]
        out: PathBuf,
        /// Base URL the images will be served from.
        #[arg(long, default_value = "http://127.0.0.1:8765")]
        base_url: String,
        /// Products per family (6 families).
        #[arg(long, default_value_t = 40)]
        per_family: usize,
        /// Random seed (same seed, same catalogue).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Validate the config (and Kafka client properties) and print the effective values.
    CheckConfig,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::DemoData { out, base_url, per_family, seed } => {
            let cat = demo::generate(&out, &base_url, per_family, seed)
                .with_context(|| format!("writing the demo catalogue to {}", out.display()))?;
            println!("demo catalogue: {} products, {} ads in {}", cat.products, cat.ads, out.display());
            Ok(())
        }
        Command::CheckConfig => {
            let config = Config::load(&cli.config)?;
            app::check_clients(&config)?;
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Lists { top } => {
            let config = Config::load(&cli.config)?;
            print!("{}", app::format_lists_dir(&config.output_dir(), top)?);
            Ok(())
        }
        Command::Run { input } => {
            let mut config = Config::load(&cli.config)?;
            if let Some(input) = input {
                config.source.input = input;
            }
            telemetry::init(&config.log);
            let shutdown = CancellationToken::new();
            app::cancel_on_signals(shutdown.clone());
            let report = app::run(config, shutdown).await?;
            print!("{}", app::format_report(&report, 5));
            Ok(())
        }
    }
}
