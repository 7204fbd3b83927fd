//! QEMU's fw_cfg: `-fw_cfg name=opt/org.cairn/config,file=node.toml` shows up
//! in sysfs once the `qemu_fw_cfg` module is loaded.

use super::{failed, Found, SourceError};
use std::path::Path;

/// Where the item's bytes are.
pub const PATH: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/org.cairn/config/raw";
/// A config is small; anything bigger is refused, not read into memory.
const MAX: u64 = 1 << 20;

pub fn read(path: &Path) -> Result<Option<Found>, SourceError> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed("fw_cfg", format!("{}: {e}", path.display()))),
    };
    // sysfs reports 4096 for many files; the real size comes with the read.
    let _ = size;
    let mut f = std::fs::File::open(path).map_err(|e| failed("fw_cfg", format!("{}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, MAX + 1), &mut bytes)
        .map_err(|e| failed("fw_cfg", format!("{}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX {
        return Err(failed("fw_cfg", format!("opt/org.cairn/config is larger than {MAX} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|e| failed("fw_cfg", format!("opt/org.cairn/config is not UTF-8 (byte {})", e.utf8_error().valid_up_to())))?;
    Ok(Some(Found { source: "fw_cfg", text, instance_id: None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_is_no_answer_and_present_is_read() {
        let dir = std::env::temp_dir().join(format!("cairn-fwcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir.join("nope")).unwrap(), None);
        std::fs::write(dir.join("raw"), "version = 1\n").unwrap();
        let f = read(&dir.join("raw")).unwrap().unwrap();
        assert_eq!((f.source, f.text.as_str()), ("fw_cfg", "version = 1\n"));
        std::fs::write(dir.join("raw"), [0xff, 0xfe]).unwrap();
        assert!(read(&dir.join("raw")).unwrap_err().to_string().contains("not UTF-8"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
