//! Files named by the user (the configuration, the API key), read with bounds: a regular file
//! only (a FIFO would block, `/dev/zero` would never end), and no larger than its purpose.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// A configuration file is a few KiB; this leaves room for long instructions.
pub const CONFIG_LIMIT: u64 = 1024 * 1024;
/// An API key is under 200 bytes.
pub const KEY_LIMIT: u64 = 4 * 1024;

/// The file's bytes, or an error that says what is wrong with it.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    // Non-blocking, so that opening a FIFO returns at once instead of waiting for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} KiB", limit / 1024),
        ));
    }
    Ok(bytes)
}

/// 1-based line and column of byte `offset` in `bytes` (columns count bytes).
pub fn position_of_byte(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_regular_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = dir.path().join("small");
        std::fs::write(&small, "key").expect("write");
        assert_eq!(read_bounded(&small, 16).expect("read"), b"key");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 17]).expect("write");
        let e = read_bounded(&big, 16).expect_err("too large");
        assert!(e.to_string().contains("larger than"), "{e}");
        // /dev/zero never ends; a FIFO would block a plain open.
        let e = read_bounded(Path::new("/dev/zero"), 16).expect_err("not a file");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: mkfifo reads the NUL-terminated path only.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let e = read_bounded(&fifo, 16).expect_err("not a file");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn byte_offsets_become_lines_and_columns() {
        let text = b"[api]\nmodel = \"x\xff\"\n";
        assert_eq!(position_of_byte(text, 0), (1, 1));
        assert_eq!(position_of_byte(text, 16), (2, 11));
    }
}
