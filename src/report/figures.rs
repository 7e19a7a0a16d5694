//! The report's SVG figures, drawn with plotters' SVG backend: grouped horizontal bars
//! (gain per scheme per configuration) and panels of lines (sweeps, scaling, utilization
//! over time). Each figure names every series in a legend beside the plots (never over
//! the data) and every axis with its unit. Depends on plotters, error; knows nothing of
//! CSVs or traces.

use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

use crate::error::{Error, Result};

const FONT: &str = "sans-serif";

/// Colours of series, by the order their names are first drawn; the canonical scheme
/// order comes first so a scheme has the same colour in every figure.
const PALETTE: [RGBColor; 16] = [
    RGBColor(0x44, 0x44, 0x44), // serial: dark grey
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x00, 0x00, 0x80),
    RGBColor(0x80, 0x80, 0x00),
    RGBColor(0x00, 0x80, 0x80),
    RGBColor(0xaa, 0x11, 0x66),
    RGBColor(0x66, 0x99, 0x33),
    RGBColor(0xff, 0x44, 0x88),
];

/// Scheme names in the order the paper introduces them; their colours are fixed.
pub const SCHEME_ORDER: [&str; 6] = [
    "serial",
    "inter-linear",
    "inner-layer",
    "inter-batch",
    "inter-linear+inner-layer",
    "inter-linear+inner-layer+inter-batch",
];

fn colour_of(name: &str, others: &[String]) -> RGBColor {
    let i = SCHEME_ORDER
        .iter()
        .position(|s| *s == name)
        .or_else(|| {
            others
                .iter()
                .position(|s| s == name)
                .map(|i| SCHEME_ORDER.len() + i)
        })
        .unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::Io(std::io::Error::other(format!("drawing a figure: {e}")))
}

/// A point of a line, with an optional spread (low, high) drawn as an error bar.
#[derive(Clone, Debug)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub spread: Option<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Log-scale y (values spanning decades, as latency over a bandwidth sweep), drawn
    /// linear if a value or bar end is not positive; the axis label says which.
    pub log_y: bool,
}

/// Panels of lines sharing an x quantity and one legend.
pub struct Lines {
    pub title: String,
    pub x_label: String,
    /// Log-scale x (bandwidth, latency sweeps).
    pub log_x: bool,
    /// Ticks at the data's x values (discrete sweeps) rather than round numbers. The
    /// series are then drawn a little apart along x (dodged), so points and bars of one x
    /// do not hide one another.
    pub ticks_at_data: bool,
    /// A horizontal reference line and its legend name (e.g. "paper: +50%").
    pub reference: Option<(f64, String)>,
    /// The legend's words for the points' bars (what spread they show), if any point has one.
    pub whisker: Option<String>,
    pub panels: Vec<Panel>,
    pub columns: usize,
    /// The x range of every panel (so panels compare at one scale), or None: each panel's data.
    pub x_range: Option<(f64, f64)>,
}

/// A linear f64 axis with ticks exactly where we choose (category centres, the data's x
/// values, round numbers); plotters' own f64 axis picks its ticks itself.
#[derive(Clone)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

fn axis(lo: f64, hi: f64, ticks: Vec<f64>) -> Axis {
    Axis { lo, hi, ticks }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = (v - self.lo) / (self.hi - self.lo);
        (limit.0 as f64 + t * (limit.1 - limit.0) as f64).round() as i32
    }
    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        self.ticks.clone()
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Up to `n` round tick values covering [lo, hi].
fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// A tick label without needless digits.
fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if a >= 100.0 || (v.fract() == 0.0 && a < 1e15) {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}").trim_end_matches(".0").to_string()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The y range of a panel, with a little air, always including 0 when the data is near.
fn y_range(panel: &Panel, reference: Option<f64>) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for s in &panel.series {
        for p in &s.points {
            let (a, b) = p.spread.unwrap_or((p.y, p.y));
            lo = lo.min(p.y).min(a);
            hi = hi.max(p.y).max(b);
        }
    }
    if let Some(r) = reference {
        lo = lo.min(r);
        hi = hi.max(r);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if lo > 0.0 && lo < 0.5 * hi {
        lo = 0.0;
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.05).max(1e-9);
    (if lo == 0.0 { 0.0 } else { lo - pad }, hi + pad)
}

