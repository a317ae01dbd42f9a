//! PNG plots of a run (plotters): training losses and validation metrics per epoch.
//!
//! Text is drawn with DejaVu Sans from Debian's `fonts-dejavu-core` (installed by `make setup`);
//! without it the plots are skipped with a warning, never the run.

use crate::run_dir::EpochMetrics;
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// Where the font is looked for.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Register DejaVu Sans as plotters' `sans-serif` (once per process).
pub fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let bytes = std::fs::read(FONT)
        .with_context(|| format!("no font at {FONT} (apt-get install fonts-dejavu-core)"))?;
    ONCE.call_once(|| {
        let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, leaked);
    });
    Ok(())
}

/// Draw `losses.png` and `metrics.png` into `dir`.
pub fn draw(dir: &Path, history: &[EpochMetrics]) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    register_font()?;
    let mut losses: Vec<(String, Vec<f64>)> =
        vec![("total".into(), history.iter().map(|m| m.loss).collect())];
    for key in history[0].losses.keys() {
        losses.push((
            key.clone(),
            history
                .iter()
                .map(|m| m.losses.get(key).copied().unwrap_or(f64::NAN))
                .collect(),
        ));
    }
    line_chart(&dir.join("losses.png"), "training loss", &losses)?;
    let v = |f: fn(&EpochMetrics) -> f64| history.iter().map(f).collect::<Vec<f64>>();
    let metrics = vec![
        ("P_MTL".to_string(), v(|m| m.p_mtl)),
        ("CCC valence".to_string(), v(|m| m.validation.ccc_valence)),
        ("CCC arousal".to_string(), v(|m| m.validation.ccc_arousal)),
        ("F1 expression".to_string(), v(|m| m.validation.f1_expr)),
        ("F1 AU".to_string(), v(|m| m.validation.f1_au)),
    ];
    line_chart(&dir.join("metrics.png"), "validation", &metrics)
}

/// One line per series over epochs 1..=n.
pub fn line_chart(path: &Path, title: &str, series: &[(String, Vec<f64>)]) -> Result<()> {
    let finite = series
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .filter(|x| x.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo, if hi > lo { hi } else { lo + 1.0 })
    } else {
        (0.0, 1.0)
    };
    let pad = (hi - lo) * 0.05;
    let n = series
        .iter()
        .map(|(_, s)| s.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (900, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(1f64..n as f64, (lo - pad)..(hi + pad))?;
        chart.configure_mesh().x_desc("epoch").draw()?;
        for (i, (name, values)) in series.iter().enumerate() {
            let color = Palette99::pick(i).stroke_width(2);
            chart
                .draw_series(LineSeries::new(
                    values
                        .iter()
                        .enumerate()
                        .filter(|(_, y)| y.is_finite())
                        .map(|(e, y)| ((e + 1) as f64, *y)),
                    color,
                ))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(
                        vec![(x, y), (x + 18, y)],
                        Palette99::pick(i).stroke_width(2),
                    )
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
