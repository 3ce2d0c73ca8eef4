//! What the page shows, assembled from the live view and the catalogue:
//! the same structure feeds the HTML, the CSV and the live (JSON) updates.

use serde::Serialize;

use super::catalog::Catalog;
use super::view::LiveLists;

/// One ranked product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// 1-based rank.
    pub rank: usize,
    /// Product id.
    pub product_id: String,
    /// Similarity to the ad's creative.
    pub score: f32,
    /// Thumbnail URL; `None` unless it is an absolute http(s) URL.
    pub image_url: Option<String>,
    /// Display title, if the product is still in the catalogue.
    pub title: Option<String>,
    /// Current stock state (`None`: the product is no longer in the catalogue).
    pub in_stock: Option<bool>,
}

/// One ad's page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdPage {
    /// Ad id.
    pub ad_id: String,
    /// Creative URL; `None` unless http(s) or if the ad is unknown.
    pub creative: Option<String>,
    /// Version of the list shown (`None`: nothing published, or the ad was deleted).
    pub version: Option<u64>,
    /// When the list was computed (RFC 3339).
    pub generated_at: Option<String>,
    /// Embedding model of the scores.
    pub model: Option<String>,
    /// The ranked list, best first.
    pub rows: Vec<Row>,
}

/// One line of the index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexRow {
    /// Ad id.
    pub ad_id: String,
    /// Creative URL (http(s) only).
    pub creative: Option<String>,
    /// List version.
    pub version: u64,
    /// When the list was computed (RFC 3339).
    pub generated_at: String,
    /// Items in the list.
    pub items: usize,
}

/// `url` if it is an absolute http or https URL (anything else, e.g.
/// `javascript:` or `data:`, is never rendered).
pub fn safe_image_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https").then(|| parsed.to_string())
}

/// Assemble an ad's page. Catalogue lookups are best effort: a store error
/// leaves the extra fields empty rather than failing the page.
pub async fn ad_page(ad_id: &str, view: &LiveLists, catalog: &dyn Catalog) -> AdPage {
    let list = view.get(ad_id);
    let ids: Vec<String> = list.iter().flat_map(|l| l.items.iter().map(|i| i.product_id.clone())).collect();
    let products = catalog.products(ids).await.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "preview: product lookup failed");
        Default::default()
    });
    let ad = catalog.ads(vec![ad_id.to_string()]).await.ok().and_then(|mut m| m.remove(ad_id));
    let rows = list
        .iter()
        .flat_map(|l| l.items.iter())
        .enumerate()
        .map(|(i, item)| {
            let info = products.get(&item.product_id);
            Row {
                rank: i + 1,
                product_id: item.product_id.clone(),
                score: item.score,
                image_url: safe_image_url(&item.image_url),
                title: info.and_then(|p| p.title.clone()),
                in_stock: info.map(|p| p.in_stock),
            }
        })
        .collect();
    AdPage {
        ad_id: ad_id.to_string(),
        creative: ad.and_then(|a| safe_image_url(&a.image_url)),
        version: list.as_ref().map(|l| l.version),
        generated_at: list.as_ref().map(|l| l.generated_at.to_rfc3339()),
        model: list.as_ref().map(|l| l.model.clone()),
        rows,
    }
}

/// The index: up to `limit` ads with a published list, by id, and the total count.
pub async fn index(view: &LiveLists, catalog: &dyn Catalog, limit: usize) -> (Vec<IndexRow>, usize) {
    let (lists, total) = view.snapshot(limit);
    let ids = lists.iter().map(|l| l.ad_id.clone()).collect();
    let ads = catalog.ads(ids).await.unwrap_or_default();
    let rows = lists
        .iter()
        .map(|l| IndexRow {
            ad_id: l.ad_id.clone(),
            creative: ads.get(&l.ad_id).and_then(|a| safe_image_url(&a.image_url)),
            version: l.version,
            generated_at: l.generated_at.to_rfc3339(),
            items: l.items.len(),
        })
        .collect();
    (rows, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_images_are_shown() {
        assert_eq!(safe_image_url("https://cdn.example/a b.jpg").as_deref(), Some("https://cdn.example/a%20b.jpg"));
        assert!(safe_image_url("http://127.0.0.1:8765/x.jpg").is_some());
        for bad in ["javascript:alert(1)", "data:image/png;base64,AAAA", "file:///etc/passwd", "/relative.jpg", ""] {
            assert_eq!(safe_image_url(bad), None, "{bad}");
        }
    }
}