/// How a legend entry is marked: a filled swatch (a series), a dashed line (a reference)
/// or an error bar (what the whiskers show).
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Fill,
    Dashed,
    Whisker,
}

const WHISKER_COLOUR: RGBColor = RGBColor(0x22, 0x22, 0x22);

/// A log-scale y axis of a panel in log10 units: its range with a little air, and ticks at
/// 1, 2 and 5 times the powers of ten within it (every integer multiple when that gives
/// fewer than three). None when a value or bar end is not positive.
fn log_y_axis(panel: &Panel) -> Option<(f64, f64, Vec<f64>)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in panel.series.iter().flat_map(|s| &s.points) {
        let (a, b) = p.spread.unwrap_or((p.y, p.y));
        for v in [p.y, a, b] {
            if !(v > 0.0 && v.is_finite()) {
                return None;
            }
            lo = lo.min(v.log10());
            hi = hi.max(v.log10());
        }
    }
    if !lo.is_finite() {
        return None;
    }
    let pad = ((hi - lo) * 0.06).max(0.03);
    // Reach out to the 1-2-5 tick just beyond the data when it is near (within 0.3 of a
    // decade), so the lowest and highest points sit between labelled values.
    let step = |v: f64, down: bool| {
        let k = v.floor();
        let m: [f64; 4] = [1.0, 2.0, 5.0, 10.0];
        let ticks = m.iter().map(|m| k + m.log10());
        if down {
            ticks.filter(|t| *t <= v).fold(f64::NEG_INFINITY, f64::max)
        } else {
            ticks.filter(|t| *t >= v).fold(f64::INFINITY, f64::min)
        }
    };
    let (below, above) = (step(lo, true), step(hi, false));
    let lo = if lo - below <= 0.3 {
        (below - 0.01).min(lo - pad)
    } else {
        lo - pad
    };
    let hi = if above - hi <= 0.3 {
        (above + 0.01).max(hi + pad)
    } else {
        hi + pad
    };
    let ticks = |ms: &[f64]| -> Vec<f64> {
        let mut t = Vec::new();
        for k in (lo.floor() as i32)..=(hi.ceil() as i32) {
            for m in ms {
                let v = (m * 10f64.powi(k)).log10();
                if v >= lo && v <= hi {
                    t.push(v);
                }
            }
        }
        t
    };
    let mut t = ticks(&[1.0, 2.0, 5.0]);
    if t.len() < 3 {
        t = ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }
    Some((lo, hi, t))
}

/// "latency (ms)" as "latency (ms, log scale)".
fn log_label(label: &str) -> String {
    match label.strip_suffix(')') {
        Some(head) => format!("{head}, log scale)"),
        None => format!("{label} (log scale)"),
    }
}

/// Draw the legend (a swatch and a name per entry) in `area`, top-aligned.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(String, RGBColor, Mark)],
) -> Result<()> {
    let style = TextStyle::from((FONT, 14).into_font()).color(&BLACK);
    area.draw(&Text::new(
        "Legend",
        (10, 20),
        (FONT, 15).into_font().style(FontStyle::Bold),
    ))
    .map_err(draw_err)?;
    for (i, (name, colour, mark)) in entries.iter().enumerate() {
        let y = 45 + 24 * i as i32;
        match mark {
            Mark::Dashed => {
                for k in 0..3 {
                    area.draw(&PathElement::new(
                        vec![(10 + 9 * k, y), (15 + 9 * k, y)],
                        colour.stroke_width(2),
                    ))
                    .map_err(draw_err)?;
                }
            }
            Mark::Fill => {
                area.draw(&Rectangle::new([(10, y - 6), (32, y + 6)], colour.filled()))
                    .map_err(draw_err)?;
            }
            Mark::Whisker => {
                for seg in [
                    [(21, y - 8), (21, y + 8)],
                    [(16, y - 8), (26, y - 8)],
                    [(16, y + 8), (26, y + 8)],
                ] {
                    area.draw(&PathElement::new(seg.to_vec(), colour.stroke_width(1)))
                        .map_err(draw_err)?;
                }
            }
        }
        area.draw(&Text::new(name.clone(), (40, y - 8), style.clone()))
            .map_err(draw_err)?;
    }
    Ok(())
}

