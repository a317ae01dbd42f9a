//! The PNG plots `temporal evaluate --json` writes beside its JSON (plotters, DejaVu Sans).
//!
//! What it does:
//! - [`confusion_png`]: the 8x8 expression confusion matrix, gold classes as rows and predicted
//!   classes as columns; each cell shows its count and its share of the row, and is coloured by
//!   that share (white 0 to dark blue 1), so classes of very different sizes read alike.
//! - [`au_f1_png`]: one bar per AU with its F1 written above it, and the mean in the title.
//!
//! Each PNG is drawn to a temporary file next to the target and renamed over it when complete.
//!
//! What it does not: compute metrics (see `shared::metrics`), or plot training curves (see
//! [`crate::plots`]).

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use shared::{AUS, EXPRESSIONS, N_AU, N_EXPR};
use std::path::{Path, PathBuf};

/// Draw with `draw` into a PNG of `size` at a temporary path, then rename it to `path`.
fn write_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    crate::plots::register_font()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // The temporary name must end in .png: plotters picks the encoder from the extension.
    let temp = PathBuf::from(format!(
        "{}.png",
        shared::atomic::temp_path_for(path).display()
    ));
    let drawn = (|| {
        let root = BitMapBackend::new(&temp, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    })();
    let result = drawn
        .and_then(|()| std::fs::rename(&temp, path).context("renaming the finished plot"))
        .with_context(|| format!("drawing {}", path.display()));
    if result.is_err() {
        // The temporary file may not exist; there is nothing else to clean.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Colour of a row share in [0, 1]: white to dark blue.
fn share_colour(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * s).round() as u8;
    RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}

/// Draw the 8x8 expression confusion matrix `matrix[gold][predicted]` to `path`.
/// Errors if the matrix is not 8x8 or the PNG cannot be written.
pub fn confusion_png(path: &Path, matrix: &[Vec<u64>]) -> Result<()> {
    if matrix.len() != N_EXPR || matrix.iter().any(|row| row.len() != N_EXPR) {
        bail!("the expression confusion matrix must be {N_EXPR}x{N_EXPR}");
    }
    let total: u64 = matrix.iter().flatten().sum();
    let (left, top, cell) = (130i32, 90i32, 82i32);
    let size = (
        (left + cell * N_EXPR as i32 + 30) as u32,
        (top + cell * N_EXPR as i32 + 24) as u32,
    );
    write_png(path, size, |root| {
        let centred = |size: f64, colour: &RGBColor| {
            ("sans-serif", size)
                .into_font()
                .color(colour)
                .pos(Pos::new(HPos::Center, VPos::Center))
        };
        root.draw(&Text::new(
            format!("Expression confusion matrix ({total} frames; colour = share of the row)"),
            (size.0 as i32 / 2, 24),
            centred(20.0, &BLACK),
        ))?;
        let grid_mid = left + cell * N_EXPR as i32 / 2;
        root.draw(&Text::new(
            "predicted",
            (grid_mid, top - 42),
            centred(16.0, &BLACK),
        ))?;
        root.draw(&Text::new(
            "gold",
            (22, top + cell * N_EXPR as i32 / 2),
            centred(16.0, &BLACK).transform(FontTransform::Rotate270),
        ))?;
        for (k, name) in EXPRESSIONS.iter().enumerate() {
            let mid = (k as i32) * cell + cell / 2;
            root.draw(&Text::new(
                *name,
                (left + mid, top - 14),
                centred(14.0, &BLACK),
            ))?;
            root.draw(&Text::new(
                *name,
                (left - 8, top + mid),
                ("sans-serif", 14.0)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
        }
        for (g, row) in matrix.iter().enumerate() {
            let row_total: u64 = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let share = if row_total > 0 {
                    count as f64 / row_total as f64
                } else {
                    0.0
                };
                let (x0, y0) = (left + p as i32 * cell, top + g as i32 * cell);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    share_colour(share).filled(),
                ))?;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    RGBColor(200, 200, 200),
                ))?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let (cx, cy) = (x0 + cell / 2, y0 + cell / 2);
                root.draw(&Text::new(
                    count.to_string(),
                    (cx, cy - 9),
                    centred(16.0, &ink),
                ))?;
                root.draw(&Text::new(
                    format!("{:.0}%", share * 100.0),
                    (cx, cy + 12),
                    centred(12.0, &ink),
                ))?;
            }
        }
        Ok(())
    })
}

/// Draw one bar per AU (`f1[a]` in [`AUS`] order, values in [0, 1]) to `path`.
/// Errors if there are not 12 values or the PNG cannot be written.
pub fn au_f1_png(path: &Path, f1: &[f64]) -> Result<()> {
    if f1.len() != N_AU {
        bail!("expected {N_AU} AU F1 values, got {}", f1.len());
    }
    let mean = f1.iter().sum::<f64>() / N_AU as f64;
    write_png(path, (900, 520), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("F1 per action unit (mean {mean:.3})"),
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(52)
            // A segmented range a..b has a segment for each of a..=b.
            .build_cartesian_2d((0..N_AU as i32 - 1).into_segmented(), 0.0..1.08)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .y_desc("F1")
            .x_desc("action unit")
            .x_labels(N_AU)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => AUS
                    .get(*i as usize)
                    .map_or_else(String::new, |s| s.to_string()),
                SegmentValue::Last => String::new(),
            })
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(RGBColor(33, 102, 172).filled())
                .margin(8)
                .data(f1.iter().enumerate().map(|(a, &v)| (a as i32, v))),
        )?;
        chart.draw_series(f1.iter().enumerate().map(|(a, &v)| {
            Text::new(
                format!("{v:.2}"),
                (SegmentValue::CenterOf(a as i32), v + 0.035),
                ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            )
        }))?;
        Ok(())
    })
}
