//! Text in pictures. plotters draws text with a TrueType font that it does not ship; we
//! register the first system sans-serif font found (DejaVu Sans on Debian/Ubuntu, installed
//! by `scripts/setup.sh`). Without one, pictures are still drawn, just without text.

use std::sync::OnceLock;

/// The family name under which the font is registered.
pub const FONT_FAMILY: &str = "sans-serif";

const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// Registers a font once; true when text can be drawn.
pub fn register_font() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        let custom = std::env::var("SEMCORR_FONT").ok();
        for path in custom
            .iter()
            .map(String::as_str)
            .chain(CANDIDATES.iter().copied())
        {
            if let Ok(bytes) = std::fs::read(path) {
                // plotters keeps the font for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(
                    FONT_FAMILY,
                    plotters::style::FontStyle::Normal,
                    bytes,
                )
                .is_ok()
                {
                    return true;
                }
            }
        }
        tracing::warn!("no TrueType font found (set SEMCORR_FONT); pictures will have no text");
        false
    })
}
