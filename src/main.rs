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
    /// Log one JSON object per line (same as `log.json = true`); filters come from `RUST_LOG` or `log.level`.
    #[arg(long, global = true)]
    log_json: bool,
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
    /// Benchmarks; each prints `key=value` lines.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Validate the config (and Kafka client properties) and print the effective values.
    CheckConfig,
    /// Embed a catalogue file (product events, one per line; `image_url` may be a
    /// local path or file:// URL) into the store; resumable. Prints a key=value summary.
    Backfill {
        /// The catalogue (e.g. from `adrec catalog-from-dir`).
        #[arg(long)]
        catalog: PathBuf,
    },
    /// Print one product event per image of a folder (input for `backfill`).
    CatalogFromDir {
        /// Folder of JPEG/PNG/WebP images; product id = file stem.
        dir: PathBuf,
    },
    /// Every stored product's top-K most similar other products, as JSON lines.
    Similar {
        /// Neighbours per product.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Output file.
        #[arg(long, default_value = "similar.jsonl")]
        out: PathBuf,
    },
    /// Retrieval quality of the stored catalogue against labels (key=value lines).
    Eval {
        /// Lines {"product_id", "label", "near_duplicates": [...]}.
        #[arg(long)]
        labels: PathBuf,
        /// The k of recall@k.
        #[arg(long, default_value_t = 9)]
        k: usize,
        /// Score the raw vectors instead of the fitted space's.
        #[arg(long)]
        raw: bool,
    },
    /// Fit the catalogue-adapted transform on the stored catalogue, move the
    /// stored vectors into the new space and republish the lists (worker stopped).
    Refit,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Embedding cost of the configured (colour-augmented) embedder vs the plain model, same images.
    ColourCost {
        /// Folder of JPEG/PNG images.
        #[arg(long)]
        images: PathBuf,
        /// Images used (sorted by name).
        #[arg(long, default_value_t = 300)]
        limit: usize,
    },
    /// Incremental list maintenance vs re-running every ad's query, on seeded
    /// clustered vectors in a brute-force in-memory store. The default scale
    /// (100k ads x 1M products) needs ~4 GB of RAM and several minutes; use
    /// e.g. `--ads 1000 --products 20000` for a quick run.
    Maintain(adrec::bench::MaintainParams),
    /// Embedding throughput: ONNX Runtime alone, the full pipeline (bytes →
    /// vector) and a Python onnxruntime + Pillow baseline, on the same images.
    Embed {
        /// Folder of JPEG/PNG images; default: the demo catalogue (generated if missing).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Use at most this many images.
        #[arg(long)]
        max_images: Option<usize>,
        /// ONNX Runtime threads in total (the Python baseline gets the same).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Sessions the threads are split over.
        #[arg(long, default_value_t = 1)]
        sessions: usize,
        /// Images per model call; default: model.batch_size.
        #[arg(long)]
        batch: Option<usize>,
        /// The Python baseline script.
        #[arg(long, default_value = "benches/embed_python.py")]
        script: PathBuf,
    },
}

/// mimalloc rather than the system allocator: a rebuild at 100k ads frees
/// hundreds of MB of small allocations made on several threads, which glibc
/// keeps as resident memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Bench(BenchCommand::Maintain(params)) => {
            for line in adrec::bench::maintain(&params).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Bench(BenchCommand::ColourCost { images, limit }) => {
            let config = Config::load(&cli.config)?;
            let plain = app::load_embedder(&config)?;
            let adapted = adrec::adapt::configured_embedder(&config, plain.clone());
            for line in adrec::adapt::cost::compare(&plain, &adapted, &images, limit)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Embed { images, max_images, threads, sessions, batch, script }) => {
            let config = Config::load(&cli.config)?;
            let images = match images {
                Some(dir) => dir,
                None => {
                    let demo_dir = PathBuf::from("data/demo");
                    if !demo_dir.join("images").is_dir() {
                        demo::generate(&demo_dir, "http://127.0.0.1:8765", 40, 42)
                            .with_context(|| format!("writing the demo catalogue to {}", demo_dir.display()))?;
                    }
                    demo_dir.join("images")
                }
            };
            let params = adrec::bench_embed::EmbedBenchParams {
                images,
                max_images,
                threads,
                sessions,
                batch: batch.unwrap_or(config.model.batch_size),
                model: config.model.clone(),
                max_side: config.fetch.max_image_side,
                script,
            };
            for line in adrec::bench_embed::embed(&params).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::CheckConfig => {
            let config = Config::load(&cli.config)?;
            app::check_clients(&config)?;
            print!("{}", adrec::secrets::redacted_toml(&config));
            Ok(())
        }
        Command::Backfill { catalog } => {
            let config = Config::load(&cli.config)?;
            telemetry::init(&config.log);
            let embedder = adrec::adapt::configured_embedder(&config, app::load_embedder(&config)?);
            let sink = adrec::ops::open_sink(&config)?;
            let report = adrec::ops::backfill::backfill(&config, embedder, sink, &catalog)
                .await
                .with_context(|| format!("backfilling {}", catalog.display()))?;
            report.lines().iter().for_each(|l| println!("{l}"));
            Ok(())
        }
        Command::CatalogFromDir { dir } => {
            for line in adrec::ops::catalog::catalog_from_dir(&dir)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Similar { k, out } => {
            let config = Config::load(&cli.config)?;
            let (n, space) = adrec::ops::similar::similar(&config, k, &out).await?;
            println!("similar.products={n}\nsimilar.k={k}\nsimilar.space={space}\nsimilar.out={}", out.display());
            Ok(())
        }
        Command::Eval { labels, k, raw } => {
            let config = Config::load(&cli.config)?;
            for line in adrec::ops::eval::eval(&config, &labels, k, raw).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Refit => {
            let config = Config::load(&cli.config)?;
            telemetry::init(&config.log);
            let sink = adrec::ops::open_sink(&config)?;
            let r = adrec::adapt::refit::refit(&config, sink).await?;
            println!("refit.from={}\nrefit.to={}\nrefit.switched={}", r.from, r.to, r.switched);
            println!("refit.products={}\nrefit.ads={}\nrefit.lists_rebuilt={}", r.products, r.ads, r.lists);
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
            config.log.json |= cli.log_json;
            telemetry::init(&config.log);
            let shutdown = CancellationToken::new();
            app::cancel_on_signals(shutdown.clone());
            let report = app::run(config, shutdown).await?;
            print!("{}", app::format_report(&report, 5));
            Ok(())
        }
    }
}
