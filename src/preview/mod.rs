//! The preview page: every ad's creative and current ranked list, live.
//!
//! `view` holds the published lists (fed by the sink decorator
//! [`crate::sink::live::LiveSink`]), `catalog` looks up what lists do not
//! carry (creatives, stock, titles), `model` shapes what the page shows,
//! `html` and `csv` render it, `routes` serves it next to the operator endpoints.

pub mod catalog;
pub mod csv;
pub mod html;
pub mod model;
pub mod routes;
pub mod view;

pub use routes::router;
