//! HTML of the preview pages. Every value that came from input (ids,
//! titles, URLs) goes through [`escape`]; URLs are also limited to http(s)
//! by the model, and link paths are percent-encoded. The live updates are
//! rendered by `assets/preview.js` with DOM text nodes, never markup.

use std::fmt::Write;

use super::model::{AdPage, IndexRow, Row};

/// Escape text for HTML element content and double- or single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode an id as one URL path segment (`/` and everything else
/// outside the unreserved set is encoded).
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/assets/preview.css\"></head>\n<body>\n",
        escape(title)
    )
}

fn img(url: &Option<String>, class: &str, alt: &str) -> String {
    match url {
        Some(u) => format!(
            "<img class=\"{class}\" src=\"{}\" alt=\"{}\" referrerpolicy=\"no-referrer\">",
            escape(u),
            escape(alt)
        ),
        None => format!("<span class=\"{class} missing\">no image</span>"),
    }
}

/// The stock cell's class and text (shared with preview.js).
pub fn stock_label(in_stock: Option<bool>) -> (&'static str, &'static str) {
    match in_stock {
        Some(true) => ("in", "in stock"),
        Some(false) => ("out", "out of stock"),
        None => ("gone", "not in catalogue"),
    }
}

fn row(r: &Row) -> String {
    let (class, label) = stock_label(r.in_stock);
    format!(
        "<tr data-product-id=\"{id}\"><td class=\"rank\">{rank}</td><td>{img}</td><td class=\"pid\"><code>{id}</code></td>\
         <td class=\"title\">{title}</td><td class=\"score\">{score:.4}</td><td class=\"stock {class}\">{label}</td></tr>\n",
        id = escape(&r.product_id),
        rank = r.rank,
        img = img(&r.image_url, "thumb", ""),
        title = escape(r.title.as_deref().unwrap_or("")),
        score = r.score,
    )
}

/// The page of one ad (rendered complete, then kept live by preview.js).
pub fn ad_page(page: &AdPage) -> String {
    let mut out = head(&format!("adrec · ad {}", page.ad_id));
    let id = escape(&page.ad_id);
    let seg = escape(&path_segment(&page.ad_id));
    let _ = write!(
        out,
        "<header><a href=\"/\">all ads</a><h1>Ad <code>{id}</code></h1></header>\n\
         <main id=\"ad\" data-ad-id=\"{id}\">\n<section class=\"creative\"><h2>Creative</h2><div id=\"creative\">{creative}</div></section>\n\
         <section class=\"list\"><h2>Recommended products</h2>\n\
         <p class=\"meta\">version <span id=\"version\">{version}</span> · generated <span id=\"generated\">{generated}</span> · \
         model <span id=\"model\">{model}</span> · <a id=\"csv\" href=\"/ads/{seg}?format=csv\" download>download CSV</a> · \
         <span id=\"status\">not live</span></p>\n\
         <table><thead><tr><th>#</th><th>image</th><th>product</th><th>title</th><th>score</th><th>stock</th></tr></thead>\n<tbody id=\"items\">\n",
        creative = img(&page.creative, "creative", &format!("creative of {}", page.ad_id)),
        version = page.version.map(|v| v.to_string()).unwrap_or_else(|| "none".into()),
        generated = escape(page.generated_at.as_deref().unwrap_or("never")),
        model = escape(page.model.as_deref().unwrap_or("")),
    );
    for r in &page.rows {
        out.push_str(&row(r));
    }
    let _ = write!(
        out,
        "</tbody></table>\n<p id=\"empty\"{hidden}>No list is published for this ad (yet); this page updates when one is.</p>\n\
         </section></main>\n<script src=\"/assets/preview.js\"></script>\n</body></html>\n",
        hidden = if page.version.is_some() { " hidden" } else { "" },
    );
    out
}

/// The list of ads.
pub fn index(rows: &[IndexRow], total: usize) -> String {
    let mut out = head("adrec · ads");
    let _ = write!(
        out,
        "<header><h1>Ads</h1><p class=\"meta\">{total} ads with a published list{shown}. \
         <a href=\"/metrics\">metrics</a></p></header>\n<main><table><thead><tr><th>creative</th><th>ad</th>\
         <th>list version</th><th>items</th><th>updated</th></tr></thead>\n<tbody id=\"ads\">\n",
        shown = if rows.len() < total { format!(", first {} shown", rows.len()) } else { String::new() },
    );
    for r in rows {
        let _ = writeln!(
            out,
            "<tr data-ad-id=\"{id}\"><td>{img}</td><td><a href=\"/ads/{seg}\"><code>{id}</code></a></td>\
             <td>{version}</td><td>{items}</td><td>{updated}</td></tr>",
            id = escape(&r.ad_id),
            seg = escape(&path_segment(&r.ad_id)),
            img = img(&r.creative, "thumb", ""),
            version = r.version,
            items = r.items,
            updated = escape(&r.generated_at),
        );
    }
    out.push_str("</tbody></table></main>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "\"><script>alert(1)</script><img src=x onerror=alert(2)>'";

    #[test]
    fn input_never_reaches_the_page_as_markup() {
        let page = AdPage {
            ad_id: HOSTILE.into(),
            creative: None,
            version: Some(1),
            generated_at: Some("2026-12-04T10:00:00+00:00".into()),
            model: Some(HOSTILE.into()),
            rows: vec![Row {
                rank: 1,
                product_id: HOSTILE.into(),
                score: 0.5,
                image_url: Some("https://cdn.example/x.jpg?a=1&b=\"2\"".into()),
                title: Some(HOSTILE.into()),
                in_stock: Some(false),
            }],
        };
        let html = ad_page(&page);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("src=\"https://cdn.example/x.jpg?a=1&amp;b=&quot;2&quot;\""));
        // The only script is our own asset.
        assert_eq!(html.matches("<script").count(), 1);
        let index = index(
            &[IndexRow { ad_id: HOSTILE.into(), creative: None, version: 1, generated_at: HOSTILE.into(), items: 0 }],
            1,
        );
        assert!(!index.contains("<script"), "{index}");
        assert!(index.contains("href=\"/ads/%22%3E%3Cscript%3E"), "{index}");
    }

    #[test]
    fn ids_become_single_path_segments() {
        assert_eq!(path_segment("winter-42"), "winter-42");
        assert_eq!(path_segment("a/../b c"), "a%2F..%2Fb%20c");
    }
}