fn legend_width(entries: &[(String, RGBColor, Mark)]) -> u32 {
    let chars = entries
        .iter()
        .map(|e| e.0.chars().count())
        .max()
        .unwrap_or(6);
    (chars as u32 * 8 + 60).max(140)
}

/// Panels of lines, written to `path` as SVG.
pub fn lines(path: &Path, fig: &Lines) -> Result<()> {
    let mut names: Vec<String> = Vec::new();
    for p in &fig.panels {
        for s in &p.series {
            if !names.contains(&s.name) {
                names.push(s.name.clone());
            }
        }
    }
    let others: Vec<String> = names
        .iter()
        .filter(|n| !SCHEME_ORDER.contains(&n.as_str()))
        .cloned()
        .collect();
    let mut entries: Vec<(String, RGBColor, Mark)> = names
        .iter()
        .map(|n| (n.clone(), colour_of(n, &others), Mark::Fill))
        .collect();
    let ref_colour = RGBColor(0x99, 0x00, 0x00);
    if let Some((_, name)) = &fig.reference {
        entries.push((name.clone(), ref_colour, Mark::Dashed));
    }
    let has_spread = fig.panels.iter().any(|p| {
        p.series
            .iter()
            .any(|s| s.points.iter().any(|p| p.spread.is_some()))
    });
    if let (Some(w), true) = (&fig.whisker, has_spread) {
        entries.push((w.clone(), WHISKER_COLOUR, Mark::Whisker));
    }
    let cols = fig.columns.max(1).min(fig.panels.len().max(1));
    let rows = fig.panels.len().div_ceil(cols).max(1);
    let (pw, ph) = (480u32, 340u32);
    let lw = legend_width(&entries);
    // Wide enough for the title too (about 10 px a character at 20 px).
    let title_w = fig.title.chars().count() as u32 * 10 + 40;
    let lw = lw.max(title_w.saturating_sub(pw * cols as u32));
    let (w, h) = (pw * cols as u32 + lw, ph * rows as u32 + 50);
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let root = root
        .titled(&fig.title, (FONT, 20).into_font())
        .map_err(draw_err)?;
    let (plots, legend_area) = root.split_horizontally(pw * cols as u32);
    legend(&legend_area, &entries)?;
    let cells = plots.split_evenly((rows, cols));
    let tx = |x: f64| if fig.log_x { x.log10() } else { x };
    for (panel, area) in fig.panels.iter().zip(&cells) {
        let xs: Vec<f64> = panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.x))
            .collect();
        let (mut x_lo, mut x_hi) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(tx(x)), b.max(tx(x)))
            });
        if let Some((a, b)) = fig.x_range {
            (x_lo, x_hi) = (tx(a), tx(b));
        }
        if !x_lo.is_finite() {
            (x_lo, x_hi) = (0.0, 1.0);
        }
        let pad = ((x_hi - x_lo) * 0.06).max(0.25);
        let key_points: Vec<f64> = if fig.ticks_at_data {
            let mut k: Vec<f64> = xs.iter().map(|&x| tx(x)).collect();
            k.sort_by(f64::total_cmp);
            k.dedup();
            k
        } else {
            nice_ticks(x_lo, x_hi, 8)
        };
        let log = if panel.log_y { log_y_axis(panel) } else { None };
        let log_y = log.is_some();
        let ty = |y: f64| if log_y { y.log10() } else { y };
        let (y_lo, y_hi, y_ticks) = log.unwrap_or_else(|| {
            let (a, b) = y_range(panel, fig.reference.as_ref().map(|r| r.0));
            (a, b, nice_ticks(a, b, 6))
        });
        let y_label = if log_y {
            log_label(&panel.y_label)
        } else {
            panel.y_label.clone()
        };
        // Dodge: series i of n drawn (i - (n-1)/2) · 1.2% of the x range off its x.
        let n_series = panel.series.len() as f64;
        let dodge_step = if fig.ticks_at_data && n_series > 1.0 {
            0.012 * (x_hi - x_lo + 2.0 * pad)
        } else {
            0.0
        };
        let log_x = fig.log_x;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, (FONT, 15).into_font())
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(
                axis(x_lo - pad, x_hi + pad, key_points),
                axis(y_lo, y_hi, y_ticks),
            )
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc(&fig.x_label)
            .y_desc(&y_label)
            .x_label_formatter(&|v: &f64| fmt_num(if log_x { 10f64.powf(*v) } else { *v }))
            .y_label_formatter(&|v: &f64| fmt_num(if log_y { 10f64.powf(*v) } else { *v }))
            .label_style((FONT, 12).into_font())
            .axis_desc_style((FONT, 13).into_font())
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .draw()
            .map_err(draw_err)?;
        let x_range = chart.x_range();
        if let Some((y, _)) = fig.reference.as_ref().filter(|r| !log_y || r.0 > 0.0) {
            let y = ty(*y);
            let dashes = dash_segments(x_range.start, x_range.end, 40);
            chart
                .draw_series(dashes.into_iter().map(|(a, b)| {
                    PathElement::new(vec![(a, y), (b, y)], ref_colour.stroke_width(2))
                }))
                .map_err(draw_err)?;
        }
        for (i, s) in panel.series.iter().enumerate() {
            let c = colour_of(&s.name, &others);
            let off = (i as f64 - (n_series - 1.0) / 2.0) * dodge_step;
            let tx = |x: f64| tx(x) + off;
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (tx(p.x), ty(p.y))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(draw_err)?;
            if pts.len() <= 60 {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(draw_err)?;
            }
            chart
                .draw_series(s.points.iter().filter_map(|p| {
                    p.spread.map(|(lo, hi)| {
                        ErrorBar::new_vertical(
                            tx(p.x),
                            ty(lo),
                            ty(p.y),
                            ty(hi),
                            c.stroke_width(1),
                            8,
                        )
                    })
                }))
                .map_err(draw_err)?;
        }
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

