//! The progress bar of `pack`: drawn on a terminal for large inputs only,
//! never when stderr is a pipe or a file.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use payload_tools::pack::Progress;

/// Inputs smaller than this pack too fast for a bar to be worth drawing.
const MIN_BYTES_FOR_BAR: u64 = 32 * 1024 * 1024;

#[derive(Debug)]
pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn new() -> Bar {
        Bar(None)
    }
}

impl Progress for Bar {
    fn start(&mut self, total: u64) {
        if total < MIN_BYTES_FOR_BAR {
            return;
        }
        // indicatif hides itself when stderr is not a terminal.
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "packing {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style);
        }
        self.0 = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}
