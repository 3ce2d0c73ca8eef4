//! HTTP routes of the preview: `/` (ads), `/ads/{ad_id}` (page; `?format=csv`
//! or a `.csv` suffix downloads the list, `?format=json` returns it),
//! `/ads/{ad_id}/events` (Server-Sent Events: the page's data on connect and
//! after every publication of the ad's list) and the page's two assets.
//! Every response carries a Content-Security-Policy that allows only our
//! own script and style, and images from http(s).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::catalog::Catalog;
use super::view::LiveLists;
use super::{csv, html, model};

/// Ads listed on the index page at most.
const INDEX_LIMIT: usize = 1000;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src http: https:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the preview routes read.
#[derive(Clone)]
pub struct PreviewState {
    view: LiveLists,
    catalog: Arc<dyn Catalog>,
}

/// The preview routes over `view`, with extra fields from `catalog`.
pub fn router(view: LiveLists, catalog: Arc<dyn Catalog>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ads/{ad_id}", get(ad))
        .route("/ads/{ad_id}/events", get(events))
        .route(
            "/assets/preview.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("assets/preview.js")) }),
        )
        .route(
            "/assets/preview.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("assets/preview.css")) }),
        )
        .layer(axum::middleware::map_response(security_headers))
        .with_state(PreviewState { view, catalog })
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index(State(s): State<PreviewState>) -> Response {
    let (rows, total) = model::index(&s.view, s.catalog.as_ref(), INDEX_LIMIT).await;
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html::index(&rows, total)).into_response()
}

/// `?format=`.
#[derive(Deserialize)]
struct Format {
    format: Option<String>,
}

async fn ad(State(s): State<PreviewState>, Path(ad_id): Path<String>, Query(q): Query<Format>) -> Response {
    let mut format = q.format.unwrap_or_else(|| "html".into());
    // `/ads/{id}.csv`, unless an ad is really named that way.
    let suffixed = ad_id.strip_suffix(".csv").filter(|stem| s.view.get(&ad_id).is_none() && s.view.get(stem).is_some());
    let ad_id = match suffixed {
        Some(stem) => {
            format = "csv".into();
            stem.to_string()
        }
        None => ad_id,
    };
    let page = model::ad_page(&ad_id, &s.view, s.catalog.as_ref()).await;
    let status = if page.version.is_none() && page.creative.is_none() { StatusCode::NOT_FOUND } else { StatusCode::OK };
    match format.as_str() {
        "csv" => {
            let disposition = format!("attachment; filename=\"{}\"", csv::file_name(&ad_id));
            let disposition = HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment"));
            (
                status,
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                csv::list_csv(&page),
            )
                .into_response()
        }
        "json" => (status, axum::Json(page)).into_response(),
        "html" => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html::ad_page(&page)).into_response(),
        _ => (StatusCode::BAD_REQUEST, "format must be html, csv or json\n").into_response(),
    }
}

/// Counts open live connections while alive.
struct ClientGuard;

impl ClientGuard {
    fn new() -> Self {
        crate::telemetry::preview_clients(1.0);
        Self
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        crate::telemetry::preview_clients(-1.0);
    }
}

async fn events(
    State(s): State<PreviewState>,
    Path(ad_id): Path<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before the first snapshot, so nothing published in between is missed.
    let changes = s.view.subscribe();
    let start = (true, changes, s, ad_id, ClientGuard::new());
    let stream = futures::stream::unfold(start, |(first, mut changes, s, ad_id, guard)| async move {
        if !first {
            loop {
                match changes.recv().await {
                    Ok(change) if change.ad_id == ad_id => break,
                    Ok(_) => {}
                    // Fell behind: the snapshot below is complete anyway.
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return None,
                }
            }
        }
        let page = model::ad_page(&ad_id, &s.view, s.catalog.as_ref()).await;
        let event = Event::default()
            .event("list")
            .json_data(&page)
            .unwrap_or_else(|e| Event::default().event("failure").data(e.to_string()));
        Some((Ok(event), (false, changes, s, ad_id, guard)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
