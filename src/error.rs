//! The library's error type. Every error caused by user input names the input (a file, a
//! model id, a key) and what was wrong with it.

use std::path::{Path, PathBuf};

/// Errors returned by the semcorr library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is malformed.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// A text (YAML, JSON, a number) could not be parsed; `what` names the file, key or
    /// option it came from, `source` keeps the parser's own error.
    #[error("{what}: {source}")]
    Parse {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A tensor operation failed; `context` says which step (a forward pass, loading a
    /// checkpoint), `source` keeps candle's error.
    #[error("{context}: {source}")]
    Candle {
        context: String,
        #[source]
        source: candle_core::Error,
    },
    /// An argument, parameter or data item is invalid; the message names it.
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    pub fn parse(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Parse {
            what: what.into(),
            source: source.into(),
        }
    }

    /// For `map_err`: wraps a candle error with what was being done.
    pub fn candle(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Error {
        let context = context.into();
        move |source| Error::Candle { context, source }
    }
}

/// Read a whole file, naming it in the error.
pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Write a whole file atomically (temporary file in the same folder, then rename), creating
/// parent folders, so a crash never leaves a half-written file under the final name.
pub fn write_file_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn wrapped_errors_keep_their_source() {
        let e = Error::candle("forward pass")(candle_core::Error::Msg("shape mismatch".into()));
        assert_eq!(e.to_string(), "forward pass: shape mismatch");
        assert!(e.source().unwrap().to_string().contains("shape mismatch"));
        let json = serde_json::from_str::<u32>("{").unwrap_err();
        let e = Error::parse("report.json", json);
        assert!(e.to_string().starts_with("report.json: "));
        assert!(e.source().unwrap().is::<serde_json::Error>());
        let e = read_file("/nonexistent/file").unwrap_err();
        assert!(e.source().unwrap().is::<std::io::Error>());
    }
}
