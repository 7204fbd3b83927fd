//! The ACPI power button. The kernel's button driver reports presses through
//! the `acpi_event` generic netlink family, never as a signal to PID 1.

use cairn_netconf::netlink::{attrs, read_cstr, read_u32, MsgBuilder, NetlinkError, Socket, NLM_F_REQUEST};
use std::os::fd::RawFd;
use std::time::Duration;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
const ACPI_GENL_ATTR_EVENT: u16 = 1;

/// One ACPI event: `struct acpi_genl_event` from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiEvent {
    pub device_class: String,
    pub bus_id: String,
    pub kind: u32,
    pub data: u32,
}

impl AcpiEvent {
    pub fn is_power_button(&self) -> bool {
        self.device_class.starts_with("button/power")
    }
}

/// Decodes the payload of an acpi_event message (after the netlink header).
pub fn decode_event(payload: &[u8]) -> Option<AcpiEvent> {
    // genlmsghdr: cmd, version, reserved u16.
    let body = payload.get(4..)?;
    let (_, ev) = attrs(body).into_iter().find(|(t, _)| *t == ACPI_GENL_ATTR_EVENT)?;
    // char device_class[20]; char bus_id[15]; u32 type (at 36); u32 data.
    Some(AcpiEvent {
        device_class: read_cstr(ev.get(..20)?),
        bus_id: read_cstr(ev.get(20..35)?),
        kind: read_u32(ev.get(36..40)?)?,
        data: read_u32(ev.get(40..44)?)?,
    })
}

/// Subscribed to ACPI events.
pub struct AcpiListener {
    sock: Socket,
    family: u16,
}

impl AcpiListener {
    pub fn open() -> Result<AcpiListener, NetlinkError> {
        let mut sock = Socket::open(libc::NETLINK_GENERIC)?;
        let seq = sock.next_seq();
        let msg = MsgBuilder::new(GENL_ID_CTRL, NLM_F_REQUEST, seq)
            .header(&[CTRL_CMD_GETFAMILY, 1, 0, 0])
            .attr_str(CTRL_ATTR_FAMILY_NAME, "acpi_event")
            .finish();
        sock.send(&msg)?;
        let mut family = None;
        let mut group = None;
        for m in sock.recv(Duration::from_secs(2))? {
            if m.kind == 2 {
                let code = m.payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                return Err(NetlinkError::Refused(std::io::Error::from_raw_os_error(-code)));
            }
            for (t, v) in attrs(m.payload.get(4..).unwrap_or(&[])) {
                match t {
                    CTRL_ATTR_FAMILY_ID => family = v.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]])),
                    CTRL_ATTR_MCAST_GROUPS => {
                        for (_, grp) in attrs(v) {
                            let mut name = String::new();
                            let mut id = None;
                            for (gt, gv) in attrs(grp) {
                                match gt {
                                    CTRL_ATTR_MCAST_GRP_NAME => name = read_cstr(gv),
                                    CTRL_ATTR_MCAST_GRP_ID => id = read_u32(gv),
                                    _ => {}
                                }
                            }
                            if name == "acpi_mc_group" {
                                group = id;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let (Some(family), Some(group)) = (family, group) else {
            return Err(NetlinkError::Refused(std::io::Error::from_raw_os_error(libc::ENOENT)));
        };
        sock.join_group(group)?;
        Ok(AcpiListener { sock, family })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.sock.raw_fd()
    }

    /// The events waiting on the socket; call when poll says it is readable.
    pub fn read_events(&self) -> Vec<AcpiEvent> {
        match self.sock.recv(Duration::ZERO) {
            Ok(msgs) => msgs
                .into_iter()
                .filter(|m| m.kind == self.family)
                .filter_map(|m| decode_event(&m.payload))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_power_button_press() {
        let mut ev = vec![0u8; 44];
        ev[..12].copy_from_slice(b"button/power");
        ev[20..28].copy_from_slice(b"LNXPWRBN");
        ev[36..40].copy_from_slice(&0x80u32.to_ne_bytes());
        ev[40..44].copy_from_slice(&1u32.to_ne_bytes());
        let msg = MsgBuilder::new(30, 0, 0).header(&[1, 1, 0, 0]).attr(ACPI_GENL_ATTR_EVENT, &ev).finish();
        let m = &cairn_netconf::netlink::parse_msgs(&msg)[0];
        let e = decode_event(&m.payload).unwrap();
        assert!(e.is_power_button());
        assert_eq!((e.bus_id.as_str(), e.kind, e.data), ("LNXPWRBN", 0x80, 1));
    }

    #[test]
    fn short_event_is_ignored() {
        let msg = MsgBuilder::new(30, 0, 0).header(&[1, 1, 0, 0]).attr(ACPI_GENL_ATTR_EVENT, &[0; 30]).finish();
        let m = &cairn_netconf::netlink::parse_msgs(&msg)[0];
        assert!(decode_event(&m.payload).is_none());
    }

    proptest::proptest! {
        /// Whatever the acpi_event family sends, decoding never panics.
        #[test]
        fn arbitrary_events(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            let _ = decode_event(&payload);
        }
    }
}
