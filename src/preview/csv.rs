//! "Download CSV" of an ad's list: RFC 4180 quoting, and cells that a
//! spreadsheet would run as a formula are prefixed with `'`.

use super::model::AdPage;

/// The list as CSV: `rank,product_id,score,in_stock,title,image_url`.
pub fn list_csv(page: &AdPage) -> String {
    let mut out = String::from("rank,product_id,score,in_stock,title,image_url\r\n");
    for r in &page.rows {
        let stock = match r.in_stock {
            Some(true) => "true",
            Some(false) => "false",
            None => "",
        };
        let cells = [
            r.rank.to_string(),
            cell(&r.product_id),
            format!("{:.6}", r.score),
            stock.to_string(),
            cell(r.title.as_deref().unwrap_or("")),
            cell(r.image_url.as_deref().unwrap_or("")),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A safe file name for the download: the id with anything unusual replaced.
pub fn file_name(ad_id: &str) -> String {
    let safe: String = ad_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(100)
        .collect();
    format!("{safe}.csv")
}

fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preview::model::Row;

    #[test]
    fn quotes_and_defuses_formulas() {
        let page = AdPage {
            ad_id: "a".into(),
            creative: None,
            version: Some(1),
            generated_at: None,
            model: None,
            rows: vec![Row {
                rank: 1,
                product_id: "=HYPERLINK(\"x\")".into(),
                score: 0.25,
                image_url: Some("https://c/x.jpg".into()),
                title: Some("Polo, \"classic\"".into()),
                in_stock: Some(true),
            }],
        };
        let csv = list_csv(&page);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], "rank,product_id,score,in_stock,title,image_url");
        assert_eq!(lines[1], "1,\"'=HYPERLINK(\"\"x\"\")\",0.250000,true,\"Polo, \"\"classic\"\"\",https://c/x.jpg");
        assert_eq!(file_name("a/b\"c"), "a_b_c.csv");
    }
}
