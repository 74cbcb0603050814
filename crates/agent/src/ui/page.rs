//! The person's page as HTML strings, its chart as inline SVG, every
//! interpolated string escaped; no script anywhere.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hush_report::{SentLine, utc_minute};
use hush_web::escape;

use super::{PREVIEW_SECONDS, Preview};
use crate::control::{Status, epsilon_text as epsilon};

/// The stylesheet, served as `/style.css` (inline styles would need
/// `'unsafe-inline'` in the policy).
pub const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f7f8fa;line-height:1.45}
header{display:flex;justify-content:space-between;align-items:center;padding:.6em 1.2em;background:#1d2430;color:#fff}
header h1{font-size:1.2em;margin:0}
header form{margin:0}
main{padding:.5em 1.2em 2em;max-width:60em}
section{background:#fff;border:1px solid #dde;padding:.4em 1em 1em;margin:1em 0}
h2{font-size:1.05em}
form.inline{display:inline;margin-left:.6em}
.notice{background:#e8f4ea;border:1px solid #9c9;padding:.6em 1em;margin-top:1em}
.warn{color:#8a4b00}
.big{font-size:1.1em}
table{border-collapse:collapse;font-size:.9em;margin-top:.6em}
td,th{border-bottom:1px solid #dde;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right}
.refused{color:#a00}
svg{background:#fff;border:1px solid #dde;max-width:100%}
footer{color:#556;font-size:.85em;margin-top:2em}
a.button,button{font:inherit;padding:.3em .9em;border:1px solid #889;border-radius:4px;background:#eef;color:#1d2430;text-decoration:none;cursor:pointer}
button.danger,a.danger{background:#fbeaea;border-color:#c88}
";

/// One report that left, for the table and the chart.
#[derive(Debug, Clone)]
pub struct SentReport {
    /// When the collector answered (Unix seconds).
    pub at: u64,
    /// Accepted (or refused) by the collector.
    pub sent: bool,
    /// The period it reports on.
    pub period: u32,
    /// Its size on the wire.
    pub bytes: usize,
    /// What it said, per metric, in words.
    pub lines: Vec<SentLine>,
}

/// Everything the main page shows.
pub struct View<'a> {
    pub base: &'a str,
    pub csrf: &'a str,
    pub status: &'a Status,
    pub running: bool,
    pub reports: &'a [SentReport],
    pub notice: Option<&'a str>,
    pub preview: &'a Preview,
    pub can_preview: bool,
    pub idle: Duration,
    pub now: u64,
}

impl View<'_> {
    /// How often the page reloads: a minute, or often enough that a short
    /// idle time does not end a page that is open.
    fn refresh(&self) -> u64 {
        refresh(self.idle)
    }
}

/// A third of the idle time, between 2 s and a minute.
pub fn refresh(idle: Duration) -> u64 {
    (idle.as_secs() / 3).clamp(2, 60)
}

/// The most rows the reports table shows; `hush agent sent` lists all.
const MAX_ROWS: usize = 400;

/// The most days the chart spans.
const CHART_DAYS: u64 = 90;

/// The fewest days the chart spans.
const MIN_CHART_DAYS: u64 = 14;

/// A page; with the session's `base`, styled by its stylesheet (served
/// only inside the session, so no other site can load it to learn that the
/// page is open).
fn document(title: &str, base: Option<&str>, refresh: Option<u64>, body: &str) -> String {
    let refresh = refresh.map_or(String::new(), |s| {
        format!("<meta http-equiv=\"refresh\" content=\"{s}\">")
    });
    let style = base.map_or(String::new(), |b| {
        format!("<link rel=\"stylesheet\" href=\"{}/style.css\">", escape(b))
    });
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">{refresh}\
         <title>{}</title>{style}</head>\
         <body>{body}</body></html>\n",
        escape(title)
    )
}

fn button(base: &str, csrf: &str, action: &str, label: &str, class: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}/{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" id=\"{action}\" class=\"{class}\">{}</button></form>",
        escape(base),
        escape(csrf),
        escape(label)
    )
}

/// A page with one message, and a way back to the main page when there is one.
pub fn message(title: &str, text: &str, back: Option<&str>) -> String {
    let link = back.map_or(String::new(), |b| {
        format!("<p><a href=\"{}/\">Back to the page</a></p>", escape(b))
    });
    document(
        title,
        back,
        None,
        &format!(
            "<main><section><h2>{}</h2><p id=\"message\">{}</p>{link}</section></main>",
            escape(title),
            escape(text)
        ),
    )
}

/// The question before forgetting.
pub fn confirm_forget(base: &str, csrf: &str, idle: Duration) -> String {
    document(
        "Forget? Hush on this laptop",
        Some(base),
        Some(refresh(idle)),
        &format!(
            "<main><section><h2>Forget this laptop's secret?</h2>\
             <p>This deletes the device secret, from which every report's lasting random answers are made, \
             and every report still waiting to be sent. The next report starts from new random answers.</p>\
             <p>What the last year's reports spent stays counted: forgetting cannot reset what a year may reveal, \
             and the collector keeps the reports it already has.</p>\
             <p>{}<a class=\"button\" href=\"{}/\">No, go back</a></p></section></main>",
            button(base, csrf, "forget", "Yes, forget", "danger"),
            escape(base)
        ),
    )
}

/// A duration in words, to the minute when it is one.
fn span(d: Duration) -> String {
    match d.as_secs() {
        1 => "1 second".to_owned(),
        60 => "1 minute".to_owned(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// The main page.
pub fn main(v: &View<'_>) -> String {
    let s = v.status;
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><h1>Hush on this laptop</h1>{}</header><main>",
        button(v.base, v.csrf, "close", "Close this page", "")
    );
    if let Some(n) = v.notice {
        let _ = write!(body, "<p class=\"notice\" id=\"notice\">{}</p>", escape(n));
    }

    // Measuring, to whom, paused.
    body.push_str("<section id=\"state\"><h2>Measuring</h2>");
    match &s.enrolled {
        Some(url) => {
            let _ = write!(
                body,
                "<p class=\"big\" id=\"enrolled\">This laptop reports to <strong>{}</strong>.</p>",
                escape(url)
            );
        }
        None => body.push_str(
            "<p class=\"big\" id=\"enrolled\">This laptop is <strong>not enrolled</strong>: nothing is measured or sent. \
             (<code>hush agent enroll</code> connects it to a collector, after you agree.)</p>",
        ),
    }
    let _ = write!(
        body,
        "<p>The agent is {} on this laptop right now.</p>",
        if v.running {
            "running"
        } else {
            "<strong>not running</strong>"
        }
    );
    if s.paused {
        let _ = write!(
            body,
            "<p class=\"big\" id=\"paused\"><strong>Paused</strong>: nothing is measured.{}</p>",
            button(v.base, v.csrf, "resume", "Resume", "")
        );
    } else {
        let _ = write!(
            body,
            "<p class=\"big\" id=\"paused\">Not paused{}.{}</p>",
            if s.enrolled.is_some() {
                ": keyboard and mouse activity is counted, never which keys"
            } else {
                ""
            },
            button(v.base, v.csrf, "pause", "Pause", "")
        );
    }
    if s.development_periods {
        let _ = write!(
            body,
            "<p class=\"warn\">Development periods: one report every {}, not once a day.</p>",
            span(Duration::from_secs(u64::from(s.period_seconds)))
        );
    }
    let _ = write!(
        body,
        "<p>Reports waiting to be sent: {}. Sent: {} ({} refused by the collector). Last upload: {}.</p></section>",
        s.queued,
        s.sent,
        s.refused,
        s.last_upload.map_or_else(|| "never".to_owned(), utc_minute)
    );

    // The terms.
    body.push_str("<section id=\"terms\"><h2>What the collector can learn about you</h2>");
    if let (Some(one), Some(perm), Some(cap)) = (
        s.epsilon_per_report,
        s.epsilon_per_value,
        s.epsilon_per_year_cap,
    ) {
        let _ = write!(
            body,
            "<p>Every number is randomized on this laptop before it leaves, so no report says for sure what you did. \
             How much a report can say is its epsilon: smaller is more private. With epsilon 1, whatever the collector \
             receives is at most e (about 2.7) times as likely under one value of yours as under any other.</p>\
             <table><tr><td>One report reveals at most</td><td class=\"n\" id=\"per-report\">epsilon {}</td></tr>\
             <tr><td>All reports about one value that does not change, together</td><td class=\"n\" id=\"per-value\">epsilon {}</td></tr>\
             <tr><td>All reports of any 365 days, together, at most</td><td class=\"n\" id=\"per-year\">epsilon {}</td></tr>\
             <tr><td>The last 365 days' reports so far</td><td class=\"n\" id=\"past-year\">epsilon {}</td></tr></table>",
            epsilon(one),
            epsilon(perm),
            epsilon(cap),
            epsilon(s.epsilon_past_year)
        );
        let _ = write!(
            body,
            "<p>Each measure may show at most {} different values in any 365 days:</p>\
             <table><tr><th>Measure</th><th>Values shown, last 365 days</th><th>Their epsilon</th></tr>",
            s.max_values_per_year
        );
        for d in &s.draws {
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(&d.metric),
                d.values,
                epsilon(d.epsilon)
            );
        }
        body.push_str("</table>");
    } else {
        body.push_str("<p>Nothing: this laptop is not enrolled, so no terms are in force and nothing leaves it.</p>");
    }
    body.push_str("</section>");

    // The preview.
    let mut refresh = v.refresh();
    body.push_str("<section id=\"preview\"><h2>What would be measured, before any noise</h2>");
    match v.preview {
        Preview::Watching { until, .. } => {
            let left = until.saturating_duration_since(Instant::now()).as_secs();
            refresh = refresh.min(left + 2);
            let _ = write!(
                body,
                "<p id=\"watching\">Watching your keyboard and mouse: about {left} seconds left. This page reloads when it is done.</p>"
            );
        }
        Preview::Done { watched: w, .. } => {
            let _ = write!(
                body,
                "<p>From the {} seconds you asked to be watched, before any noise (only this page shows them; \
                 nothing was stored or sent):</p><table id=\"preview-table\"><tr><th>Metric</th><th>Value</th><th>What it is</th></tr>",
                w.seconds
            );
            for l in &w.lines {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&l.name),
                    escape(&l.value),
                    escape(&l.description)
                );
            }
            let keys: Vec<String> = w.keys.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let _ = write!(
                body,
                "</table><p>In detail: keys by class: <span id=\"preview-keys\">{}</span>; chords {} ({} allow-listed shortcuts); \
                 {} interactions seen, {} dropped. Which keys you pressed is never recorded, only their class.</p>",
                escape(&keys.join(", ")),
                w.chords,
                w.shortcuts,
                w.interactions,
                w.dropped
            );
        }
        Preview::Failed(e) => {
            let _ = write!(
                body,
                "<p class=\"warn\" id=\"preview-failed\">The preview could not watch: {}</p>",
                escape(e)
            );
        }
        Preview::Never => {}
    }
    if v.can_preview && !v.preview.watching() {
        let options: String = PREVIEW_SECONDS
            .iter()
            .map(|s| format!("<option value=\"{s}\">{s} seconds</option>"))
            .collect();
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{}/preview\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             Watch my keyboard and mouse for <select name=\"seconds\">{options}</select> \
             <button type=\"submit\" id=\"watch\">and show me the numbers</button></form>\
             <p>The running agent keeps today's counts in its memory only, so this page counts afresh while you watch. \
             Each day, the agent randomizes numbers like these on this laptop before anything is sent.</p>",
            escape(v.base),
            escape(v.csrf)
        );
    } else if !v.can_preview {
        body.push_str(
            "<p>The preview needs this laptop's display; this page was started without one.</p>",
        );
    }
    body.push_str("</section>");

    // The reports.
    body.push_str("<section id=\"reports\"><h2>Every report that left this laptop</h2>");
    if v.reports.is_empty() {
        body.push_str("<p id=\"no-reports\">Nothing has been sent yet.</p>");
    } else {
        body.push_str(&chart(v.reports, v.now));
        body.push_str(
            "<table id=\"reports-table\"><tr><th>When</th><th>Period</th><th>Collector's answer</th><th>Bytes</th><th>What it said (randomized)</th></tr>",
        );
        for r in v.reports.iter().rev().take(MAX_ROWS) {
            let said: Vec<String> = r
                .lines
                .iter()
                .map(|l| {
                    format!(
                        "{}: {} <small>({}, epsilon {} per report, {} per value)</small>",
                        escape(l.name),
                        escape(&l.in_words),
                        escape(l.mechanism),
                        epsilon(l.epsilon),
                        epsilon(l.epsilon_perm)
                    )
                })
                .collect();
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"n\">{}</td><td{}>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                utc_minute(r.at),
                r.period,
                if r.sent { "" } else { " class=\"refused\"" },
                if r.sent { "accepted" } else { "refused" },
                r.bytes,
                said.join("<br>")
            );
        }
        body.push_str("</table>");
        if v.reports.len() > MAX_ROWS {
            let _ = write!(
                body,
                "<p>And {} older ones: <code>hush agent sent</code> lists them all.</p>",
                v.reports.len() - MAX_ROWS
            );
        }
    }
    body.push_str("</section>");

    let _ = write!(
        body,
        "<section id=\"forget-section\"><h2>Forget</h2><p>Delete this laptop's device secret and the reports waiting to be sent. \
         You will be asked to confirm. <a class=\"button danger\" id=\"forget\" href=\"{}/forget\">Forget…</a></p></section>\
         <footer>This page is served by this laptop at 127.0.0.1 to this browser only; nothing on it is sent anywhere, \
         and it writes nothing to disk. It reloads itself every {} seconds and stops {} after it was last shown, \
         or when you press Close.</footer></main>",
        escape(v.base),
        v.refresh(),
        span(v.idle)
    );
    document("Hush on this laptop", Some(v.base), Some(refresh), &body)
}

/// Reports per day over the last [`CHART_DAYS`] days at most, accepted and
/// refused stacked.
fn chart(reports: &[SentReport], now: u64) -> String {
    let today = now / 86_400;
    let first = reports.iter().map(|r| r.at / 86_400).min().unwrap_or(today);
    // At least two weeks, so a new agent's first reports are bars, not a wall.
    let start = first
        .min(today.saturating_sub(MIN_CHART_DAYS - 1))
        .max(today.saturating_sub(CHART_DAYS - 1));
    let days = (today - start + 1) as usize;
    let mut sent = vec![0u32; days];
    let mut refused = vec![0u32; days];
    for r in reports {
        let day = r.at / 86_400;
        if (start..=today).contains(&day) {
            let i = (day - start) as usize;
            if r.sent {
                sent[i] += 1;
            } else {
                refused[i] += 1;
            }
        }
    }
    let top = sent
        .iter()
        .zip(&refused)
        .map(|(a, b)| a + b)
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, left, bottom, above) = (720.0, 150.0, 40.0, 24.0, 10.0);
    let bar = (w - left - 10.0) / days as f64;
    let y = |n: u32| above + (h - above - bottom) * (1.0 - f64::from(n) / f64::from(top));
    let total: u32 = sent.iter().chain(&refused).sum();
    let mut svg = format!(
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"{total} reports over the last {days} days\">"
    );
    for n in [0, top] {
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{n}</text>",
            w - 10.0,
            left - 6.0,
            y(n) + 4.0,
            y = y(n)
        );
    }
    for i in 0..days {
        let x = left + bar * i as f64;
        let width = (bar - 1.0).max(1.0);
        if sent[i] > 0 {
            let _ = write!(
                svg,
                "<rect class=\"sent\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"#1f77b4\"/>",
                y(sent[i]),
                y(0) - y(sent[i])
            );
        }
        if refused[i] > 0 {
            let _ = write!(
                svg,
                "<rect class=\"refused\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"#d62728\"/>",
                y(sent[i] + refused[i]),
                y(sent[i]) - y(sent[i] + refused[i])
            );
        }
        if i % days.div_ceil(6) == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{}</text>",
                x,
                h - 8.0,
                hush_report::date_of_day(start as i64 + i as i64)
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\">reports per day (blue accepted, red refused)</text></svg>",
        left + 6.0,
        above + 10.0
    );
    svg
}
