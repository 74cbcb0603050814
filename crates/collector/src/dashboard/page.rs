//! The dashboard's pages as HTML strings, with their charts as inline SVG,
//! every interpolated string escaped.
//!
//! Server-rendered SVG rather than a vendored chart library: the page needs
//! no script at all, so the Content-Security-Policy can forbid scripts, the
//! binary carries no third-party JavaScript to keep patched, and a browser
//! test sees the chart in the DOM it dumps.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hush_report::Metric;
pub use hush_web::escape;
use hush_web::query_value as query;

use crate::estimate::EstimateRow;

/// The stylesheet, served as `/dashboard/style.css` (inline styles would
/// need `'unsafe-inline'` in the policy).
pub const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f7f8fa}
header{display:flex;justify-content:space-between;align-items:center;padding:.6em 1.2em;background:#1d2430;color:#fff}
header form{margin:0}
main{padding:1em 1.2em;max-width:72em}
nav a{display:inline-block;margin:0 .6em .4em 0;color:#245;}
nav a.on{font-weight:bold;text-decoration:none;color:#000}
form.view{margin:.6em 0 1em}
form.view label{margin-right:1em}
table{border-collapse:collapse;font-size:.9em;margin-top:1em}
td,th{border-bottom:1px solid #dde;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.withheld{color:#8a4b00}
.error{color:#a00}
svg{background:#fff;border:1px solid #dde}
.login{max-width:28em;margin:4em auto;background:#fff;padding:1.5em;border:1px solid #dde}
.login input[type=password]{width:100%;box-sizing:border-box;margin:.5em 0 1em}
";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/dashboard/style.css\"></head>\
         <body>{body}</body></html>\n",
        escape(title)
    )
}

/// An error page.
pub fn error(message: &str) -> String {
    document(
        "Hush dashboard",
        &format!(
            "<main><p class=\"error\">{}</p><p><a href=\"/dashboard\">Back to the dashboard</a></p></main>",
            escape(message)
        ),
    )
}

/// The sign-in page: a token field, or with `once` (a one-time link's
/// token) a single button.
pub fn login(csrf: &str, error: Option<&str>, once: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let fields = match once {
        Some(token) => format!(
            "<p>This link signs you in once.</p>\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <input type=\"hidden\" name=\"once\" value=\"true\">",
            escape(token)
        ),
        None => "<label for=\"token\">Admin token</label>\
                 <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required>"
            .to_owned(),
    };
    document(
        "Sign in: Hush dashboard",
        &format!(
            "<div class=\"login\"><h1>Hush dashboard</h1>{error}\
             <form method=\"post\" action=\"/dashboard/login\">{fields}\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign in</button></form>\
             <p>An admin token comes from <code>hush collector token create --admin</code>.</p></div>",
            escape(csrf)
        ),
    )
}

/// What the dashboard page shows.
pub struct Dashboard<'a> {
    /// The session's CSRF token, for the sign-out form.
    pub csrf: &'a str,
    /// Every metric of the catalog.
    pub metrics: &'a [Metric],
    /// The metric shown.
    pub metric: Option<&'a Metric>,
    /// Cohorts with data for the metric.
    pub cohorts: &'a [String],
    /// The cohort shown.
    pub cohort: Option<&'a str>,
    /// First day shown.
    pub from: Option<String>,
    /// Last day shown.
    pub to: Option<String>,
    /// The released rows of the metric and cohort.
    pub rows: &'a [EstimateRow],
    /// Cells withheld in the range, over every metric and cohort.
    pub withheld: usize,
    /// Devices a cell needs to be released.
    pub min_devices: u64,
    /// The collector's per-report epsilon.
    pub epsilon: f64,
    /// The collector's per-value epsilon.
    pub epsilon_perm: f64,
}

/// The dashboard page.
pub fn dashboard(d: &Dashboard<'_>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><strong>Hush dashboard</strong>\
         <form method=\"post\" action=\"/dashboard/logout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Sign out</button></form></header><main>",
        escape(d.csrf)
    );
    let range = |extra: &str| {
        let mut q = extra.to_owned();
        if let Some(c) = d.cohort {
            let _ = write!(q, "&cohort={}", query(c));
        }
        if let Some(f) = &d.from {
            let _ = write!(q, "&from={}", query(f));
        }
        if let Some(t) = &d.to {
            let _ = write!(q, "&to={}", query(t));
        }
        q
    };
    body.push_str("<nav>");
    for m in d.metrics {
        let on = if d.metric.is_some_and(|s| s.name == m.name) {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(
            body,
            "<a{on} href=\"/dashboard?{}\">{}</a>",
            escape(&range(&format!("metric={}", query(m.name)))),
            escape(m.name)
        );
    }
    body.push_str("</nav>");
    let Some(metric) = d.metric else {
        body.push_str("<p>The catalog has no metrics.</p></main>");
        return document("Hush dashboard", &body);
    };
    let _ = write!(
        body,
        "<h1 id=\"metric\">{}</h1><p>{}.{} Mechanism: {}. \
         Each report reveals at most &epsilon; = {} about its metric, all of a device's reports about one unchanged value at most &epsilon; = {}.</p>",
        escape(metric.name),
        escape(metric.description),
        if metric.unit.is_empty() {
            String::new()
        } else {
            format!(" Unit: {}.", escape(metric.unit))
        },
        escape(metric.mechanism_name()),
        d.epsilon,
        d.epsilon_perm
    );
    // The view: a GET form, so it changes nothing and needs no CSRF token.
    let _ = write!(
        body,
        "<form class=\"view\" method=\"get\" action=\"/dashboard\">\
         <input type=\"hidden\" name=\"metric\" value=\"{}\">\
         <label>Cohort <select name=\"cohort\" id=\"cohort\">",
        escape(metric.name)
    );
    for c in d.cohorts {
        let selected = if Some(c.as_str()) == d.cohort {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<option value=\"{}\"{selected}>{}</option>",
            escape(c),
            escape(c)
        );
    }
    let _ = write!(
        body,
        "</select></label><label>From <input type=\"date\" name=\"from\" value=\"{}\"></label>\
         <label>To <input type=\"date\" name=\"to\" value=\"{}\"></label>\
         <button type=\"submit\">Show</button></form>",
        escape(d.from.as_deref().unwrap_or("")),
        escape(d.to.as_deref().unwrap_or(""))
    );
    let download = range(&format!("metric={}", query(metric.name)));
    let _ = write!(
        body,
        "<p>Download these rows: <a id=\"csv\" href=\"/dashboard/rows.csv?{q}\">CSV</a> \
         <a id=\"parquet\" href=\"/dashboard/rows.parquet?{q}\">Parquet</a> \
         (the columns of <code>hush collector export</code>).</p>",
        q = escape(&download)
    );
    if d.rows.is_empty() {
        body.push_str("<p>No released estimate in this range and cohort.</p>");
    } else {
        body.push_str(&chart(d.rows, metric.unit));
    }
    if d.withheld > 0 {
        // A count over every metric and cohort, as /v1/estimates gives it:
        // naming the metric, cohort or day of a small cell would say that
        // a few devices of that cohort reported then.
        let _ = write!(
            body,
            "<p class=\"withheld\" id=\"withheld\">{} cell(s) of this range, over all metrics and cohorts, are withheld: fewer than {} devices reported in them. Which ones is not shown, since that would tell that a few devices of a cohort reported on a day.</p>",
            d.withheld, d.min_devices
        );
    }
    body.push_str(
        "<table id=\"rows\"><thead><tr><th>day</th><th>bucket</th><th>estimate</th>\
         <th>95% interval</th><th>reports</th></tr></thead><tbody>",
    );
    for r in d.rows {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4} to {:.4}</td><td>{}</td></tr>",
            escape(&r.period_start),
            escape(&r.bucket),
            r.estimate,
            r.ci_low,
            r.ci_high,
            r.reports
        );
    }
    body.push_str("</tbody></table></main>");
    document(&format!("{}: Hush dashboard", metric.name), &body)
}

/// Colours of the series, in order.
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

/// One series per bucket (a mean's single `mean`), estimates over the days
/// with their 95% intervals as bars. A distribution's buckets are shares of
/// devices, its quantile rows are in the metric's unit: one axis cannot hold
/// both, so the chart shows the buckets and the table the quantiles.
fn chart(rows: &[EstimateRow], unit: &str) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 300.0, 64.0, 150.0, 16.0, 40.0);
    let buckets = rows.iter().any(|r| r.bucket_index >= 0);
    let rows: Vec<&EstimateRow> = rows
        .iter()
        .filter(|r| !buckets || r.bucket_index >= 0)
        .collect();
    let unit = if buckets { "share of devices" } else { unit };
    let mut series: BTreeMap<(i32, &str), Vec<&EstimateRow>> = BTreeMap::new();
    for r in &rows {
        series
            .entry((r.bucket_index, &r.bucket))
            .or_default()
            .push(r);
    }
    let periods: Vec<u32> = {
        let mut p: Vec<u32> = rows.iter().map(|r| r.period).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    // Only finite ends set the scale; an open interval is drawn to the edge.
    let finite = |v: &f64| v.is_finite();
    let lo = rows
        .iter()
        .flat_map(|r| [r.ci_low, r.estimate])
        .filter(finite)
        .fold(0.0, f64::min);
    let hi = rows
        .iter()
        .flat_map(|r| [r.ci_high, r.estimate])
        .filter(finite)
        .fold(f64::NEG_INFINITY, f64::max);
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let x = |p: u32| {
        let i = periods.iter().position(|q| *q == p).unwrap_or(0) as f64;
        let n = (periods.len().max(2) - 1) as f64;
        left + (w - left - right) * if periods.len() == 1 { 0.5 } else { i / n }
    };
    let y = |v: f64| {
        let v = if v.is_nan() { lo } else { v.clamp(lo, hi) };
        top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo))
    };
    let mut svg = format!(
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"estimates with 95% intervals\">"
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * f64::from(k) / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 6.0,
            y(v) + 4.0,
            tick(v),
            y = y(v)
        );
    }
    for (i, p) in periods.iter().enumerate() {
        // At most about eight date labels.
        if i % periods.len().div_ceil(8) == 0 {
            let label = rows
                .iter()
                .find(|r| r.period == *p)
                .map_or(String::new(), |r| escape(&r.period_start));
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>",
                x(*p),
                h - bottom + 16.0
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"12\" y=\"{:.1}\" font-size=\"11\" transform=\"rotate(-90 12 {:.1})\" text-anchor=\"middle\">{}</text>",
        h / 2.0,
        h / 2.0,
        escape(unit)
    );
    for (n, ((_, bucket), points)) in series.iter().take(COLOURS.len()).enumerate() {
        let colour = COLOURS[n];
        let path: Vec<String> = points
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(r.period), y(r.estimate)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
        for r in points {
            let _ = write!(
                svg,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/>\
                 <circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{colour}\"/>",
                y(r.ci_low),
                y(r.ci_high),
                y(r.estimate),
                x = x(r.period)
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{colour}\">{}</text>",
            w - right + 10.0,
            top + 14.0 * (n as f64 + 1.0),
            escape(bucket)
        );
    }
    if series.len() > COLOURS.len() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\">+{} more in the table</text>",
            w - right + 10.0,
            top + 14.0 * (COLOURS.len() as f64 + 1.0),
            series.len() - COLOURS.len()
        );
    }
    svg.push_str("</svg>");
    svg
}

/// An axis label: few digits, whatever the scale.
fn tick(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ticks_keep_three_significant_places_at_most() {
        assert_eq!(tick(1234.5), "1234");
        assert_eq!(tick(12.34), "12.3");
        assert_eq!(tick(0.01234), "0.012");
    }

    #[test]
    fn the_sign_in_page_carries_its_csrf_token_and_no_script() {
        let page = login("abc123", Some("<b>bad</b>"), None);
        assert!(page.contains("name=\"csrf\" value=\"abc123\""));
        assert!(page.contains("&lt;b&gt;bad&lt;/b&gt;"));
        assert!(!page.to_lowercase().contains("<script"));
    }
}