fn dash_segments(a: f64, b: f64, n: usize) -> Vec<(f64, f64)> {
    let step = (b - a) / n as f64;
    (0..n)
        .step_by(2)
        .map(|i| (a + step * i as f64, a + step * (i as f64 + 1.0)))
        .collect()
}

/// Grouped horizontal bars: one group per category (top to bottom), one bar per series.
pub struct Bars {
    pub title: String,
    pub x_label: String,
    pub categories: Vec<String>,
    pub series: Vec<String>,
    /// values[category][series]; None: no such row.
    pub values: Vec<Vec<Option<f64>>>,
    /// spread[category][series]: a whisker (low, high) over the bar, or None; may be
    /// empty (no whiskers).
    pub spread: Vec<Vec<Option<(f64, f64)>>>,
    /// The legend's words for the whiskers.
    pub whisker: Option<String>,
    /// Vertical reference lines with their legend names.
    pub references: Vec<(f64, String)>,
}

pub fn bars(path: &Path, fig: &Bars) -> Result<()> {
    let others: Vec<String> = fig
        .series
        .iter()
        .filter(|n| !SCHEME_ORDER.contains(&n.as_str()))
        .cloned()
        .collect();
    let ref_colours = [RGBColor(0x99, 0x00, 0x00), RGBColor(0x00, 0x66, 0x99)];
    let mut entries: Vec<(String, RGBColor, Mark)> = fig
        .series
        .iter()
        .map(|n| (n.clone(), colour_of(n, &others), Mark::Fill))
        .collect();
    for (i, (_, name)) in fig.references.iter().enumerate() {
        entries.push((name.clone(), ref_colours[i % 2], Mark::Dashed));
    }
    let whisker = |i: usize, j: usize| fig.spread.get(i).and_then(|r| r.get(j)).copied().flatten();
    let has_spread = fig.spread.iter().flatten().any(Option::is_some);
    if let (Some(w), true) = (&fig.whisker, has_spread) {
        entries.push((w.clone(), WHISKER_COLOUR, Mark::Whisker));
    }
    let n = fig.categories.len().max(1);
    let per = fig.series.len().max(1);
    let label_chars = fig
        .categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(8);
    let y_area = (label_chars as u32 * 6 + 24).max(80);
    let plot_w = 560 + y_area;
    let lw = legend_width(&entries);
    let h = (n * (per * 9 + 14)) as u32 + 150;
    let root = SVGBackend::new(path, (plot_w + lw, h.max(320))).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let root = root
        .titled(&fig.title, (FONT, 20).into_font())
        .map_err(draw_err)?;
    let (plot, legend_area) = root.split_horizontally(plot_w);
    legend(&legend_area, &entries)?;
    let vals = fig.values.iter().flatten().flatten().copied();
    let ends = fig
        .spread
        .iter()
        .flatten()
        .flatten()
        .flat_map(|&(a, b)| [a, b]);
    let (mut lo, mut hi) = vals
        .chain(ends)
        .fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    for (r, _) in &fig.references {
        lo = lo.min(*r);
        hi = hi.max(*r);
    }
    let pad = (hi - lo).max(1.0) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let centres: Vec<f64> = (0..n).map(|i| (n - 1 - i) as f64).collect();
    let cats = fig.categories.clone();
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(y_area)
        .build_cartesian_2d(
            axis(lo, hi, nice_ticks(lo, hi, 8)),
            axis(-0.6, n as f64 - 0.4, centres),
        )
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(&fig.x_label)
        .x_label_formatter(&|v: &f64| fmt_num(*v))
        .y_label_formatter(&|v: &f64| {
            let i = n as i64 - 1 - v.round() as i64;
            usize::try_from(i)
                .ok()
                .and_then(|i| cats.get(i))
                .cloned()
                .unwrap_or_default()
        })
        .label_style((FONT, 12).into_font())
        .axis_desc_style((FONT, 13).into_font())
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .disable_y_mesh()
        .draw()
        .map_err(draw_err)?;
    let h_bar = 0.8 / per as f64;
    for (j, name) in fig.series.iter().enumerate() {
        let c = colour_of(name, &others);
        chart
            .draw_series(fig.values.iter().enumerate().filter_map(|(i, row)| {
                let v = row.get(j).copied().flatten()?;
                let top = (n - 1 - i) as f64 + 0.4 - h_bar * j as f64;
                Some(Rectangle::new(
                    [(0.0, top), (v, top - h_bar * 0.9)],
                    c.filled(),
                ))
            }))
            .map_err(draw_err)?;
        // Whiskers over the bars, in a dark grey that reads on every bar colour.
        let cap = h_bar * 0.3;
        chart
            .draw_series(
                (0..fig.values.len())
                    .filter_map(|i| {
                        let (a, b) = whisker(i, j)?;
                        let mid = (n - 1 - i) as f64 + 0.4 - h_bar * j as f64 - h_bar * 0.45;
                        Some([
                            vec![(a, mid), (b, mid)],
                            vec![(a, mid - cap), (a, mid + cap)],
                            vec![(b, mid - cap), (b, mid + cap)],
                        ])
                    })
                    .flatten()
                    .map(|seg| PathElement::new(seg, WHISKER_COLOUR.stroke_width(1))),
            )
            .map_err(draw_err)?;
    }
    let y_top = n as f64 - 0.4;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, -0.6), (0.0, y_top)],
            BLACK.stroke_width(1),
        )))
        .map_err(draw_err)?;
    for (i, (x, _)) in fig.references.iter().enumerate() {
        let segs = dash_segments(-0.6, y_top, 60);
        chart
            .draw_series(segs.into_iter().map(|(a, b)| {
                PathElement::new(vec![(*x, a), (*x, b)], ref_colours[i % 2].stroke_width(2))
            }))
            .map_err(draw_err)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// Whether a figure has anything to draw (the report says so in words when not, rather
/// than drawing empty axes).
pub fn has_points(fig: &Lines) -> bool {
    fig.panels
        .iter()
        .any(|p| p.series.iter().any(|s| !s.points.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(
            nice_ticks(-30.0, 80.0, 6),
            vec![-20.0, 0.0, 20.0, 40.0, 60.0, 80.0]
        );
    }
}
