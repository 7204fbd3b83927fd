//! Device-mapper through its ioctls on /dev/mapper/control. Debian's kernel has
//! no `dm-mod.create=`, so stage 1 creates the verity device itself.

use std::io;
use std::os::fd::AsRawFd;

const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
/// sizeof(struct dm_ioctl): 3×u32 version, 7×u32 sizes/flags, u64 dev, name,
/// uuid, 7 bytes of padding.
const DM_IOCTL_SIZE: usize = 312;
/// sizeof(struct dm_target_spec): u64 start, u64 length, i32 status, u32 next,
/// char target_type[16].
const DM_TARGET_SPEC_SIZE: usize = 40;
const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_TABLE_LOAD: u8 = 9;
pub const DM_READONLY_FLAG: u32 = 1;

fn ioctl_nr(cmd: u8) -> libc::c_ulong {
    // _IOWR(0xfd, cmd, struct dm_ioctl)
    (3 << 30) | ((DM_IOCTL_SIZE as libc::c_ulong) << 16) | (0xfd << 8) | libc::c_ulong::from(cmd)
}

/// One target of a table: `length` sectors from `start`, of `kind`, with its
/// parameter string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub start: u64,
    pub length: u64,
    pub kind: String,
    pub params: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error("Cannot open /dev/mapper/control (is dm_mod loaded?)")]
    Control(#[source] io::Error),
    #[error("Device-mapper {op} of {name} failed")]
    Ioctl {
        op: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("Device-mapper name or uuid too long: {0}")]
    TooLong(String),
}

/// Builds the ioctl buffer: the dm_ioctl header, then the target specs.
pub fn encode(name: &str, uuid: &str, flags: u32, targets: &[Target]) -> Result<Vec<u8>, DmError> {
    if name.len() >= DM_NAME_LEN || uuid.len() >= DM_UUID_LEN {
        return Err(DmError::TooLong(name.to_string()));
    }
    let mut buf = vec![0u8; DM_IOCTL_SIZE];
    for t in targets {
        let start = buf.len();
        buf.resize(start + DM_TARGET_SPEC_SIZE, 0);
        buf[start..start + 8].copy_from_slice(&t.start.to_ne_bytes());
        buf[start + 8..start + 16].copy_from_slice(&t.length.to_ne_bytes());
        let kind = t.kind.as_bytes();
        let n = kind.len().min(15);
        buf[start + 24..start + 24 + n].copy_from_slice(&kind[..n]);
        buf.extend_from_slice(t.params.as_bytes());
        buf.push(0);
        // Each spec starts 8-byte aligned; `next` is the offset to the next one.
        while buf.len() % 8 != 0 {
            buf.push(0);
        }
        let next = (buf.len() - start) as u32;
        buf[start + 20..start + 24].copy_from_slice(&next.to_ne_bytes());
    }
    let header = [4u32, 0, 0, buf.len() as u32, DM_IOCTL_SIZE as u32, targets.len() as u32, 0, flags];
    for (i, v) in header.iter().enumerate() {
        buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    let name_at = 48;
    buf[name_at..name_at + name.len()].copy_from_slice(name.as_bytes());
    let uuid_at = name_at + DM_NAME_LEN;
    buf[uuid_at..uuid_at + uuid.len()].copy_from_slice(uuid.as_bytes());
    Ok(buf)
}

/// The kernel's `dev` field (huge encoding) as (major, minor).
pub fn decode_dev(dev: u64) -> (u64, u64) {
    ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

fn call(ctl: &std::fs::File, cmd: u8, op: &'static str, name: &str, buf: &mut [u8]) -> Result<(), DmError> {
    // SAFETY: `buf` starts with a dm_ioctl whose data_size says how long the
    // buffer is; the kernel reads and writes within those bytes only.
    let rc = unsafe { libc::ioctl(ctl.as_raw_fd(), ioctl_nr(cmd), buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(DmError::Ioctl { op, name: name.to_string(), source: io::Error::last_os_error() });
    }
    Ok(())
}

/// Creates a device, loads its table and activates it. Returns the path of
/// its block device (/dev/dm-N).
pub fn create(name: &str, uuid: &str, flags: u32, targets: &[Target]) -> Result<String, DmError> {
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
        .map_err(DmError::Control)?;
    let mut buf = encode(name, uuid, flags, &[])?;
    call(&ctl, DM_DEV_CREATE, "create", name, &mut buf)?;
    let result = (|| {
        let mut buf = encode(name, "", flags, targets)?;
        call(&ctl, DM_TABLE_LOAD, "table load", name, &mut buf)?;
        // DM_DEV_SUSPEND without the suspend flag resumes: the table goes live.
        let mut buf = encode(name, "", 0, &[])?;
        call(&ctl, DM_DEV_SUSPEND, "resume", name, &mut buf)?;
        let dev = u64::from_ne_bytes(buf[40..48].try_into().unwrap_or_default());
        Ok(format!("/dev/dm-{}", decode_dev(dev).1))
    })();
    if result.is_err() {
        let mut buf = encode(name, "", 0, &[])?;
        let _ = call(&ctl, DM_DEV_REMOVE, "remove", name, &mut buf);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // DM_DEV_CREATE and DM_TABLE_LOAD as dm-ioctl.h computes them on x86_64.
        assert_eq!(ioctl_nr(DM_DEV_CREATE), 0xc138fd03);
        assert_eq!(ioctl_nr(DM_TABLE_LOAD), 0xc138fd09);
    }

    #[test]
    fn encodes_header_and_one_verity_target() {
        let t = Target { start: 0, length: 8, kind: "verity".into(), params: "1 a b".into() };
        let buf = encode("root", "CAIRN-A", DM_READONLY_FLAG, &[t]).unwrap();
        let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
        assert_eq!((u32_at(0), u32_at(4), u32_at(8)), (4, 0, 0));
        assert_eq!(u32_at(12) as usize, buf.len());
        assert_eq!(u32_at(16), 312);
        assert_eq!(u32_at(20), 1, "target count");
        assert_eq!(u32_at(28), DM_READONLY_FLAG);
        assert_eq!(&buf[48..52], b"root");
        assert_eq!(&buf[176..183], b"CAIRN-A");
        let spec = 312;
        assert_eq!(u64::from_ne_bytes(buf[spec + 8..spec + 16].try_into().unwrap()), 8);
        assert_eq!(&buf[spec + 24..spec + 30], b"verity");
        assert_eq!(&buf[spec + 40..spec + 46], b"1 a b\0");
        assert_eq!(buf.len() % 8, 0);
        assert_eq!(u32_at(spec + 20) as usize, buf.len() - spec);
    }

    #[test]
    fn decodes_huge_dev_numbers() {
        assert_eq!(decode_dev((254 << 8) | 3), (254, 3));
        assert_eq!(decode_dev((254 << 8) | 0x12 | (0x300 << 12)), (254, 0x312));
    }

    #[test]
    fn long_names_are_refused() {
        assert!(encode(&"x".repeat(200), "", 0, &[]).is_err());
    }
}
