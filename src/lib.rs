//! adrec: keeps "products that look like this ad" lists fresh as a catalogue
//! changes.
//!
//! Data flows source → decode (events) → fetch → embed → store → recommend
//! → sink; `pipeline` wires the stages and `app` builds them from `config`.

pub mod adapt;
pub mod app;
pub mod bench;
pub mod bench_embed;
pub mod config;
pub mod demo;
pub mod embed;
pub mod events;
pub mod fetch;
pub mod fuzzing;
pub mod http;
pub mod kafka;
pub mod ops;
pub mod peek;
pub mod pipeline;
pub mod preview;
pub mod progress;
pub mod quality;
pub mod recommend;
pub mod records;
pub mod secrets;
pub mod sink;
pub mod source;
pub mod store;
pub mod telemetry;
